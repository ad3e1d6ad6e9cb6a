"""Exceptions shared before anything else loads (Django's django.core.exceptions)."""


class ImproperlyConfigured(Exception):
    """A setting is missing or invalid; the service refuses to start."""

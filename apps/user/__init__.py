"""Accounts and sessions. Importing the app registers what it starts and stops with
apps/core/lifecycle.py (the hashing pool, the revocation signal), as settings.INSTALLED_APPS promises."""

from apps.user import passwords, revocation  # noqa: F401

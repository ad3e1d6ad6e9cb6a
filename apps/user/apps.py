"""What the accounts app starts and stops (Django's AppConfig.ready): importing this module registers
the hashing pool, the revocation signal and the event writer with apps/core/lifecycle.py.
lifecycle.running() imports it for every app in settings.INSTALLED_APPS; importing the package
itself stays free of settings, so `manage.py check` can report settings that do not load."""

from apps.user import events, passwords, revocation  # noqa: F401

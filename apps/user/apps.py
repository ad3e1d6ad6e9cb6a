"""What the accounts app starts and stops (Django's AppConfig.ready): importing this module registers
the hashing pool, the revocation signal and the event writer with apps/core/lifecycle.py, and the
password reset's mail composer with the outbox (apps/mail/outbox.py).
lifecycle.running() imports it for every app in settings.INSTALLED_APPS; importing the package
itself stays free of settings, so `manage.py check` can report settings that do not load."""

from apps.user import events, password_reset, passwords, revocation  # noqa: F401

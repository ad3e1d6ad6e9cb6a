"""What the accounts app starts and stops (Django's AppConfig.ready): importing this module registers
the hashing pool and the revocation signal with apps/core/lifecycle.py. lifecycle.running() imports
it for every app in settings.INSTALLED_APPS; importing the package itself stays free of settings, so
`manage.py check` can report settings that do not load."""

from apps.user import passwords, revocation  # noqa: F401

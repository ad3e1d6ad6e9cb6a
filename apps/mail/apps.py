"""What the mail app starts and stops: the outbox's sender task (one per process)."""

from apps.mail import outbox  # noqa: F401

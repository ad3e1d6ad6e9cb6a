"""The account's history: one row per thing that happened, written by accounts.py and sessions.py in
the transaction of the change it records (so a rolled-back change leaves no event, and a committed
one always has its event). The one event without a change, a failed login, is written just after
the answer (record_soon: best effort, waited for at shutdown). Never a secret: the type, the time,
the client; and, for a change the staff made, which staff member (actor_id)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import settings
from apps.core import lifecycle
from apps.user.clients import OPERATOR, Client
from apps.user.models import Event

# The contract's event types (API.md, "Sessions and the account's history") that exist so far.
REGISTERED = "registered"
LOGIN = "login"
LOGIN_FAILED = "login_failed"
LOGOUT = "logout"
REFRESH_REUSE_DETECTED = "refresh_reuse_detected"
PASSWORD_CHANGED = "password_changed"  # noqa: S105 (an event type, not a secret)
SESSION_REVOKED = "session_revoked"
ACCOUNT_DEACTIVATED = "account_deactivated"
ACCOUNT_ACTIVATED = "account_activated"
PERMISSIONS_CHANGED = "permissions_changed"  # is_staff or is_superuser
USERNAME_CHANGED = "username_changed"
EMAIL_CHANGED = "email_changed"
EMAIL_CHANGE_REQUESTED = "email_change_requested"
EMAIL_VERIFIED = "email_verified"
PASSWORD_RESET_REQUESTED = "password_reset_requested"  # noqa: S105
PASSWORD_RESET = "password_reset"  # noqa: S105
ACCOUNT_DELETED = "account_deleted"
MFA_ENABLED = "mfa_enabled"
MFA_DISABLED = "mfa_disabled"
MFA_FAILED = "mfa_failed"  # a wrong second factor at login
RECOVERY_CODE_USED = "recovery_code_used"
RECOVERY_CODES_REGENERATED = "recovery_codes_regenerated"
PASSKEY_ADDED = "passkey_added"
PASSKEY_REMOVED = "passkey_removed"
PASSKEY_RENAMED = "passkey_renamed"

TYPES = (
    REGISTERED,
    LOGIN,
    LOGIN_FAILED,
    LOGOUT,
    REFRESH_REUSE_DETECTED,
    PASSWORD_CHANGED,
    SESSION_REVOKED,
    ACCOUNT_DEACTIVATED,
    ACCOUNT_ACTIVATED,
    PERMISSIONS_CHANGED,
    USERNAME_CHANGED,
    EMAIL_CHANGED,
    EMAIL_CHANGE_REQUESTED,
    EMAIL_VERIFIED,
    PASSWORD_RESET_REQUESTED,
    PASSWORD_RESET,
    ACCOUNT_DELETED,
    MFA_ENABLED,
    MFA_DISABLED,
    MFA_FAILED,
    RECOVERY_CODE_USED,
    RECOVERY_CODES_REGENERATED,
    PASSKEY_ADDED,
    PASSKEY_REMOVED,
    PASSKEY_RENAMED,
)


async def record(
    kind: str, user_id: int, client: Client | None, *, at: datetime | None = None, actor_id: int | None = None
) -> None:
    """Add an event; inside the caller's transaction when there is one. `client` None: the server's
    own shell (manage.py). `actor_id`: the staff member who made the change, if not the owner."""
    client = client or OPERATOR
    await Event.create(
        user_id=user_id,
        actor_id=actor_id,
        type=kind,
        at=at or datetime.now(UTC),
        ip_address=client.ip_address,
        user_agent=client.user_agent,
    )


logger = logging.getLogger("apps.user.events")
_pending: set[asyncio.Task] = set()


def record_soon(kind: str, user_id: int, client: Client | None) -> None:
    """Record an event that no change goes with (a failed login), after the answer has gone out.

    Why not at once: writing it would make a wrong password for an existing account answer later
    than one for an unknown identifier (which names nobody, so leaves no event): a timing oracle for
    which accounts exist. The write still happens; stopping the process waits for it (lifecycle).
    """
    task = asyncio.get_running_loop().create_task(
        record(kind, user_id, client, at=datetime.now(UTC)), name=f"{kind} of user {user_id}"
    )
    _pending.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Task) -> None:
    _pending.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error(
            "an event could not be recorded: %s (%s)", type(task.exception()).__name__, task.get_name()
        )


DRAIN_SECONDS = 10.0


async def drain() -> None:
    """Wait (a bounded time: the database may be the reason they hang) for the events still being
    written; the process is stopping."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            while _pending:
                await asyncio.gather(*_pending, return_exceptions=True)
    except TimeoutError:
        logger.error("%d event(s) not recorded before the process stopped", len(_pending))


async def prune(now: datetime | None = None) -> int:
    """Delete events older than EVENT_RETENTION_DAYS (manage.py clearevents); returns how many."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=settings.EVENT_RETENTION_DAYS)
    return await Event.filter(at__lt=cutoff).delete()


lifecycle.register("events written after the answer", stop=drain)

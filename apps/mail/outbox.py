"""Queueing mail in the caller's transaction, and the sender that delivers it after the answer.

`queue()` writes a row inside whatever transaction the caller has open: the mail exists exactly when
the change that causes it committed. A sender task runs in every worker process (started by the
lifecycle); each round it takes the mails that are due, one at a time, by a conditional UPDATE that
sets a lease (`claimed_until`), so of several workers and hosts exactly one sends each mail, on
SQLite and PostgreSQL alike, and a sender that died mid-send leaves its mail to another once the
lease runs out. A failure (mail server down) is retried with exponential backoff; after
MAIL_GIVE_UP_AFTER seconds the mail is given up: logged as an error and kept with `failed_at`.
Sending never runs in, blocks or fails a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from tortoise.expressions import Q

import settings
from apps.core import lifecycle
from apps.mail import backends
from apps.mail.models import Mail

logger = logging.getLogger("apps.mail")

LEASE = timedelta(seconds=120)  # longer than any send (EMAIL_TIMEOUT) and its bookkeeping
BATCH = 50


def _now() -> datetime:
    return datetime.now(UTC)


async def queue(to: str, subject: str, text: str, html: str | None = None) -> Mail:
    """Add a mail to the outbox, in the caller's transaction; it is sent after the commit."""
    now = _now()
    return await Mail.create(to=to, subject=subject, text=text, html=html, created_at=now, send_after=now)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2**attempts, settings.MAIL_RETRY_MAX_DELAY))


async def _claim(mail_id: int, now: datetime) -> Mail | None:
    """Take one due mail for this sender, or None if another took it first."""
    taken = await Mail.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        id=mail_id,
        sent_at=None,
        failed_at=None,
        send_after__lte=now,
    ).update(claimed_until=now + LEASE)
    return await Mail.get(id=mail_id) if taken else None


async def _deliver(mail: Mail, now: datetime) -> None:
    try:
        await backends.send(backends.message(mail.to, mail.subject, mail.text, mail.html))
    except Exception as exc:  # the mail server refused or is unreachable: try again later, or give up
        attempts = mail.attempts + 1
        if now - mail.created_at >= timedelta(seconds=settings.MAIL_GIVE_UP_AFTER):
            await Mail.filter(id=mail.id).update(
                attempts=attempts, last_error=type(exc).__name__, failed_at=now, claimed_until=None
            )
            logger.error("mail %d given up after %d attempts (%s)", mail.id, attempts, type(exc).__name__)
        else:
            await Mail.filter(id=mail.id).update(
                attempts=attempts,
                last_error=type(exc).__name__,
                send_after=now + _backoff(attempts),
                claimed_until=None,
            )
            logger.warning(
                "mail %d not sent (%s), attempt %d; retrying", mail.id, type(exc).__name__, attempts
            )
        return
    await Mail.filter(id=mail.id).update(sent_at=now, attempts=mail.attempts + 1, claimed_until=None)


async def send_due(now: datetime | None = None) -> int:
    """One round of the sender: deliver the mails that are due and that no other sender holds.
    Returns how many this sender took."""
    now = now or _now()
    due = (
        await Mail.filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now), sent_at=None, failed_at=None
        )
        .filter(send_after__lte=now)
        .order_by("id")
        .limit(BATCH)
        .values_list("id", flat=True)
    )
    taken = 0
    for mail_id in due:
        mail = await _claim(mail_id, now)
        if mail is not None:
            taken += 1
            await _deliver(mail, now)
    return taken


# --- the sender task, one per process -----------------------------------------------------------------

_task: asyncio.Task | None = None


async def _run() -> None:
    while True:
        try:
            await send_due()
        except Exception as exc:  # the database is away: the next round tries again
            logger.error("the mail sender's round failed (%s)", type(exc).__name__)
        await asyncio.sleep(settings.MAIL_POLL_INTERVAL)


def start() -> None:
    global _task
    if settings.MAIL_SENDER:
        _task = asyncio.get_running_loop().create_task(_run(), name="mail sender")


async def stop() -> None:
    global _task
    if _task is not None:
        _task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _task
        _task = None


lifecycle.register("mail sender", start=start, stop=stop)

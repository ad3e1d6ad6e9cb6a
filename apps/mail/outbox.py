"""Queueing mail in the caller's transaction, and the sender that delivers it after the answer.

`queue()` writes a row inside whatever transaction the caller has open: the mail exists exactly when
the change that causes it committed. A sender task runs in every worker process (started by the
lifecycle); each round it takes the mails that are due, one at a time, by a conditional UPDATE that
sets a lease (`claimed_until`), so of several workers and hosts exactly one sends each mail, on
SQLite and PostgreSQL alike, and a sender that died mid-send leaves its mail to another once the
lease runs out. A failure (mail server down) is retried with exponential backoff; after
MAIL_GIVE_UP_AFTER seconds the mail is given up: logged as an error and kept with `failed_at`.
Sending never runs in, blocks or fails a request.

`request()` queues a mail that the sender composes when it takes it, through a composer an app
registered (`composer()`); see models.py for why. A composer may decide that nothing is to be sent.

The sender looks for due mail every MAIL_POLL_INTERVAL seconds; `wake()`, called by a producer once
its transaction has committed, has this process's sender look at once.

The backlog (mail neither sent nor given up, and the age of the oldest) is a metric read at scrape time
(`backlog_metrics`): it is a fact of the table, true whichever process or host sends, and also where no
web worker sends (MAIL_SENDER=false there); a gauge each sender set would report its own rounds only,
and nothing at all from a worker without a sender. One COUNT and one MIN on the sender's index
(sent_at, failed_at, ...), each scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

import settings
from apps.core import lifecycle, metrics
from apps.mail import backends
from apps.mail.models import Mail

logger = logging.getLogger("apps.mail")

LEASE = timedelta(seconds=120)  # longer than any send (EMAIL_TIMEOUT) and its bookkeeping
BATCH = 50


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Composed:
    to: str
    subject: str
    text: str
    html: str | None = None


async def queue(to: str, subject: str, text: str, html: str | None = None) -> Mail:
    """Add a mail to the outbox, in the caller's transaction; it is sent after the commit."""
    now = _now()
    return await Mail.create(to=to, subject=subject, text=text, html=html, created_at=now, send_after=now)


# A composer gets the queued row's address, data and time, and returns the mail, or None for none.
# It runs in the sender's transaction, so what it writes (an event) commits with the composed mail.
Composer = Callable[[str, dict, datetime], Awaitable[Composed | None]]
_composers: dict[str, Composer] = {}


def composer(name: str) -> Callable[[Composer], Composer]:
    """Register a composer for `request(name, ...)` (at import time: lifecycle imports each app)."""

    def register(function: Composer) -> Composer:
        _composers[name] = function
        return function

    return register


async def request(name: str, to: str, data: dict) -> Mail:
    """Queue a mail for the composer `name` to compose when the sender takes it; in the caller's
    transaction. `data` is stored as it is: never a secret."""
    now = _now()
    return await Mail.create(
        to=to, composer=name, data=data, subject="", text="", created_at=now, send_after=now
    )


async def _compose(mail: Mail) -> Mail | None:
    """Turn a requested mail into a composed one (or delete it: nothing to send), in one transaction
    with whatever the composer writes; None when there is nothing to send. Only while the row is
    still a request: a sender whose lease ran out mid-compose cannot compose it a second time.
    """
    compose = _composers[mail.composer]
    async with in_transaction():
        # A write first: SQLite takes its write lock now, waiting its turn (busy timeout), where a read
        # first would have the composer's writes refused at once ("database is locked") if another
        # process wrote in between. Harmless elsewhere: the row is this sender's (leased) anyway.
        await Mail.filter(id=mail.id).update(attempts=mail.attempts)
        composed = await compose(mail.to, mail.data or {}, mail.created_at)
        still_a_request = Mail.filter(id=mail.id, composer=mail.composer)
        if composed is None:
            await still_a_request.delete()
            return None
        updated = await still_a_request.update(
            to=composed.to,
            subject=composed.subject,
            text=composed.text,
            html=composed.html,
            composer=None,
            data=None,
        )
        if not updated:
            raise _ComposedElsewhere()
    mail.to, mail.subject, mail.text, mail.html = composed.to, composed.subject, composed.text, composed.html
    mail.composer = mail.data = None
    return mail


class _ComposedElsewhere(Exception):
    """Another sender composed this request first (rolls this sender's composition back)."""


# A sent or given-up mail keeps its address, subject and times; its body can hold a live link.
BLANK = {"text": "", "html": None}


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


async def _failed(mail: Mail, now: datetime, error: str, *, give_up: bool = False) -> None:
    """An attempt failed: try again after a backoff, or, past MAIL_GIVE_UP_AFTER (or told to), give
    the mail up: logged as an error, kept with `failed_at`, its body and request data dropped."""
    attempts = mail.attempts + 1
    if give_up or now - mail.created_at >= timedelta(seconds=settings.MAIL_GIVE_UP_AFTER):
        await Mail.filter(id=mail.id).update(
            attempts=attempts, last_error=error, failed_at=now, claimed_until=None, data=None, **BLANK
        )
        logger.error("mail %d given up after %d attempts (%s)", mail.id, attempts, error)
        return
    await Mail.filter(id=mail.id).update(
        attempts=attempts, last_error=error, send_after=now + _backoff(attempts), claimed_until=None
    )
    logger.warning("mail %d not sent (%s), attempt %d; retrying", mail.id, error, attempts)


async def _deliver(mail: Mail, now: datetime) -> None:
    if mail.composer is not None:
        if mail.composer not in _composers:  # an app removed, or a row of a newer release: no retry helps
            await _failed(mail, now, f"no composer {mail.composer!r}", give_up=True)
            return
        try:
            if await _compose(mail) is None:
                return
        except _ComposedElsewhere:
            return
        except Exception as exc:  # a template or database error: counted, retried, given up in time
            await _failed(mail, now, "compose: " + type(exc).__name__)
            return
    try:
        await backends.send(backends.message(mail.to, mail.subject, mail.text, mail.html))
    except Exception as exc:  # the mail server refused or is unreachable: try again later, or give up
        await _failed(mail, now, type(exc).__name__)
        return
    await Mail.filter(id=mail.id).update(sent_at=now, attempts=mail.attempts + 1, claimed_until=None, **BLANK)


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


async def prune(*, days: int, now: datetime | None = None) -> int:
    """Delete the rows of mail sent or given up more than `days` ago (manage.py clearmail)."""
    cutoff = (now or _now()) - timedelta(days=days)
    return await Mail.filter(Q(sent_at__lt=cutoff) | Q(failed_at__lt=cutoff)).delete()


@metrics.probe
async def backlog_metrics() -> list:
    """authservice_mail_outbox_backlog and authservice_mail_outbox_oldest_age_seconds, for a scrape."""
    from prometheus_client.core import GaugeMetricFamily

    pending = Mail.filter(sent_at=None, failed_at=None)
    backlog = await pending.count()
    oldest = await pending.order_by("created_at").first().values_list("created_at", flat=True)
    age = (_now() - oldest).total_seconds() if oldest is not None else 0.0
    return [
        GaugeMetricFamily(
            "authservice_mail_outbox_backlog", "Mails in the outbox neither sent nor given up.", value=backlog
        ),
        GaugeMetricFamily(
            "authservice_mail_outbox_oldest_age_seconds",
            "Age of the oldest mail neither sent nor given up (0 when there is none).",
            value=max(0.0, age),
        ),
    ]


# --- the sender task, one per process -----------------------------------------------------------------

_task: asyncio.Task | None = None
_woken: asyncio.Event | None = None  # made by start(): an Event belongs to the loop that first waits on it


def wake() -> None:
    """Have this process's sender look for due mail now (call it after the commit that queued mail)."""
    if _woken is not None:
        _woken.set()


async def _run(woken: asyncio.Event) -> None:
    failing = False  # a line when rounds start failing and one when they succeed again, not one a round
    while True:
        woken.clear()
        try:
            await send_due()
        except Exception as exc:  # the database is away: the next round tries again
            if not failing:
                logger.error("the mail sender's round failed (%s); retrying every round", type(exc).__name__)
            failing = True
        else:
            if failing:
                logger.info("the mail sender's rounds succeed again")
            failing = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), settings.MAIL_POLL_INTERVAL)


def start() -> None:
    global _task, _woken
    if settings.MAIL_SENDER:
        _woken = asyncio.Event()
        _task = asyncio.get_running_loop().create_task(_run(_woken), name="mail sender")


async def stop() -> None:
    global _task, _woken
    _woken = None
    task, _task = _task, None
    if task is None:
        return
    await lifecycle.cancel(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("the mail sender stopped on %s", type(task.exception()).__name__)


lifecycle.register("mail sender", start=start, stop=stop)

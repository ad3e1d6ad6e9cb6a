"""The outbox (issue 8, point 1): a mail exists exactly when the change that causes it committed, is
sent after the answer by the sender to a real SMTP server, retried with backoff while the server is
down, given up loudly after MAIL_GIVE_UP_AFTER, and sent once however many senders run."""

import asyncio
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from tortoise.transactions import in_transaction

import settings
from apps.mail import outbox
from apps.mail.models import Mail
from tests.helpers import ROOT, unique


async def test_a_mail_exists_only_if_its_transaction_commits(client):
    to = f"{unique()}@example.com"
    with pytest.raises(RuntimeError):
        async with in_transaction():
            await outbox.queue(to, "Rolled back", "never")
            raise RuntimeError("the change failed")
    assert not await Mail.exists(to=to)
    async with in_transaction():
        await outbox.queue(to, "Committed", "sent later")
    assert await Mail.exists(to=to, sent_at=None)


async def test_the_sender_delivers_text_and_html_to_the_smtp_server(client, mailbox, monkeypatch):
    monkeypatch.setattr(settings, "DEFAULT_FROM_EMAIL", "auth@example.com")
    to = f"{unique()}@example.com"
    mail = await outbox.queue(to, "Welcome", "Hello in text", "<p>Hello in HTML</p>")
    await outbox.send_due()
    [message] = [m for m in mailbox.messages if m["To"] == to]
    assert (message["From"], message["Subject"]) == ("auth@example.com", "Welcome")
    assert message.get_body(("plain",)).get_content().strip() == "Hello in text"
    assert "Hello in HTML" in message.get_body(("html",)).get_content()
    sent = await Mail.get(id=mail.id)
    assert sent.sent_at is not None and sent.attempts == 1 and sent.claimed_until is None


async def test_a_mail_server_that_is_down_delays_the_mail_and_never_loses_it(
    client, mailbox, monkeypatch, caplog
):
    to = f"{unique()}@example.com"
    mailbox.stop()  # the mail server goes away
    mail = await outbox.queue(to, "Patience", "it arrives")
    with caplog.at_level(logging.WARNING, logger="apps.mail"):
        await outbox.send_due()
    waiting = await Mail.get(id=mail.id)
    assert waiting.sent_at is None and waiting.attempts == 1 and waiting.last_error
    assert waiting.send_after > datetime.now(UTC)  # backoff
    assert "retrying" in caplog.text and to not in caplog.text  # no address in a log line
    await outbox.send_due()  # not due yet: nothing is tried
    assert (await Mail.get(id=mail.id)).attempts == 1
    mailbox.start()  # it comes back (on another port: point the settings at it)
    monkeypatch.setattr(settings, "EMAIL_PORT", mailbox.port)
    await outbox.send_due(now=waiting.send_after + timedelta(seconds=1))
    assert [m["To"] for m in mailbox.messages] == [to]
    assert (await Mail.get(id=mail.id)).sent_at is not None


async def test_a_mail_is_given_up_loudly_after_the_configured_time(client, caplog):
    await Mail.filter(sent_at=None, failed_at=None).delete()  # what earlier tests left: not this one's
    mail = await outbox.queue(f"{unique()}@example.com", "Lost cause", "nobody listens")  # EMAIL_PORT 9
    later = mail.created_at + timedelta(seconds=settings.MAIL_GIVE_UP_AFTER + 1)
    with caplog.at_level(logging.ERROR, logger="apps.mail"):
        await outbox.send_due(now=later)
    failed = await Mail.get(id=mail.id)
    assert failed.failed_at is not None and failed.sent_at is None
    assert f"mail {mail.id} given up" in caplog.text
    await outbox.send_due(now=later + timedelta(days=1))
    assert (await Mail.get(id=mail.id)).attempts == 1  # never tried again


async def test_concurrent_senders_send_each_mail_once(client, mailbox):
    tag = unique()
    for i in range(12):
        await outbox.queue(f"{tag}-{i}@example.com", "Once", "exactly once")
    await asyncio.gather(*[outbox.send_due() for _ in range(4)])
    received = sorted(m["To"] for m in mailbox.messages if m["To"].startswith(tag))
    assert received == sorted(f"{tag}-{i}@example.com" for i in range(12))


async def test_a_composer_that_fails_is_retried_with_backoff_and_given_up_in_time(client, caplog):
    await Mail.filter(sent_at=None, failed_at=None).delete()
    calls = []

    @outbox.composer("test_broken")
    async def broken(to, data, requested_at):
        calls.append(to)
        raise RuntimeError("a template bug")

    mail = await outbox.request("test_broken", f"{unique()}@example.com", {})
    await outbox.send_due()
    retried = await Mail.get(id=mail.id)
    assert retried.attempts == 1 and retried.send_after > retried.created_at and retried.failed_at is None
    assert retried.last_error == "compose: RuntimeError" and retried.claimed_until is None
    later = mail.created_at + timedelta(seconds=settings.MAIL_GIVE_UP_AFTER + 1)
    with caplog.at_level(logging.ERROR, logger="apps.mail"):
        await outbox.send_due(now=later)
    given_up = await Mail.get(id=mail.id)
    assert given_up.failed_at is not None and given_up.attempts == 2 and given_up.data is None
    assert f"mail {mail.id} given up" in caplog.text and len(calls) == 2


async def test_a_request_no_composer_knows_is_given_up_at_once(client, caplog):
    await Mail.filter(sent_at=None, failed_at=None).delete()
    mail = await outbox.request("from_a_newer_release", f"{unique()}@example.com", {"x": 1})
    with caplog.at_level(logging.ERROR, logger="apps.mail"):
        await outbox.send_due()
    given_up = await Mail.get(id=mail.id)
    assert given_up.failed_at is not None and given_up.sent_at is None
    assert "no composer" in given_up.last_error and f"mail {mail.id} given up" in caplog.text


async def test_clearmail_deletes_only_mail_sent_or_given_up_before_the_cutoff(client, database_url):
    now = datetime.now(UTC)
    old, recent, waiting = [await outbox.queue(f"{unique()}@example.com", "x", "y") for _ in range(3)]
    await Mail.filter(id=old.id).update(sent_at=now - timedelta(days=31))
    await Mail.filter(id=recent.id).update(failed_at=now - timedelta(days=1))
    gone = await outbox.queue(f"{unique()}@example.com", "x", "y")
    await Mail.filter(id=gone.id).update(failed_at=now - timedelta(days=40))
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "manage.py", "clearmail", "--days", "30"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Deleted 2 mail(s)" in result.stdout
    ids = [old.id, recent.id, waiting.id, gone.id]
    assert set(await Mail.filter(id__in=ids).values_list("id", flat=True)) == {recent.id, waiting.id}

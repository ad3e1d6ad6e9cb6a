"""Password reset (issue 8, point 3): the request answers alike for every address and mails only a
stored one; the link works once, expires, is spent by a password change and by a login, ends every
session and logs nobody in."""

import asyncio
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest

import settings
from apps.mail.models import Mail
from apps.user import events, links, passwords
from apps.user.models import UNUSABLE_PASSWORD_PREFIX, Event, Session, User
from tests.helpers import PASSWORD, assert_problem, bearer, register, unique, user_with_hash

NEW_PASSWORD = "A-brand-new-Passw0rd"
RESET_LINK = re.compile(r"(https?://\S+/reset-password\?token=\S+)")


def reset_token(text: str) -> str:
    found = RESET_LINK.search(text)
    assert found, text
    assert found.group(1).startswith(settings.FRONTEND_URL + "/reset-password?token="), found.group(1)
    return parse_qs(urlsplit(found.group(1)).query)["token"][0]


async def request_reset(client, address: str, **kw):
    r = await client.post("/user/password/reset", json={"email": address}, **kw)
    assert r.status_code == 202, r.text
    return r


async def mailed_reset_token(client, mailbox, account) -> str:
    await request_reset(client, account["user"]["email"])
    await mailbox.deliver()
    return reset_token(mailbox.last_text(account["user"]["email"]))


async def confirm(client, token, new_password=NEW_PASSWORD):
    return await client.post(
        "/user/password/reset/confirm", json={"token": token, "new_password": new_password}
    )


async def logs_in(client, account, password) -> bool:
    r = await client.post("/user/login", json={"email": account["user"]["email"], "password": password})
    return r.status_code == 200


async def test_known_and_unknown_addresses_get_the_same_answer_and_the_same_work(client, mailbox):
    account = await register(client)
    stranger = f"{unique()}@example.com"
    known = await request_reset(client, account["user"]["email"].upper())
    unknown = await request_reset(client, stranger)
    assert known.content == unknown.content and known.headers.keys() == unknown.headers.keys()
    # the same write for both: one outbox row each, looked up by the sender only after the answer
    rows = await Mail.filter(to__in=[account["user"]["email"], stranger], composer__not_isnull=True).values(
        "composer", "text"
    )
    assert rows == [{"composer": "password_reset", "text": ""}] * 2
    await mailbox.deliver()
    assert [m["Subject"] for m in mailbox.to(account["user"]["email"])] == [
        "Confirm your email address",
        "Reset your password",
    ]
    assert mailbox.to(stranger) == []
    assert not await Mail.filter(to=stranger).exists()  # dropped: no address of nobody is kept


async def test_the_request_is_recorded_with_the_requesting_client_when_composed(client, mailbox):
    account = await register(client)
    await request_reset(client, account["user"]["email"], headers={"User-Agent": "reset-browser"})
    await mailbox.deliver()
    event = await Event.get(user_id=account["user"]["id"], type=events.PASSWORD_RESET_REQUESTED)
    assert (event.ip_address, event.user_agent) == ("203.0.113.7", "reset-browser")


async def test_inactive_accounts_get_no_link_and_accounts_without_a_usable_password_do(client, mailbox):
    """Unlike Django: the Django import gives an unusable password to people whose old hash cannot be
    verified here, and tells them to reset it."""
    inactive = await user_with_hash(await passwords.hash_password(PASSWORD), is_active=False)
    unusable = await user_with_hash(UNUSABLE_PASSWORD_PREFIX + "x")
    for user in (inactive, unusable):
        await request_reset(client, user.email)
    await mailbox.deliver()
    assert mailbox.to(inactive.email) == []
    token = reset_token(mailbox.last_text(unusable.email))
    assert (await confirm(client, token)).status_code == 204
    r = await client.post("/user/login", json={"email": unusable.email, "password": NEW_PASSWORD})
    assert r.status_code == 200


async def test_confirm_sets_the_password_ends_every_session_and_logs_nobody_in(client, mailbox):
    account = await register(client)
    other = (
        await client.post("/user/login", json={"email": account["user"]["email"], "password": PASSWORD})
    ).json()
    token = await mailed_reset_token(client, mailbox, account)
    r = await confirm(client, token)
    assert r.status_code == 204 and r.content == b"" and "set-cookie" not in r.headers
    for pair in (account, other):
        assert_problem(await client.get("/user/me", headers=bearer(pair["access_token"])), 401)
        r = await client.post("/user/refresh-token", json={"refresh_token": pair["refresh_token"]})
        assert_problem(r, 401)
    assert not await Session.filter(user_id=account["user"]["id"], revoked_at=None).exists()
    assert not await logs_in(client, account, PASSWORD)
    assert await logs_in(client, account, NEW_PASSWORD)
    kinds = await Event.filter(user_id=account["user"]["id"]).values_list("type", flat=True)
    assert events.PASSWORD_RESET in kinds


async def test_the_link_proves_the_address(client, mailbox):
    account = await register(client)
    token = await mailed_reset_token(client, mailbox, account)
    assert (await confirm(client, token)).status_code == 204
    assert (await User.get(id=account["user"]["id"])).email_verified is True


async def test_a_link_works_once(client, mailbox):
    account = await register(client)
    token = await mailed_reset_token(client, mailbox, account)
    assert (await confirm(client, token)).status_code == 204
    assert_problem(await confirm(client, token, "Yet-another-Passw0rd"), 400, "invalid_link")
    assert await logs_in(client, account, NEW_PASSWORD)


async def test_two_uses_at_once_leave_one_password(client, mailbox):
    account = await register(client)
    token = await mailed_reset_token(client, mailbox, account)
    answers = await asyncio.gather(
        confirm(client, token, "First-new-Passw0rd"), confirm(client, token, "Other-new-Passw0rd")
    )
    assert sorted(r.status_code for r in answers) == [204, 400], [r.text for r in answers]
    winner = "First-new-Passw0rd" if answers[0].status_code == 204 else "Other-new-Passw0rd"
    assert await logs_in(client, account, winner)


async def test_a_password_change_and_a_login_spend_the_link(client, mailbox):
    account = await register(client)
    token = await mailed_reset_token(client, mailbox, account)
    r = await client.post(
        "/user/me/password",
        json={"current_password": PASSWORD, "new_password": "Changed-Passw0rd-x"},
        headers=bearer(account["access_token"]),
    )
    assert r.status_code == 204
    assert_problem(await confirm(client, token), 400, "invalid_link")
    account = await register(client)
    token = await mailed_reset_token(client, mailbox, account)
    assert await logs_in(client, account, PASSWORD)
    assert_problem(await confirm(client, token), 400, "invalid_link")


async def test_a_login_during_the_hashing_spends_the_link(client, mailbox, monkeypatch):
    """The link is checked, the new password hashed (tens of ms), then stored only if the account is
    still as the link saw it: a login that committed meanwhile wins."""
    account = await register(client)
    token = await mailed_reset_token(client, mailbox, account)
    hash_password = passwords.hash_password

    async def slow_hash(password):
        if password == NEW_PASSWORD:
            assert await logs_in(client, account, PASSWORD)
        return await hash_password(password)

    monkeypatch.setattr(passwords, "hash_password", slow_hash)
    assert_problem(await confirm(client, token), 400, "invalid_link")
    assert await logs_in(client, account, PASSWORD)


async def test_an_expired_link_is_refused(client, mailbox):
    account = await register(client)
    user = await User.get(id=account["user"]["id"])
    old = links.make(links.RESET, user, made_at=int(time.time()) - settings.PASSWORD_RESET_TIMEOUT - 1)
    assert_problem(await confirm(client, old), 400, "invalid_link")
    assert await logs_in(client, account, PASSWORD)


async def test_the_link_expires_an_hour_after_the_request_not_after_the_mail_went(
    client, mailbox, monkeypatch
):
    """A mail server that was down for a while delays the mail; the link's clock started at the request."""
    account = await register(client)
    await request_reset(client, account["user"]["email"])
    requested = await Mail.get(to=account["user"]["email"], composer="password_reset")
    await mailbox.deliver()
    token = reset_token(mailbox.last_text(account["user"]["email"]))
    assert links.parse(token).made_at == int(requested.created_at.timestamp())


@pytest.mark.parametrize("token", ["", "not-a-token", "A" * 43, "1-1-" + "A" * 43])
async def test_malformed_links_are_refused(client, token):
    assert_problem(await confirm(client, token), 400, "invalid_link")


async def test_a_tampered_link_or_a_verification_link_is_refused(client, mailbox):
    account = await register(client)
    token = await mailed_reset_token(client, mailbox, account)
    i = len(token) // 2
    tampered = token[:i] + ("x" if token[i] != "x" else "y") + token[i + 1 :]
    assert_problem(await confirm(client, tampered), 400, "invalid_link")
    verify = links.make(links.VERIFY, await User.get(id=account["user"]["id"]))
    assert_problem(await confirm(client, verify), 400, "invalid_link")
    assert (await confirm(client, token)).status_code == 204


async def test_a_weak_new_password_is_422_and_the_link_stays_usable(client, mailbox):
    account = await register(client)
    token = await mailed_reset_token(client, mailbox, account)
    for weak in ("short", "password1234", account["user"]["username"] + "1"):
        body = assert_problem(await confirm(client, token, weak), 422)
        assert body["errors"][0]["field"] == "new_password"
    assert (await confirm(client, token)).status_code == 204


async def test_a_deactivated_account_cannot_use_its_link(client, mailbox, superuser):
    account = await register(client)
    token = await mailed_reset_token(client, mailbox, account)
    r = await client.patch(
        f"/admin/users/{account['user']['id']}",
        json={"is_active": False},
        headers=bearer(superuser["access_token"]),
    )
    assert r.status_code == 200
    assert_problem(await confirm(client, token), 400, "invalid_link")


async def test_links_are_built_from_frontend_url_not_the_request(client, mailbox):
    account = await register(client)
    forged = {"Host": "localhost", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    await request_reset(client, account["user"]["email"], headers=forged)
    await mailbox.deliver()
    text = mailbox.last_text(account["user"]["email"])
    assert "evil.example" not in text and "localhost/" not in text.replace(settings.FRONTEND_URL, "")
    assert reset_token(text)

"""Email verification (issue 8, point 2): the link mailed at registration and on request, what it
proves and when it stops working, and EMAIL_VERIFICATION none|optional|mandatory."""

import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest

import settings
from apps.mail.models import Mail
from apps.user import events, links
from apps.user.models import Event, User
from tests.helpers import PASSWORD, assert_problem, bearer, register, unique

VERIFY_LINK = re.compile(r"(https?://\S+/verify-email\?token=\S+)")


def link_token(text: str) -> str:
    found = VERIFY_LINK.search(text)
    assert found, text
    assert found.group(1).startswith(settings.FRONTEND_URL + "/verify-email?token="), found.group(1)
    return parse_qs(urlsplit(found.group(1)).query)["token"][0]


async def mailed_token(mailbox, address: str) -> str:
    await mailbox.deliver()
    return link_token(mailbox.last_text(address))


async def test_registration_mails_a_verification_link_in_text_and_html(client, mailbox):
    account = await register(client)
    address = account["user"]["email"]
    await mailbox.deliver()
    [mail] = mailbox.to(address)
    assert mail["Subject"] == "Confirm your email address"
    token = link_token(mailbox.text(mail))
    html = mail.get_body(("html",)).get_content()
    assert f'href="{settings.FRONTEND_URL}/verify-email?token={token}"' in html
    assert account["user"]["username"] in html


async def test_a_username_with_markup_is_escaped_in_the_html_part_and_kept_in_the_text(client, mailbox):
    # Django's username rules allow no "<", so the account is made as an import could make it
    account = await register(client)
    await User.filter(id=account["user"]["id"]).update(username="<b>ann</b>")
    await client.post("/user/email/verification", headers=bearer(account["access_token"]))
    await mailbox.deliver()
    mail = mailbox.to(account["user"]["email"])[-1]
    assert "&lt;b&gt;ann&lt;/b&gt;" in mail.get_body(("html",)).get_content()
    assert "Hello <b>ann</b>," in mailbox.text(mail)


async def test_verify_marks_the_address_verified_and_records_the_event(client, mailbox):
    account = await register(client)
    token = await mailed_token(mailbox, account["user"]["email"])
    r = await client.post("/user/email/verify", json={"token": token})
    assert r.status_code == 200, r.text
    assert r.json()["email_verified"] is True and r.json()["id"] == account["user"]["id"]
    me = await client.get("/user/me", headers=bearer(account["access_token"]))
    assert me.json()["email_verified"] is True
    assert await Event.filter(user_id=account["user"]["id"], type=events.EMAIL_VERIFIED).count() == 1
    # used: spent
    assert_problem(await client.post("/user/email/verify", json={"token": token}), 400, "invalid_link")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x",
        "A" * 43,
        "1-1-" + "A" * 43,
        "zzzzzzzzzzzzzz-1-" + "A" * 43,
        "0-1-" + "A" * 43,
        "1-1-" + "A" * 200,
    ],
)
async def test_malformed_tokens_are_invalid_links(client, token):
    assert_problem(await client.post("/user/email/verify", json={"token": token}), 400, "invalid_link")


async def test_a_token_for_another_purpose_or_another_account_is_refused(client, mailbox):
    account = await register(client)
    user = await User.get(id=account["user"]["id"])
    reset = links.make(links.RESET, user)
    assert_problem(await client.post("/user/email/verify", json={"token": reset}), 400, "invalid_link")
    # another account's id with this account's MAC
    other = await register(client)
    token = links.make(links.VERIFY, user)
    forged = token.replace(token.split("-")[0], links._b36(other["user"]["id"]), 1)
    assert_problem(await client.post("/user/email/verify", json={"token": forged}), 400, "invalid_link")
    assert (await User.get(id=other["user"]["id"])).email_verified is False


async def test_an_expired_link_is_refused(client, monkeypatch):
    account = await register(client)
    user = await User.get(id=account["user"]["id"])
    old = links.make(links.VERIFY, user, made_at=int(time.time()) - settings.EMAIL_VERIFICATION_TIMEOUT - 1)
    assert_problem(await client.post("/user/email/verify", json={"token": old}), 400, "invalid_link")
    fresh = links.make(
        links.VERIFY, user, made_at=int(time.time()) - settings.EMAIL_VERIFICATION_TIMEOUT + 60
    )
    assert (await client.post("/user/email/verify", json={"token": fresh})).status_code == 200


async def test_a_link_outlives_a_key_rotation_while_the_old_key_is_a_fallback(client, monkeypatch):
    account = await register(client)
    made = links.make(links.VERIFY, await User.get(id=account["user"]["id"]))
    old_key = settings.SECRET_KEY
    monkeypatch.setattr(settings, "SECRET_KEY", "rotated-" + "k" * 40)
    monkeypatch.setattr(settings, "SECRET_KEY_FALLBACKS", [])
    assert_problem(await client.post("/user/email/verify", json={"token": made}), 400, "invalid_link")
    monkeypatch.setattr(settings, "SECRET_KEY_FALLBACKS", [old_key])
    assert (await client.post("/user/email/verify", json={"token": made})).status_code == 200


async def test_resend_mails_a_new_link_and_a_verified_account_has_nothing_to_verify(client, mailbox):
    account = await register(client)
    auth = bearer(account["access_token"])
    r = await client.post("/user/email/verification", headers=auth)
    assert r.status_code == 202 and r.json()["detail"], r.text
    await mailbox.deliver()
    assert len(mailbox.to(account["user"]["email"])) == 2  # the registration's and this one
    token = link_token(mailbox.last_text(account["user"]["email"]))
    assert (await client.post("/user/email/verify", json={"token": token})).status_code == 200
    assert_problem(await client.post("/user/email/verification", headers=auth), 409, "already_verified")


async def test_resend_needs_a_token(client):
    assert_problem(await client.post("/user/email/verification"), 401)


async def test_verifying_logs_nobody_in(client, mailbox):
    account = await register(client)
    token = await mailed_token(mailbox, account["user"]["email"])
    r = await client.post("/user/email/verify", json={"token": token})
    assert "access_token" not in r.json() and "set-cookie" not in r.headers


async def test_none_mails_no_link_at_registration(client, mailbox, monkeypatch):
    monkeypatch.setattr(settings, "EMAIL_VERIFICATION", "none")
    account = await register(client)
    await mailbox.deliver()
    assert mailbox.to(account["user"]["email"]) == []
    assert account["access_token"]


async def test_mandatory_registers_without_tokens_and_logs_in_only_once_verified(
    client, mailbox, monkeypatch
):
    monkeypatch.setattr(settings, "EMAIL_VERIFICATION", "mandatory")
    name = unique()
    address = f"{name}@example.com"
    r = await client.post("/user/register", json={"username": name, "email": address, "password": PASSWORD})
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"user"} and r.json()["user"]["email_verified"] is False
    user_id = r.json()["user"]["id"]
    assert await Event.filter(user_id=user_id, type=events.REGISTERED).exists()
    from apps.user.models import Session

    assert not await Session.filter(user_id=user_id).exists()  # no session was opened
    # the right password: 403 and a new link; a wrong one: the same 401 as an unknown account
    login = {"email": address, "password": PASSWORD}
    assert_problem(await client.post("/user/login", json=login), 403, "email_unverified")
    wrong = await client.post("/user/login", json={**login, "password": "Wrong-passw0rd"})
    unknown = await client.post(
        "/user/login", json={"email": f"{unique()}@example.com", "password": "x" * 12}
    )
    assert assert_problem(wrong, 401) == assert_problem(unknown, 401)
    await mailbox.deliver()
    assert len(mailbox.to(address)) == 2  # registration's, and the refused login's
    assert not await Session.filter(user_id=user_id).exists()
    token = link_token(mailbox.last_text(address))
    assert (await client.post("/user/email/verify", json={"token": token})).status_code == 200
    r = await client.post("/user/login", json=login)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["email_verified"] is True


async def test_the_mail_is_queued_in_the_registration_transaction(client, mailbox):
    """A registration that fails (taken) leaves no mail behind; one that succeeds leaves exactly one."""
    account = await register(client)
    address = account["user"]["email"]
    r = await client.post(
        "/user/register", json={"username": unique(), "email": address, "password": PASSWORD}
    )
    assert_problem(r, 409)
    assert await Mail.filter(to=address).count() == 1


async def test_a_sent_mail_keeps_no_usable_link_in_the_outbox(client, mailbox):
    account = await register(client)
    queued = await Mail.get(to=account["user"]["email"])
    assert "verify-email?token=" in queued.text  # until it is sent
    await mailbox.deliver()
    sent = await Mail.get(id=queued.id)
    assert sent.sent_at is not None and sent.text == "" and sent.html is None
    assert sent.subject == "Confirm your email address"  # who got what, and when, stays


async def test_mandatory_refuses_new_tokens_to_sessions_of_unverified_accounts(client, mailbox, monkeypatch):
    """Sessions opened while verification was optional (or before it existed) get no new tokens once it
    is mandatory, until the address is verified; the refresh token is not spent by the refusal."""
    account = await register(client)
    monkeypatch.setattr(settings, "EMAIL_VERIFICATION", "mandatory")
    refresh = {"refresh_token": account["refresh_token"]}
    assert_problem(await client.post("/user/refresh-token", json=refresh), 403, "email_unverified")
    token = await mailed_token(mailbox, account["user"]["email"])
    assert (await client.post("/user/email/verify", json={"token": token})).status_code == 200
    assert (await client.post("/user/refresh-token", json=refresh)).status_code == 200


async def test_an_inactive_account_cannot_verify(client, mailbox):
    account = await register(client)
    token = await mailed_token(mailbox, account["user"]["email"])
    await User.filter(id=account["user"]["id"]).update(is_active=False)
    assert_problem(await client.post("/user/email/verify", json={"token": token}), 400, "invalid_link")

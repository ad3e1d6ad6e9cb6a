"""Passkeys (issue 10): registering, listing, renaming and removing them, and logging in with one, as
the second factor after the password and alone, over HTTP on SQLite and PostgreSQL. The answers come
from a software authenticator (tests/authenticator.py) that makes real attestations and assertions,
so py_webauthn verifies them as it would a browser's; each bad answer differs from a good one in the
one thing a test is about."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import limits
import pytest

import settings
from apps.core import throttle as throttle_module
from apps.user import events, links, passkeys
from apps.user.models import UNUSABLE_PASSWORD_PREFIX, Passkey, User, WebAuthnChallenge
from tests.authenticator import ORIGIN, RP_ID, SoftwareAuthenticator, b64url
from tests.helpers import PASSWORD, assert_problem, bearer, register, unique


@pytest.fixture(autouse=True)
def relying_party(monkeypatch):
    """The RP as the suite's FRONTEND_URL default makes it, whatever a developer's .env says."""
    monkeypatch.setattr(settings, "WEBAUTHN_RP_ID", RP_ID)
    monkeypatch.setattr(settings, "WEBAUTHN_ORIGINS", [ORIGIN])


def auth(account: dict) -> dict[str, str]:
    return bearer(account["access_token"])


async def registration_options(client, account) -> dict:
    r = await client.post("/user/passkeys/register/options", headers=auth(account))
    assert r.status_code == 200, r.text
    return r.json()


async def add_passkey(client, account, authenticator, name: str = "Laptop") -> dict:
    options = await registration_options(client, account)
    credential = authenticator.create(options)
    r = await client.post(
        "/user/passkeys", json={"credential": credential, "name": name}, headers=auth(account)
    )
    assert r.status_code == 201, r.text
    return r.json()


async def account_with_passkey(client, **authenticator_options) -> tuple[dict, SoftwareAuthenticator, dict]:
    account = await register(client)
    authenticator = SoftwareAuthenticator(**authenticator_options)
    passkey = await add_passkey(client, account, authenticator)
    return account, authenticator, passkey


async def login_options(client, body: dict | None = None) -> dict:
    r = await client.post("/user/login/passkey/options", **({"json": body} if body is not None else {}))
    assert r.status_code == 200, r.text
    return r.json()


async def passwordless(client, authenticator, **answer) -> object:
    options = await login_options(client)
    return await client.post("/user/login/passkey", json={"credential": authenticator.get(options, **answer)})


async def password_step(client, account) -> str:
    """POST /user/login with the password: the account has a passkey, so it waits for one."""
    r = await client.post("/user/login", json={"email": account["user"]["email"], "password": PASSWORD})
    body = r.json()
    assert r.status_code == 200 and body["mfa_required"] is True, r.text
    assert "passkey" in body["methods"], body
    return body["mfa_token"]


async def second_factor(client, mfa_token: str, authenticator, **answer):
    options = await login_options(client, {"mfa_token": mfa_token})
    credential = authenticator.get(options, **answer)
    return await client.post("/user/login/mfa", json={"mfa_token": mfa_token, "passkey": credential})


async def event_types(client, account) -> list[str]:
    await events.drain()  # failures are written just after their answers
    r = await client.get("/user/events", headers=auth(account))
    return [row["type"] for row in r.json()["results"]]


def assert_logged_in_as(r, account) -> dict:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["access_token"] and body["refresh_token"] and body["user"]["id"] == account["user"]["id"]
    assert r.headers["cache-control"] == "no-store"
    return body


# --- registering and managing -----------------------------------------------------------------------


async def test_registration_options_ask_for_a_discoverable_passkey_under_an_opaque_user_handle(client):
    account = await register(client)
    options = await registration_options(client, account)
    assert options["rp"] == {"id": RP_ID, "name": settings.SITE_NAME}
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["attestation"] == "none" and options["excludeCredentials"] == []
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
    assert options["timeout"] == settings.MFA_TIMEOUT * 1000
    user = options["user"]
    assert user["id"] == b64url(passkeys.user_handle(account["user"]["id"]))
    for shown in (account["user"]["email"], account["user"]["username"]):
        assert shown not in user["id"] and b64url(shown.encode()) != user["id"]
    # stable for the account, another account's is another
    assert (await registration_options(client, account))["user"]["id"] == user["id"]
    other = await register(client)
    assert (await registration_options(client, other))["user"]["id"] != user["id"]
    assert (await client.post("/user/passkeys/register/options")).status_code == 401


async def test_register_list_rename_and_delete_with_the_password(client):
    account = await register(client)
    authenticator = SoftwareAuthenticator()
    first = await add_passkey(client, account, authenticator, name="  Laptop  ")
    assert set(first) == {"id", "name", "created_at", "last_used_at"}
    assert first["name"] == "Laptop" and first["last_used_at"] is None
    stored = await Passkey.get(id=first["id"])
    assert stored.user_id == account["user"]["id"] and stored.sign_count == 0
    assert stored.credential_id == b64url(authenticator.credentials[0].id)
    assert stored.transports == "internal,hybrid" and stored.aaguid == "00010203-0405-0607-0809-0a0b0c0d0e0f"

    # the next options exclude it, so an authenticator does not make a second one for the account
    options = await registration_options(client, account)
    assert [c["id"] for c in options["excludeCredentials"]] == [stored.credential_id]
    assert options["excludeCredentials"][0]["transports"] == ["internal", "hybrid"]
    r = await client.post(
        "/user/passkeys", json={"credential": SoftwareAuthenticator().create(options)}, headers=auth(account)
    )
    second = r.json()
    assert r.status_code == 201 and second["name"] == "Passkey", r.text  # the name is optional

    r = await client.get("/user/passkeys", headers=auth(account))
    assert r.status_code == 200 and [p["id"] for p in r.json()] == [second["id"], first["id"]]

    r = await client.patch(f"/user/passkeys/{first['id']}", json={"name": "Phone"}, headers=auth(account))
    assert r.status_code == 200 and r.json()["name"] == "Phone", r.text
    assert_problem(
        await client.patch(f"/user/passkeys/{first['id']}", json={"name": "  "}, headers=auth(account)), 422
    )

    r = await client.request(
        "DELETE",
        f"/user/passkeys/{first['id']}",
        json={"password": "Wrong-password-1"},
        headers=auth(account),
    )
    assert_problem(r, 422, "validation_error")
    assert await Passkey.exists(id=first["id"])
    r = await client.request(
        "DELETE", f"/user/passkeys/{first['id']}", json={"password": PASSWORD}, headers=auth(account)
    )
    assert r.status_code == 204, r.text
    assert [p["id"] for p in (await client.get("/user/passkeys", headers=auth(account))).json()] == [
        second["id"]
    ]
    r = await client.request(
        "DELETE", f"/user/passkeys/{first['id']}", json={"password": PASSWORD}, headers=auth(account)
    )
    assert_problem(r, 404, "not_found")

    history = await event_types(client, account)
    assert history.count("passkey_added") == 2
    assert history.count("passkey_renamed") == 1 and history.count("passkey_removed") == 1


async def test_a_passkey_registered_already_is_409(client):
    account, authenticator, _ = await account_with_passkey(client)
    options = await registration_options(client, account)
    credential = authenticator.create(options, again=authenticator.credentials[0])
    r = await client.post("/user/passkeys", json={"credential": credential}, headers=auth(account))
    assert_problem(r, 409, "passkey_exists")
    # another account cannot take it over either
    other = await register(client)
    credential = authenticator.create(
        await registration_options(client, other), again=authenticator.credentials[0]
    )
    r = await client.post("/user/passkeys", json={"credential": credential}, headers=auth(other))
    assert_problem(r, 409, "passkey_exists")
    assert await Passkey.filter(user_id=other["user"]["id"]).count() == 0


async def test_another_accounts_passkey_is_404(client):
    owner, _, passkey = await account_with_passkey(client)
    other = await register(client)
    path = f"/user/passkeys/{passkey['id']}"
    assert_problem(
        await client.request("DELETE", path, json={"password": PASSWORD}, headers=auth(other)), 404
    )
    assert_problem(await client.patch(path, json={"name": "Mine"}, headers=auth(other)), 404)
    assert (await client.get("/user/passkeys", headers=auth(other))).json() == []
    stored = await Passkey.get(id=passkey["id"])
    assert stored.name == "Laptop" and stored.user_id == owner["user"]["id"]
    # an id no row can have (past the 64-bit column) is no one's either, not a 500
    big = "/user/passkeys/99999999999999999999999"
    assert_problem(await client.request("DELETE", big, json={"password": PASSWORD}, headers=auth(other)), 404)


async def test_malformed_credentials_are_400_invalid_passkey_never_500(client):
    account = await register(client)
    await registration_options(client, account)
    for credential in ({}, {"id": "x", "rawId": "x", "type": "public-key", "response": {}}, {"response": 1}):
        r = await client.post("/user/passkeys", json={"credential": credential}, headers=auth(account))
        assert_problem(r, 400, "invalid_passkey")
        r = await client.post("/user/login/passkey", json={"credential": credential})
        assert_problem(r, 401, "invalid_passkey")
    assert_problem(await client.post("/user/passkeys", json={"credential": "x"}, headers=auth(account)), 422)
    assert_problem(await client.post("/user/login/passkey", json={}), 422)


# --- what a registration must come from -------------------------------------------------------------


async def test_a_registration_from_another_origin_or_for_another_rp_id_is_refused(client):
    account = await register(client)
    authenticator = SoftwareAuthenticator()
    for bad in (
        {"origin": "http://evil.example"},
        {"origin": "http://localhost:8000"},
        {"rp_id": "evil.example"},
    ):
        options = await registration_options(client, account)
        r = await client.post(
            "/user/passkeys", json={"credential": authenticator.create(options, **bad)}, headers=auth(account)
        )
        assert_problem(r, 400, "invalid_passkey")
    # and from a cross-origin frame of an allowed origin
    options = await registration_options(client, account)
    credential = authenticator.create(options, cross_origin=True)
    r = await client.post("/user/passkeys", json={"credential": credential}, headers=auth(account))
    assert_problem(r, 400, "invalid_passkey")
    assert await Passkey.filter(user_id=account["user"]["id"]).count() == 0
    # the same authenticator, rightly used, is accepted
    await add_passkey(client, account, authenticator)


async def test_a_registration_challenge_is_bound_to_its_session(client):
    account = await register(client)
    other_session = await client.post(
        "/user/login", json={"email": account["user"]["email"], "password": PASSWORD}
    )
    elsewhere = other_session.json()
    stranger = await register(client)
    authenticator = SoftwareAuthenticator()
    options = await registration_options(client, account)
    credential = authenticator.create(options)
    for who in (elsewhere, stranger):
        r = await client.post("/user/passkeys", json={"credential": credential}, headers=auth(who))
        assert_problem(r, 400, "invalid_passkey")
    # those tries did not spend it: it is still this session's to use
    r = await client.post("/user/passkeys", json={"credential": credential}, headers=auth(account))
    assert r.status_code == 201, r.text


async def test_a_registration_challenge_is_used_once_and_a_new_one_replaces_it(client):
    account = await register(client)
    authenticator = SoftwareAuthenticator()
    options = await registration_options(client, account)
    credential = authenticator.create(options)
    assert (
        await client.post("/user/passkeys", json={"credential": credential}, headers=auth(account))
    ).status_code == 201
    await Passkey.filter(user_id=account["user"]["id"]).delete()  # so only the challenge can refuse it
    r = await client.post("/user/passkeys", json={"credential": credential}, headers=auth(account))
    assert_problem(r, 400, "invalid_passkey")

    stale = authenticator.create(await registration_options(client, account))
    fresh = authenticator.create(await registration_options(client, account))
    assert_problem(
        await client.post("/user/passkeys", json={"credential": stale}, headers=auth(account)), 400
    )
    assert (
        await client.post("/user/passkeys", json={"credential": fresh}, headers=auth(account))
    ).status_code == 201


async def test_an_expired_challenge_is_refused_and_pruned(client, monkeypatch):
    account = await register(client)
    authenticator = SoftwareAuthenticator()
    options = await registration_options(client, account)
    credential = authenticator.create(options)
    later = passkeys._now() + timedelta(seconds=settings.MFA_TIMEOUT + 1)
    monkeypatch.setattr(passkeys, "_now", lambda: later)
    r = await client.post("/user/passkeys", json={"credential": credential}, headers=auth(account))
    assert_problem(r, 400, "invalid_passkey")

    expired = passkeys._digest(passkeys.base64url_to_bytes(options["challenge"]))
    login = await login_options(client)  # anyone's request for a challenge prunes the expired ones
    assert not await WebAuthnChallenge.exists(digest=expired)
    # a passwordless login's challenge expires the same way
    account, authenticator, _ = await account_with_passkey(client)
    credential = authenticator.get(login)
    evenlater = later + timedelta(seconds=settings.MFA_TIMEOUT + 1)
    monkeypatch.setattr(passkeys, "_now", lambda: evenlater)
    assert_problem(
        await client.post("/user/login/passkey", json={"credential": credential}), 401, "invalid_passkey"
    )


async def test_nothing_of_the_credential_or_the_challenge_is_answered_or_logged(client, caplog):
    caplog.set_level(logging.INFO)  # LOG_LEVEL's default (at DEBUG the ORM logs every SQL parameter)
    caplog.set_level(logging.DEBUG, logger="apps")
    account = await register(client)
    authenticator = SoftwareAuthenticator()
    options = await registration_options(client, account)
    credential = authenticator.create(options, origin="http://evil.example")
    r = await client.post("/user/passkeys", json={"credential": credential}, headers=auth(account))
    assert_problem(r, 400, "invalid_passkey")
    login = await login_options(client)
    answer = SoftwareAuthenticator().get(
        {**login, "allowCredentials": []}, credential=authenticator.credentials[0]
    )
    r2 = await client.post("/user/login/passkey", json={"credential": answer})
    assert_problem(r2, 401, "invalid_passkey")
    secrets_sent = [
        options["challenge"],
        login["challenge"],
        credential["id"],
        *credential["response"].values(),
    ]
    secrets_sent += [v for v in answer["response"].values() if v]
    for value in secrets_sent:
        for text in (r.text, r2.text, caplog.text):
            assert str(value) not in text
    assert "passkey registration refused at attestation" in caplog.text


# --- the second factor ------------------------------------------------------------------------------


async def test_a_passkey_finishes_a_password_login_as_its_second_factor(client):
    account, authenticator, passkey = await account_with_passkey(client)
    mfa_token = await password_step(client, account)
    options = await login_options(client, {"mfa_token": mfa_token})
    assert [c["id"] for c in options["allowCredentials"]] == [b64url(authenticator.credentials[0].id)]
    assert options["rpId"] == RP_ID and options["userVerification"] == "preferred"
    # presence is enough here: the password was the other factor
    credential = authenticator.get(options, user_verified=False, user_handle=None)
    r = await client.post("/user/login/mfa", json={"mfa_token": mfa_token, "passkey": credential})
    body = assert_logged_in_as(r, account)
    assert (await client.get("/user/me", headers=bearer(body["access_token"]))).status_code == 200
    stored = await Passkey.get(id=passkey["id"])
    assert stored.sign_count == 1 and stored.last_used_at is not None

    # the login spent its mfa_token: no new options for it, and the answer cannot be used again
    r = await client.post("/user/login/passkey/options", json={"mfa_token": mfa_token})
    assert_problem(r, 401, "invalid_mfa_token")
    r = await client.post("/user/login/mfa", json={"mfa_token": mfa_token, "passkey": credential})
    assert_problem(r, 401, "invalid_mfa_token")
    assert (await event_types(client, account))[0] == "login"


async def test_a_second_factor_challenge_is_bound_to_its_login_attempt(client):
    account, authenticator, _ = await account_with_passkey(client)
    first = await password_step(client, account)
    # another login attempt of the account, a second earlier (within one second, one state, one token)
    second = links.make(
        links.SECOND_FACTOR, await User.get(id=account["user"]["id"]), made_at=int(time.time()) - 1
    )
    assert second != first
    options = await login_options(client, {"mfa_token": first})
    credential = authenticator.get(options)
    r = await client.post("/user/login/mfa", json={"mfa_token": second, "passkey": credential})
    assert_problem(r, 401, "invalid_passkey")
    # nor does a passwordless login's challenge finish it
    credential = authenticator.get(await login_options(client))
    r = await client.post("/user/login/mfa", json={"mfa_token": first, "passkey": credential})
    assert_problem(r, 401, "invalid_passkey")
    # and another account's passkey answering the right challenge does not either
    _, stranger_authenticator, _ = await account_with_passkey(client)
    options = await login_options(client, {"mfa_token": first})
    credential = stranger_authenticator.get(options, credential=stranger_authenticator.credentials[0])
    r = await client.post("/user/login/mfa", json={"mfa_token": first, "passkey": credential})
    assert_problem(r, 401, "invalid_passkey")
    assert_logged_in_as(await second_factor(client, first, authenticator), account)
    assert "mfa_failed" in await event_types(client, account)


async def test_second_factor_options_need_a_live_mfa_token_and_a_passkey(client):
    assert_problem(
        await client.post("/user/login/passkey/options", json={"mfa_token": "1-2-nonsense"}),
        401,
        "invalid_mfa_token",
    )
    r = await client.post("/user/login/passkey/options", json={"mfa_token": "x", "other": 1})
    assert_problem(r, 422)
    # an mfa_token of an account without a passkey (its methods do not offer one)
    plain = await register(client)
    token = links.make(links.SECOND_FACTOR, await User.get(id=plain["user"]["id"]))
    assert_problem(
        await client.post("/user/login/passkey/options", json={"mfa_token": token}), 409, "no_passkey"
    )
    # and exactly one factor goes with an mfa_token
    r = await client.post("/user/login/mfa", json={"mfa_token": token, "code": "123456", "passkey": {}})
    assert_problem(r, 422)


async def test_wrong_passkeys_count_against_throttle_mfa(client, monkeypatch):
    monkeypatch.setattr(throttle_module, "_throttle", None)
    monkeypatch.setattr(settings, "THROTTLE_MFA", limits.parse("2/hour"))
    account, authenticator, _ = await account_with_passkey(client)
    mfa_token = await password_step(client, account)
    for _ in range(2):
        assert_problem(
            await second_factor(client, mfa_token, authenticator, origin="http://evil.example"), 401
        )
    r = await second_factor(client, mfa_token, authenticator)
    assert_problem(r, 429, "throttled")


async def test_wrong_passkeys_across_login_attempts_count_per_account_and_ip(client, monkeypatch):
    monkeypatch.setattr(throttle_module, "_throttle", None)
    monkeypatch.setattr(settings, "THROTTLE_LOGIN_ACCOUNT", limits.parse("3/hour"))
    account, authenticator, _ = await account_with_passkey(client)
    user = await User.get(id=account["user"]["id"])
    now = int(time.time())
    # four login attempts (made a second apart: each its own mfa_token), one wrong answer in each of three
    attempts = [links.make(links.SECOND_FACTOR, user, made_at=now - i) for i in range(4)]
    for attempt in attempts[:3]:
        r = await second_factor(client, attempt, authenticator, origin="http://evil.example")
        assert_problem(r, 401, "invalid_passkey")
    r = await second_factor(client, attempts[3], authenticator)
    assert_problem(r, 429, "throttled")  # a new login attempt buys no new tries


# --- passwordless ---------------------------------------------------------------------------------


async def test_a_passwordless_login_with_a_discoverable_passkey(client):
    account, authenticator, passkey = await account_with_passkey(client)
    for body in (None, {}):
        options = await login_options(client, body)
        assert options["allowCredentials"] == [] and options["userVerification"] == "required"
        assert options["rpId"] == RP_ID and options["timeout"] == settings.MFA_TIMEOUT * 1000
    r = await client.post("/user/login/passkey", json={"credential": authenticator.get(options)})
    body = assert_logged_in_as(r, account)
    me = await client.get("/user/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["id"] == account["user"]["id"]
    listed = (await client.get("/user/passkeys", headers=auth(account))).json()
    assert listed[0]["id"] == passkey["id"] and listed[0]["last_used_at"] is not None
    assert (await event_types(client, account))[0] == "login"
    # the refresh token of such a session works like any other
    r = await client.post("/user/refresh-token", json={"refresh_token": body["refresh_token"]})
    assert r.status_code == 200, r.text


async def test_a_passwordless_login_needs_user_verification(client):
    account, authenticator, _ = await account_with_passkey(client)
    r = await passwordless(client, authenticator, user_verified=False)
    assert_problem(r, 401, "invalid_passkey")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "login_failed" in await event_types(client, account)
    assert_logged_in_as(await passwordless(client, authenticator), account)


async def test_a_passwordless_login_needs_presence_and_the_accounts_user_handle(client):
    account, authenticator, _ = await account_with_passkey(client)
    other, _, _ = await account_with_passkey(client)
    assert_problem(await passwordless(client, authenticator, user_present=False), 401, "invalid_passkey")
    assert_problem(await passwordless(client, authenticator, user_handle=None), 401, "invalid_passkey")
    wrong = passkeys.user_handle(other["user"]["id"])
    assert_problem(await passwordless(client, authenticator, user_handle=wrong), 401, "invalid_passkey")
    assert_logged_in_as(await passwordless(client, authenticator), account)


async def test_a_passwordless_login_from_another_origin_or_rp_id_is_refused(client):
    account, authenticator, _ = await account_with_passkey(client)
    for bad in ({"origin": "http://evil.example"}, {"rp_id": "evil.example"}, {"cross_origin": True}):
        assert_problem(await passwordless(client, authenticator, **bad), 401, "invalid_passkey")
    assert_logged_in_as(await passwordless(client, authenticator), account)


async def test_a_passwordless_challenge_is_used_once(client):
    # an authenticator without a counter (as synced passkeys are): only the challenge stops a replay
    account, authenticator, _ = await account_with_passkey(client, counter=False)
    options = await login_options(client)
    credential = authenticator.get(options)
    assert_logged_in_as(await client.post("/user/login/passkey", json={"credential": credential}), account)
    r = await client.post("/user/login/passkey", json={"credential": credential})
    assert_problem(r, 401, "invalid_passkey")
    # two uses at once: one wins
    credential = authenticator.get(await login_options(client))
    answers = await asyncio.gather(
        *(client.post("/user/login/passkey", json={"credential": credential}) for _ in range(4))
    )
    assert sorted(r.status_code for r in answers) == [200, 401, 401, 401]


async def test_a_counter_that_does_not_move_forward_is_refused(client):
    account, authenticator, passkey = await account_with_passkey(client)
    assert_logged_in_as(await passwordless(client, authenticator), account)  # count 1
    assert_logged_in_as(await passwordless(client, authenticator), account)  # count 2
    # a copy of the key answering a fresh challenge with a count seen already, or an older one
    for count in (2, 1):
        assert_problem(await passwordless(client, authenticator, sign_count=count), 401, "invalid_passkey")
    mfa_token = await password_step(client, account)
    assert_problem(
        await second_factor(client, mfa_token, authenticator, sign_count=2), 401, "invalid_passkey"
    )
    assert (await Passkey.get(id=passkey["id"])).sign_count == 2
    assert_logged_in_as(await passwordless(client, authenticator, sign_count=7), account)
    assert (await Passkey.get(id=passkey["id"])).sign_count == 7


async def test_of_answers_checked_against_one_count_one_is_accepted(client):
    """The count is stored by an UPDATE conditioned on the count read: an answer checked against a
    count that another answer (on another worker) moved forward meanwhile is refused."""
    account, authenticator, passkey = await account_with_passkey(client)
    as_read = await Passkey.get(id=passkey["id"])  # count 0, as one worker read it
    assert_logged_in_as(await passwordless(client, authenticator), account)  # another worker: count 1
    assert not await passkeys._record_use(as_read, 1, backed_up=False)
    assert (await Passkey.get(id=passkey["id"])).sign_count == 1
    # over HTTP: answers to different challenges with one count, all at once: one logs in
    credentials = [authenticator.get(await login_options(client), sign_count=5) for _ in range(4)]
    answers = await asyncio.gather(
        *(client.post("/user/login/passkey", json={"credential": c}) for c in credentials)
    )
    assert sorted(r.status_code for r in answers) == [200, 401, 401, 401]
    assert (await Passkey.get(id=passkey["id"])).sign_count == 5


async def test_an_inactive_account_cannot_log_in_with_a_passkey(client):
    account, authenticator, _ = await account_with_passkey(client)
    await User.filter(id=account["user"]["id"]).update(is_active=False)
    assert_problem(await passwordless(client, authenticator), 401, "invalid_passkey")
    await User.filter(id=account["user"]["id"]).update(is_active=True)
    assert (await event_types(client, account))[0] == "login_failed"


async def test_an_unknown_passkey_is_refused(client):
    _, authenticator, passkey = await account_with_passkey(client)
    await Passkey.filter(id=passkey["id"]).delete()
    assert_problem(await passwordless(client, authenticator), 401, "invalid_passkey")


# --- accounts without a password ------------------------------------------------------------------


async def test_an_account_without_a_password_removes_a_passkey_with_a_passkey(client):
    account, authenticator, first = await account_with_passkey(client)
    second = await add_passkey(client, account, SoftwareAuthenticator(), name="Key")
    await User.filter(id=account["user"]["id"]).update(password=UNUSABLE_PASSWORD_PREFIX + "none")
    # it logs in with the passkey alone (the password login is over for it)
    session = assert_logged_in_as(await passwordless(client, authenticator), account)
    assert account["user"]["has_usable_password"] is True
    me = (await client.get("/user/me", headers=auth(session))).json()
    assert me["has_usable_password"] is False  # what tells a client to confirm with a passkey
    path = f"/user/passkeys/{second['id']}"

    r = await client.request("DELETE", path, json={"password": "!none"}, headers=auth(session))
    assert_problem(r, 422)
    r = await client.post("/user/passkeys/reauth/options", headers=auth(session))
    assert r.status_code == 200, r.text
    options = r.json()
    assert options["userVerification"] == "required"
    assert sorted(c["id"] for c in options["allowCredentials"]) == sorted(
        c.credential_id for c in await Passkey.filter(user_id=account["user"]["id"])
    )
    # a challenge of this session made for another purpose (registering) does not confirm anything
    registering = await registration_options(client, session)
    r = await client.request(
        "DELETE", path, json={"passkey": authenticator.get({**options, **registering})}, headers=auth(session)
    )
    assert_problem(r, 400, "invalid_passkey")
    # user verification is required, and the challenge is this session's
    unverified = authenticator.get(options, user_verified=False)
    assert_problem(
        await client.request("DELETE", path, json={"passkey": unverified}, headers=auth(session)),
        400,
        "invalid_passkey",
    )
    other_session = assert_logged_in_as(await passwordless(client, authenticator), account)
    options = (await client.post("/user/passkeys/reauth/options", headers=auth(session))).json()
    answer = authenticator.get(options)
    r = await client.request("DELETE", path, json={"passkey": answer}, headers=auth(other_session))
    assert_problem(r, 400, "invalid_passkey")
    r = await client.request("DELETE", path, json={"passkey": answer}, headers=auth(session))
    assert r.status_code == 204, r.text
    assert [p["id"] for p in (await client.get("/user/passkeys", headers=auth(session))).json()] == [
        first["id"]
    ]
    assert (await event_types(client, session))[0] == "passkey_removed"


async def test_an_account_with_a_password_confirms_with_it(client):
    account, authenticator, passkey = await account_with_passkey(client)
    options = (await client.post("/user/passkeys/reauth/options", headers=auth(account))).json()
    r = await client.request(
        "DELETE",
        f"/user/passkeys/{passkey['id']}",
        json={"passkey": authenticator.get(options)},
        headers=auth(account),
    )
    body = assert_problem(r, 422, "validation_error")
    assert body["errors"][0]["field"] == "passkey"
    r = await client.request(
        "DELETE",
        f"/user/passkeys/{passkey['id']}",
        json={"password": PASSWORD, "passkey": {}},
        headers=auth(account),
    )
    assert_problem(r, 422)
    plain = await register(client)
    assert_problem(await client.post("/user/passkeys/reauth/options", headers=auth(plain)), 409, "no_passkey")


async def passwordless_account(client):
    """An account without a usable password, logged in with its passkey, and a fresh confirmation."""
    account, authenticator, _ = await account_with_passkey(client)
    await User.filter(id=account["user"]["id"]).update(password=UNUSABLE_PASSWORD_PREFIX + "none")
    session = assert_logged_in_as(await passwordless(client, authenticator), account)

    async def confirmation() -> dict:
        options = (await client.post("/user/passkeys/reauth/options", headers=auth(session))).json()
        return authenticator.get(options)

    return session, confirmation


async def test_an_account_without_a_password_confirms_every_sensitive_change_with_a_passkey(client):
    session, confirmation = await passwordless_account(client)
    # the email change
    r = await client.post(
        "/user/me/email",
        json={"email": f"new-{unique()}@example.com", "passkey": await confirmation()},
        headers=auth(session),
    )
    assert r.status_code == 202, r.text
    # an answer is used once: the same one again is refused
    answer = await confirmation()
    r = await client.post("/user/mfa/totp/setup", json={"passkey": answer}, headers=auth(session))
    assert r.status_code == 200, r.text
    r = await client.post("/user/mfa/totp/setup", json={"passkey": answer}, headers=auth(session))
    assert_problem(r, 400, "invalid_passkey")
    # and the account's deletion
    r = await client.request(
        "DELETE", "/user/me", json={"passkey": await confirmation()}, headers=auth(session)
    )
    assert r.status_code == 204, r.text
    assert not await User.filter(id=session["user"]["id"]).exists()


async def test_a_sensitive_change_without_any_confirmation_is_422_naming_password(client):
    session, _ = await passwordless_account(client)
    for method, path, body in (
        ("DELETE", "/user/me", {}),
        ("POST", "/user/me/email", {"email": f"x-{unique()}@example.com"}),
        ("POST", "/user/mfa/totp/setup", {}),
    ):
        r = await client.request(method, path, json=body, headers=auth(session))
        fields = {e["field"] for e in assert_problem(r, 422, "validation_error")["errors"]}
        assert fields == {"password"}, (path, fields)

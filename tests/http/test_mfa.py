"""Second factors, the TOTP half (mfa.py), beyond the contract suite (../shared/contract-v2/test_mfa.py):
the secret sealed at rest and readable after a SECRET_KEY rotation, the ±1 step window, one use per
code and no older code after a newer one, the mfa_token's kind, expiry and single use (two steps
racing: one session), recovery codes stored as digests, THROTTLE_MFA per attempt and per account,
the staff's reset (API and manage.py), the history. Codes come from the test's own pyotp at chosen
steps, with mfa.clock moved instead of waiting.
"""

from __future__ import annotations

import asyncio
import time

import pyotp
import pytest

import settings
from apps.core import throttle as throttle_module
from apps.user import links, mfa
from apps.user.models import RecoveryCode, Session, TOTPDevice
from tests.helpers import PASSWORD, assert_problem, bearer, register

NOW = time.time()


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    """TOTP's "now", for the server, at a fixed time the test moves."""
    state = {"now": NOW}
    monkeypatch.setattr(mfa, "clock", lambda: state["now"])
    return state


def code_at(secret: str, step_offset: int = 0, *, now: float = NOW) -> str:
    step = int(now // 30) + step_offset
    return pyotp.TOTP(secret).at(step * 30)


async def enable(client, account) -> tuple[str, list[str]]:
    headers = bearer(account["access_token"])
    r = await client.post("/user/mfa/totp/setup", json={"password": account["password"]}, headers=headers)
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    r = await client.post("/user/mfa/totp/confirm", json={"code": code_at(secret, -1)}, headers=headers)
    assert r.status_code == 200, r.text
    return secret, r.json()["recovery_codes"]


async def first_step(client, account) -> str:
    r = await client.post(
        "/user/login", json={"email": account["user"]["email"], "password": account["password"]}
    )
    assert r.status_code == 200 and r.json()["mfa_required"] is True, r.text
    assert "access_token" not in r.json() and r.headers["cache-control"] == "no-store"
    return r.json()["mfa_token"]


async def second_step(client, mfa_token, **factor):
    return await client.post("/user/login/mfa", json={"mfa_token": mfa_token, **factor})


async def history(client, account) -> list[str]:
    r = await client.get("/user/events", headers=bearer(account["access_token"]))
    return [e["type"] for e in r.json()["results"]]


async def test_the_secret_is_sealed_at_rest_and_survives_a_key_rotation(client, monkeypatch):
    account = await register(client)
    secret, _ = await enable(client, account)
    stored = (await TOTPDevice.get(user_id=account["user"]["id"])).secret
    assert secret not in stored and secret.lower() not in stored.lower()
    monkeypatch.setattr(settings, "SECRET_KEY_FALLBACKS", [settings.SECRET_KEY])
    monkeypatch.setattr(settings, "SECRET_KEY", "rotated-" + "k" * 40)
    r = await second_step(client, await first_step(client, account), code=code_at(secret, 0))
    assert r.status_code == 200, r.text
    # without the old key nothing opens it: the code fails (and the staff reset is the way back)
    monkeypatch.setattr(settings, "SECRET_KEY_FALLBACKS", [])
    assert_problem(
        await second_step(client, await first_step(client, account), code=code_at(secret, 1)),
        401,
        "invalid_code",
    )


async def test_codes_within_one_step_are_accepted_once_and_never_an_older_one(client, frozen_clock):
    account = await register(client)
    secret, _ = await enable(client, account)  # confirmed with the step before now
    # the step before now was used by the confirmation: its code is spent
    assert_problem(
        await second_step(client, await first_step(client, account), code=code_at(secret, -1)),
        401,
        "invalid_code",
    )
    # two steps ahead: outside the window
    assert_problem(
        await second_step(client, await first_step(client, account), code=code_at(secret, 2)),
        401,
        "invalid_code",
    )
    # one step ahead: accepted; then now's code is older than the last used: refused
    assert (
        await second_step(client, await first_step(client, account), code=code_at(secret, 1))
    ).status_code == 200
    assert_problem(
        await second_step(client, await first_step(client, account), code=code_at(secret, 0)),
        401,
        "invalid_code",
    )
    frozen_clock["now"] = NOW + 60  # two steps later: the next code is good again
    assert (
        await second_step(client, await first_step(client, account), code=code_at(secret, 2))
    ).status_code == 200


async def test_concurrent_uses_of_one_code_open_one_session(client):
    account = await register(client)
    secret, _ = await enable(client, account)
    tokens = [await first_step(client, account) for _ in range(2)]
    # the two attempts come from the same state (no login between): same account, two requests
    code = code_at(secret, 0)
    answers = await asyncio.gather(*(second_step(client, t, code=code) for t in tokens))
    assert sorted(r.status_code for r in answers) == [200, 401]


async def test_the_mfa_token_is_spent_by_its_login_and_a_racing_step_loses(client):
    account = await register(client)
    secret, codes = await enable(client, account)
    mfa_token = await first_step(client, account)
    both = await asyncio.gather(
        second_step(client, mfa_token, code=code_at(secret, 0)),
        second_step(client, mfa_token, recovery_code=codes[0]),
    )
    assert sorted(r.status_code for r in both) == [200, 401]
    sessions = await Session.filter(user_id=account["user"]["id"], revoked_at=None).count()
    assert sessions == 2  # the registration's and one login's, not two
    # and once finished, the token is refused even with a good factor
    assert_problem(await second_step(client, mfa_token, recovery_code=codes[1]), 401, "invalid_mfa_token")


async def test_a_password_change_between_the_steps_spends_the_mfa_token(client):
    account = await register(client)
    secret, _ = await enable(client, account)
    mfa_token = await first_step(client, account)
    r = await client.post(
        "/user/me/password",
        json={"current_password": PASSWORD, "new_password": "An0ther-Long-Passphrase"},
        headers=bearer(account["access_token"]),
    )
    assert r.status_code == 204, r.text
    assert_problem(await second_step(client, mfa_token, code=code_at(secret, 0)), 401, "invalid_mfa_token")


async def test_the_mfa_token_expires_and_is_never_an_access_token(client, monkeypatch):
    account = await register(client)
    secret, _ = await enable(client, account)
    mfa_token = await first_step(client, account)
    assert_problem(await client.get("/user/me", headers=bearer(mfa_token)), 401)
    # and an access token is no mfa_token
    assert_problem(
        await second_step(client, account["access_token"], code=code_at(secret, 0)), 401, "invalid_mfa_token"
    )
    later = time.time() + settings.MFA_TIMEOUT + 1
    monkeypatch.setattr(links.time, "time", lambda: later)
    assert_problem(await second_step(client, mfa_token, code=code_at(secret, 0)), 401, "invalid_mfa_token")


async def test_recovery_codes_are_stored_as_digests_and_forgive_case_and_dashes(client):
    account = await register(client)
    _, codes = await enable(client, account)
    stored = await RecoveryCode.filter(user_id=account["user"]["id"]).values_list("digest", flat=True)
    assert len(stored) == 10 and not {c.replace("-", "") for c in codes} & set(stored)
    typed = codes[3].upper().replace("-", " ")
    assert (
        await second_step(client, await first_step(client, account), recovery_code=typed)
    ).status_code == 200
    assert "recovery_code_used" in await history(client, account)


async def test_second_factor_attempts_are_throttled_per_login_attempt_not_per_owner(client, monkeypatch):
    monkeypatch.setattr(throttle_module, "_throttle", None)
    monkeypatch.setattr(settings, "THROTTLE_MFA", settings._limit("THROTTLE_MFA_TEST", "3/hour"))
    account = await register(client)
    secret, _ = await enable(client, account)
    attempt = await first_step(client, account)
    for _ in range(3):
        assert_problem(await second_step(client, attempt, code="000000"), 401, "invalid_code")
    r = await second_step(client, attempt, code=code_at(secret, 0))
    assert_problem(r, 429, "throttled")  # even the right code, past the limit
    # the owner logging in again (their next login attempt, a second later) is not locked out
    later = time.time() + 1
    monkeypatch.setattr(links.time, "time", lambda: later)
    assert (
        await second_step(client, await first_step(client, account), code=code_at(secret, 0))
    ).status_code == 200
    assert "mfa_failed" in await history(client, account)


async def test_wrong_factors_across_login_attempts_count_per_account_and_ip(
    client, monkeypatch, frozen_clock
):
    monkeypatch.setattr(throttle_module, "_throttle", None)
    monkeypatch.setattr(settings, "THROTTLE_LOGIN_ACCOUNT", settings._limit("THROTTLE_LOGIN_TEST", "4/hour"))
    account = await register(client)
    secret, _ = await enable(client, account)
    clock = {"now": time.time()}
    monkeypatch.setattr(links.time, "time", lambda: clock["now"])
    for _ in range(2):  # two login attempts, two wrong codes each: four wrong factors from one IP
        clock["now"] += 1
        attempt = await first_step(client, account)
        for _ in range(2):
            assert_problem(await second_step(client, attempt, code="000000"), 401, "invalid_code")
    clock["now"] += 1
    r = await second_step(client, await first_step(client, account), code=code_at(secret, 0))
    assert_problem(r, 429, "throttled")  # a new login attempt buys no new guesses


async def test_codes_a_logged_in_session_tries_are_throttled_per_account(client, monkeypatch):
    monkeypatch.setattr(throttle_module, "_throttle", None)
    monkeypatch.setattr(settings, "THROTTLE_MFA", settings._limit("THROTTLE_MFA_TEST", "3/hour"))
    account = await register(client)
    secret, _ = await enable(client, account)
    headers = bearer(account["access_token"])
    # the confirmation tried one code: two wrong ones reach the limit
    for _ in range(2):
        r = await client.request(
            "DELETE", "/user/mfa/totp", json={"password": PASSWORD, "code": "000000"}, headers=headers
        )
        assert_problem(r, 401, "invalid_code")
    r = await client.request(
        "DELETE", "/user/mfa/totp", json={"password": PASSWORD, "code": code_at(secret, 0)}, headers=headers
    )
    assert_problem(r, 429, "throttled")


async def test_disabling_with_a_recovery_code_when_the_app_is_lost(client):
    account = await register(client)
    _, codes = await enable(client, account)
    r = await client.request(
        "DELETE",
        "/user/mfa/totp",
        json={"password": PASSWORD, "code": codes[0]},
        headers=bearer(account["access_token"]),
    )
    assert r.status_code == 204, r.text
    r = await client.post("/user/login", json={"email": account["user"]["email"], "password": PASSWORD})
    assert "access_token" in r.json()
    assert await RecoveryCode.filter(user_id=account["user"]["id"]).count() == 0
    assert {"mfa_enabled", "mfa_disabled"} <= set(await history(client, account))


async def test_setup_twice_replaces_an_unconfirmed_one_and_refuses_once_active(client):
    account = await register(client)
    headers = bearer(account["access_token"])
    first = (await client.post("/user/mfa/totp/setup", json={"password": PASSWORD}, headers=headers)).json()
    second = (await client.post("/user/mfa/totp/setup", json={"password": PASSWORD}, headers=headers)).json()
    assert first["secret"] != second["secret"]
    r = await client.post(
        "/user/mfa/totp/confirm", json={"code": code_at(first["secret"], 0)}, headers=headers
    )
    assert_problem(r, 401, "invalid_code")  # the replaced secret no longer counts
    r = await client.post(
        "/user/mfa/totp/confirm", json={"code": code_at(second["secret"], 0)}, headers=headers
    )
    assert r.status_code == 200
    r = await client.post("/user/mfa/totp/setup", json={"password": PASSWORD}, headers=headers)
    assert_problem(r, 409, "mfa_already_enabled")
    r = await client.post(
        "/user/mfa/totp/confirm", json={"code": code_at(second["secret"], 1)}, headers=headers
    )
    assert_problem(r, 409, "mfa_not_set_up")


async def test_the_staff_reset_lets_the_owner_in_with_the_password_and_is_audited(client, staff, superuser):
    account = await register(client)
    await enable(client, account)
    user_id = account["user"]["id"]
    r = await client.delete(f"/admin/users/{user_id}/mfa", headers=bearer(staff["access_token"]))
    assert r.status_code == 200 and r.json() == {"removed": 1}, r.text
    r = await client.post("/user/login", json={"email": account["user"]["email"], "password": PASSWORD})
    assert "access_token" in r.json()
    r = await client.get(
        "/admin/events",
        params={"user_id": user_id, "type": "mfa_disabled"},
        headers=bearer(superuser["access_token"]),
    )
    assert r.json()["results"][0]["actor_id"] == staff["id"]
    # a plain staff member may not reset a superuser's factors
    assert_problem(
        await client.delete(f"/admin/users/{superuser['id']}/mfa", headers=bearer(staff["access_token"])), 403
    )
    # and nobody else may at all
    other = await register(client)
    assert_problem(
        await client.delete(f"/admin/users/{user_id}/mfa", headers=bearer(other["access_token"])), 403
    )


async def test_the_qr_code_is_a_whole_svg_document_an_img_can_show(client):
    account = await register(client)
    r = await client.post(
        "/user/mfa/totp/setup", json={"password": PASSWORD}, headers=bearer(account["access_token"])
    )
    svg = r.json()["qr_svg"]
    # an <img src="data:image/svg+xml,..."> renders an SVG only with its namespace
    assert svg.startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in svg

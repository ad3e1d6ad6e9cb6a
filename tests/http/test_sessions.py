"""Point 5: logout, password change, deletion and deactivation end sessions at once.

"At once" means the next request with the ended session's access token is refused, although the
token itself has not expired; the check is the session row, which every worker process reads.
"""

from datetime import UTC, datetime, timedelta

import settings
from apps.user import accounts
from apps.user.models import RefreshToken, Session, User
from tests.helpers import PASSWORD, assert_problem, bearer, register, unique


async def login(client, reg):
    r = await client.post("/user/login", json={"email": reg["user"]["email"], "password": reg["password"]})
    assert r.status_code == 200, r.text
    return r.json()


async def me(client, pair):
    return await client.get("/user/me", headers=bearer(pair["access_token"]))


async def test_me_returns_fresh_user_data(client):
    reg = await register(client)
    await User.filter(id=reg["user"]["id"]).update(is_staff=True)
    body = (await me(client, reg)).json()
    assert body["is_staff"] is True and "password" not in body


async def test_logout_ends_only_this_session(client):
    reg = await register(client)
    other = await login(client, reg)
    r = await client.post("/user/logout", headers=bearer(reg["access_token"]))
    assert r.status_code == 204 and r.content == b""
    assert_problem(await me(client, reg), 401, "invalid_token")
    assert_problem(
        await client.post("/user/refresh-token", json={"refresh_token": reg["refresh_token"]}), 401
    )
    assert (await me(client, other)).status_code == 200
    assert_problem(await client.post("/user/logout"), 401, "not_authenticated")


async def test_password_change_ends_every_other_session(client):
    reg = await register(client)
    other = await login(client, reg)
    r = await client.post(
        "/user/me/password",
        headers=bearer(reg["access_token"]),
        json={"current_password": PASSWORD, "new_password": "Brand-New-Passw0rd"},
    )
    assert r.status_code == 204, r.text
    assert_problem(await me(client, other), 401, "invalid_token")
    assert_problem(
        await client.post("/user/refresh-token", json={"refresh_token": other["refresh_token"]}), 401
    )
    assert (await me(client, reg)).status_code == 200
    assert (
        await client.post("/user/refresh-token", json={"refresh_token": reg["refresh_token"]})
    ).status_code == 200
    assert (
        await client.post("/user/login", json={"email": reg["user"]["email"], "password": PASSWORD})
    ).status_code == 401
    reg["password"] = "Brand-New-Passw0rd"
    await login(client, reg)


async def test_password_change_needs_the_current_password_and_a_valid_new_one(client):
    reg = await register(client)
    r = await client.post(
        "/user/me/password",
        headers=bearer(reg["access_token"]),
        json={"current_password": "Wrong-Password-1", "new_password": "Brand-New-Passw0rd"},
    )
    assert assert_problem(r, 422)["errors"] == [
        {"field": "current_password", "message": "The password is wrong."}
    ]
    r = await client.post(
        "/user/me/password",
        headers=bearer(reg["access_token"]),
        json={"current_password": PASSWORD, "new_password": "short"},
    )
    assert [e["field"] for e in assert_problem(r, 422)["errors"]] == ["new_password"]
    await login(client, reg)  # unchanged


async def test_delete_account_ends_everything(client):
    reg = await register(client)
    other = await login(client, reg)
    r = await client.request(
        "DELETE", "/user/me", json={"password": "Wrong-Password-1"}, headers=bearer(reg["access_token"])
    )
    assert_problem(r, 422)
    r = await client.request(
        "DELETE", "/user/me", json={"password": PASSWORD}, headers=bearer(reg["access_token"])
    )
    assert r.status_code == 204
    for pair in (reg, other):
        assert_problem(await me(client, pair), 401, "invalid_token")
    assert not await User.exists(id=reg["user"]["id"])
    assert not await Session.exists(user_id=reg["user"]["id"])  # ON DELETE CASCADE holds on both databases
    assert not await RefreshToken.exists(session__user_id=reg["user"]["id"])
    r = await client.post("/user/login", json={"email": reg["user"]["email"], "password": PASSWORD})
    assert_problem(r, 401, "invalid_credentials")


async def test_deactivation_refuses_tokens_at_once(client):
    reg = await register(client)
    await accounts.set_flags(None, await User.get(id=reg["user"]["id"]), client=None, is_active=False)
    assert_problem(await me(client, reg), 401, "invalid_token")
    assert_problem(
        await client.post("/user/refresh-token", json={"refresh_token": reg["refresh_token"]}), 401
    )
    assert (await Session.get(user_id=reg["user"]["id"])).revoked_reason == "deactivated"


async def test_update_profile(client):
    reg = await register(client)
    taken = await register(client)
    # the email changes only through a mailed link (tests/http/test_email_change.py)
    r = await client.patch(
        "/user/me", headers=bearer(reg["access_token"]), json={"email": taken["user"]["email"].upper()}
    )
    assert assert_problem(r, 422)["errors"][0]["field"] == "email"
    r = await client.patch(
        "/user/me", headers=bearer(reg["access_token"]), json={"username": taken["user"]["username"].upper()}
    )
    assert_problem(r, 409)
    assert assert_problem(r, 409)["errors"] == [
        {"field": "username", "message": "This username is already taken."}
    ]
    r = await client.patch(
        "/user/me",
        headers=bearer(reg["access_token"]),
        json={"username": "Renamed" + reg["user"]["username"]},
    )
    assert r.status_code == 200 and r.json()["username"] == "Renamed" + reg["user"]["username"]
    # the new name logs in, case-insensitively
    ok = await client.post(
        "/user/login", json={"username": ("renamed" + reg["user"]["username"]).upper(), "password": PASSWORD}
    )
    assert ok.status_code == 200
    # changing only the case of one's own name is not a conflict
    r = await client.patch(
        "/user/me",
        headers=bearer(reg["access_token"]),
        json={"username": ("renamed" + reg["user"]["username"])},
    )
    assert r.status_code == 200


async def test_profile_update_refuses_privileges_and_nulls(client):
    reg = await register(client)
    for body in (
        {"is_staff": True},
        {"is_superuser": True},
        {"password": "x" * 10},
        {"username": None},
        {"email": "bad"},
    ):
        r = await client.patch("/user/me", headers=bearer(reg["access_token"]), json=body)
        assert_problem(r, 422)
    assert (await User.get(id=reg["user"]["id"])).is_staff is False


async def test_a_session_past_its_absolute_lifetime_no_longer_refreshes(client):
    """However active: refreshed a minute ago, but begun SESSION_MAX_LIFETIME ago."""
    reg = await register(client)
    now = datetime.now(UTC)
    await Session.filter(user_id=reg["user"]["id"]).update(
        created_at=now - timedelta(seconds=settings.SESSION_MAX_LIFETIME + 60),
        last_used_at=now - timedelta(seconds=60),
    )
    r = await client.post("/user/refresh-token", json={"refresh_token": reg["refresh_token"]})
    assert_problem(r, 401, "invalid_refresh_token")


async def test_refreshing_never_extends_a_session_past_its_absolute_lifetime(client, monkeypatch):
    reg = await register(client)
    session = await Session.get(user_id=reg["user"]["id"])
    monkeypatch.setattr(settings, "SESSION_MAX_LIFETIME", 3600)  # shorter than the idle lifetime
    r = await client.post("/user/refresh-token", json={"refresh_token": reg["refresh_token"]})
    assert r.status_code == 200, r.text
    refreshed = await Session.get(id=session.id)
    assert refreshed.expires_at <= session.created_at + timedelta(seconds=3600)
    # the access tokens of the session die with it: past that moment the session is not live
    await Session.filter(id=session.id).update(created_at=session.created_at - timedelta(seconds=3601))
    r = await client.post("/user/refresh-token", json={"refresh_token": r.json()["refresh_token"]})
    assert_problem(r, 401, "invalid_refresh_token")


async def test_a_user_agent_with_control_characters_is_stored_without_them(client):
    name = unique()
    r = await client.post(
        "/user/register",
        json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
        headers={"User-Agent": "Agent\x00/1.0\x1b[31m"},
    )
    assert r.status_code == 201, r.text
    assert (await Session.get(user_id=r.json()["user"]["id"])).user_agent == "Agent/1.0[31m"

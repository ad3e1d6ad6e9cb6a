"""Point 4: refresh tokens are opaque, single-use, rotated; a replay ends the whole session."""

from datetime import UTC, datetime, timedelta

from apps.user import tokens
from apps.user.models import RefreshToken, Session, User
from tests.helpers import assert_problem, bearer, register


async def refresh(client, token):
    return await client.post("/user/refresh-token", json={"refresh_token": token})


async def test_refresh_rotates_within_the_same_session(client):
    reg = await register(client)
    r = await refresh(client, reg["refresh_token"])
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    pair = r.json()
    assert pair["refresh_token"] != reg["refresh_token"] and pair["user"]["id"] == reg["user"]["id"]
    import jwt

    sid = {
        jwt.decode(t, options={"verify_signature": False})["sid"]
        for t in (reg["access_token"], pair["access_token"])
    }
    assert len(sid) == 1
    rows = await RefreshToken.filter(session_id=sid.pop()).order_by("id")
    assert len(rows) == 2 and rows[0].used_at is not None and rows[1].used_at is None
    # only digests are stored
    assert {row.digest for row in rows} == {
        tokens.refresh_token_digest(reg["refresh_token"]),
        tokens.refresh_token_digest(pair["refresh_token"]),
    }


async def test_replaying_a_spent_token_ends_the_whole_session(client):
    reg = await register(client)
    pair = (await refresh(client, reg["refresh_token"])).json()
    assert_problem(await refresh(client, reg["refresh_token"]), 401, "invalid_refresh_token")
    # the thief's replay ended the session: the legitimate holder's newer tokens die too
    assert_problem(await refresh(client, pair["refresh_token"]), 401)
    assert_problem(await client.get("/user/me", headers=bearer(pair["access_token"])), 401, "invalid_token")
    session = await Session.get(user_id=reg["user"]["id"])
    assert session.revoked_reason == "refresh_token_reused"


async def test_replay_does_not_touch_other_sessions(client):
    reg = await register(client)
    other = (
        await client.post("/user/login", json={"email": reg["user"]["email"], "password": reg["password"]})
    ).json()
    await refresh(client, reg["refresh_token"])
    await refresh(client, reg["refresh_token"])
    assert (await refresh(client, other["refresh_token"])).status_code == 200


async def test_unknown_and_garbage_tokens_are_refused(client):
    for token in ("", "x", "a" * 43, "💥" * 10):
        assert_problem(await refresh(client, token), 401, "invalid_refresh_token")


async def test_expired_session_cannot_refresh(client):
    reg = await register(client)
    await Session.filter(user_id=reg["user"]["id"]).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert_problem(await refresh(client, reg["refresh_token"]), 401)


async def test_refresh_extends_the_sliding_expiry(client):
    reg = await register(client)
    soon = datetime.now(UTC) + timedelta(minutes=5)
    await Session.filter(user_id=reg["user"]["id"]).update(expires_at=soon)
    assert (await refresh(client, reg["refresh_token"])).status_code == 200
    session = await Session.get(user_id=reg["user"]["id"])
    assert session.expires_at > datetime.now(UTC) + timedelta(days=13)


async def test_inactive_user_cannot_refresh(client):
    reg = await register(client)
    await User.filter(id=reg["user"]["id"]).update(is_active=False)
    assert_problem(await refresh(client, reg["refresh_token"]), 401)

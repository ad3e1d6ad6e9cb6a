"""Point 5 with the per-worker caches: an ended session is refused on its next request by every worker.

Each uvicorn worker caches verified tokens and live sessions (apps/user/authcache.py); a shared
counter tells all of them when sessions end. These tests prove the caches are real (a change the
counter is not told about goes unseen) and that every in-band revocation reaches every worker.
"""

import asyncio
import os
import subprocess
import sys
import time

import httpx
import jwt
import pytest

import settings
from apps.user import authcache
from apps.user.models import Session
from tests.helpers import ROOT, assert_problem, bearer, live_server, register


async def me(client, pair):
    return await client.get("/user/me", headers=bearer(pair["access_token"]))


async def test_session_cache_is_real_and_the_epoch_is_what_keeps_it_correct(client):
    reg = await register(client)
    assert (await me(client, reg)).status_code == 200  # now cached in this worker
    # Revoked behind the service's back (no invalidate): the cached session is still honoured ...
    await Session.filter(user_id=reg["user"]["id"]).update(revoked_at=settings_now())
    assert (await me(client, reg)).status_code == 200
    # ... until any worker moves the shared counter, which every in-band revocation does.
    authcache.invalidate()
    assert_problem(await me(client, reg), 401, "invalid_token")


async def test_session_cache_ttl_bounds_out_of_band_edits(client, monkeypatch):
    reg = await register(client)
    assert (await me(client, reg)).status_code == 200
    await Session.filter(user_id=reg["user"]["id"]).update(revoked_at=settings_now())
    monkeypatch.setattr(settings, "SESSION_CACHE_TTL", 0)
    await asyncio.sleep(0.01)
    assert_problem(await me(client, reg), 401)


async def test_session_cache_off_checks_every_request(client, monkeypatch):
    monkeypatch.setattr(settings, "SESSION_CACHE", False)
    authcache.invalidate()
    reg = await register(client)
    assert (await me(client, reg)).status_code == 200
    await Session.filter(user_id=reg["user"]["id"]).update(revoked_at=settings_now())
    assert_problem(await me(client, reg), 401)


async def test_cached_token_still_expires(client):
    reg = await register(client)
    claims = jwt.decode(reg["access_token"], options={"verify_signature": False})
    claims["exp"] = int(time.time()) + 2
    short = jwt.encode(claims, settings.SECRET_KEY, algorithm="HS256", headers={"typ": "at+jwt"})
    assert (await client.get("/user/me", headers=bearer(short))).status_code == 200  # verified and cached
    await asyncio.sleep(2.1)
    body = assert_problem(await client.get("/user/me", headers=bearer(short)), 401, "invalid_token")
    assert body["detail"] == "The access token has expired."


async def test_refresh_extends_a_cached_session(client):
    reg = await register(client)
    from datetime import UTC, datetime, timedelta

    await Session.filter(user_id=reg["user"]["id"]).update(
        expires_at=datetime.now(UTC) + timedelta(seconds=1)
    )
    authcache.invalidate()
    assert (await me(client, reg)).status_code == 200  # cached with an expiry one second away
    pair = (await client.post("/user/refresh-token", json={"refresh_token": reg["refresh_token"]})).json()
    await asyncio.sleep(1.1)
    # the cached entry lapsed with the old expiry; the session itself was extended and is looked up again
    assert (await me(client, pair)).status_code == 200


async def test_verify_answers_from_request_user(client):
    reg = await register(client)
    r = await client.get("/user/verify", headers=bearer(reg["access_token"]))
    assert r.status_code == 204
    assert r.headers["x-user-id"] == str(reg["user"]["id"]) and r.headers["x-user-scopes"] == "authenticated"
    assert_problem(await client.get("/user/verify"), 401, "not_authenticated")
    await client.post("/user/logout", headers=bearer(reg["access_token"]))
    assert_problem(
        await client.get("/user/verify", headers=bearer(reg["access_token"])), 401, "invalid_token"
    )


def test_concurrent_bumps_from_many_processes_all_count(tmp_path):
    path = tmp_path / "epoch"
    code = (
        "import sys; from apps.user.authcache import RevocationEpoch\n"
        "e = RevocationEpoch(sys.argv[1])\n"
        "for _ in range(500): e.bump()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, env=env) for _ in range(4)]
    assert all(p.wait(60) == 0 for p in procs)
    assert authcache.RevocationEpoch(str(path)).read() == 2000


@pytest.fixture
def two_workers(database_url, tmp_path):
    """The service as deployed: uvicorn with two worker processes on the suite's database."""
    with live_server(database_url, tmp_path, "--workers", "2") as base:
        yield base


def test_logout_is_refused_at_once_by_every_worker(two_workers):
    def fresh(method, path, **kw):
        # a new connection per request, so the kernel spreads them over both workers
        with httpx.Client(base_url=two_workers) as c:
            return c.request(method, path, **kw)

    reg = fresh(
        "POST",
        "/user/register",
        json={
            "username": "w" + os.urandom(4).hex(),
            "email": os.urandom(4).hex() + "@example.com",
            "password": "Corr3ct-Horse-Battery",
        },
    ).json()
    auth = bearer(reg["access_token"])
    # warm both workers' caches with this session
    assert all(fresh("GET", "/user/verify", headers=auth).status_code == 204 for _ in range(40))
    assert fresh("POST", "/user/logout", headers=auth).status_code == 204
    statuses = [fresh("GET", "/user/verify", headers=auth).status_code for _ in range(40)]
    assert statuses == [401] * 40


def settings_now():
    from datetime import UTC, datetime

    return datetime.now(UTC)

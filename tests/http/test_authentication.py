"""Per-worker caches of tokens and sessions, over HTTP: an ended session is refused on its next request
by every worker, and the caches are real (a change the revocation signal is not told about goes
unseen until its TTL). The cache's clock-driven rules are in tests/unit/test_authentication.py.
"""

import os
from datetime import UTC, datetime

import httpx
import pytest

import settings
from apps.user import revocation
from apps.user.models import Session
from tests.helpers import assert_problem, bearer, live_server, register


async def me(client, pair):
    return await client.get("/user/me", headers=bearer(pair["access_token"]))


async def revoke_behind_the_services_back(reg) -> None:
    await Session.filter(user_id=reg["user"]["id"]).update(revoked_at=datetime.now(UTC))


async def test_session_cache_is_real_and_the_signal_is_what_keeps_it_correct(client):
    reg = await register(client)
    assert (await me(client, reg)).status_code == 200  # now cached in this worker
    # Revoked behind the service's back (nothing published): the cached session is still honoured ...
    await revoke_behind_the_services_back(reg)
    assert (await me(client, reg)).status_code == 200
    # ... until the revocation signal moves, as every commit that ends sessions makes it.
    await revocation.signal().publish()
    assert_problem(await me(client, reg), 401, "invalid_token")


async def test_session_cache_off_checks_every_request(client, monkeypatch):
    monkeypatch.setattr(settings, "SESSION_CACHE", False)
    await revocation.signal().publish()
    reg = await register(client)
    assert (await me(client, reg)).status_code == 200
    await revoke_behind_the_services_back(reg)
    assert_problem(await me(client, reg), 401)


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


@pytest.fixture
def two_workers(database_url, tmp_path):
    """The service as deployed: uvicorn with two worker processes on the suite's database."""
    with live_server(database_url, tmp_path, "--workers", "2") as base:
        yield base


def worker_of(response: httpx.Response) -> str:
    # A generated request id is a random per-process prefix (16 hex digits) and a counter.
    return response.headers["x-request-id"][:16]


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
    # warm both workers' caches with this session, and prove both answered
    before = [fresh("GET", "/user/verify", headers=auth) for _ in range(60)]
    assert [r.status_code for r in before] == [204] * 60
    assert len({worker_of(r) for r in before}) == 2, "one worker answered everything: the test proves nothing"
    assert fresh("POST", "/user/logout", headers=auth).status_code == 204
    after = [fresh("GET", "/user/verify", headers=auth) for _ in range(60)]
    assert [r.status_code for r in after] == [401] * 60
    assert len({worker_of(r) for r in after}) == 2, "both workers must have refused the logged-out token"

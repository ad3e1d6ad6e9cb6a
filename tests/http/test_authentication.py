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


# --- GET /user/me from the cached session (issue 12, point 2) -----------------------------------------


async def test_me_reads_nothing_while_cached_and_sees_every_change_made_through_the_service(client):
    """The user object is request.user's: a change behind the service's back goes unseen (so no read
    happened), and each change made through the service is there on the very next request."""
    from apps.user import accounts, links
    from apps.user.models import User
    from tests.helpers import PASSWORD, unique

    reg = await register(client)
    auth, user_id = bearer(reg["access_token"]), reg["user"]["id"]

    async def seen() -> dict:
        r = await client.get("/user/me", headers=auth)
        assert r.status_code == 200, r.text
        return r.json()

    first = await seen()
    await User.filter(id=user_id).update(username="changed-behind-its-back")
    assert await seen() == first  # answered from the cache: nothing was read

    name = unique("n")
    assert (await client.patch("/user/me", json={"username": name}, headers=auth)).status_code == 200
    assert (await seen())["username"] == name
    # a login elsewhere moves last_login
    login = await client.post("/user/login", json={"email": reg["user"]["email"], "password": PASSWORD})
    assert (await seen())["last_login"] == login.json()["user"]["last_login"] != first["last_login"]
    # read once, then from the cache again
    await User.filter(id=user_id).update(pending_email="behind-its-back@example.com")
    assert (await seen())["pending_email"] is None
    new_email = f"{unique()}@example.com"
    r = await client.post("/user/me/email", json={"email": new_email, "password": PASSWORD}, headers=auth)
    assert r.status_code == 202
    assert (await seen())["pending_email"] == new_email
    # a password change cancels the pending address (and keeps this session)
    r = await client.post(
        "/user/me/password",
        json={"current_password": PASSWORD, "new_password": "Another-Passw0rd-9"},
        headers=auth,
    )
    assert r.status_code == 204
    assert (await seen())["pending_email"] is None
    # verifying the address
    token = links.make(links.VERIFY, await User.get(id=user_id))
    assert (await client.post("/user/email/verify", json={"token": token})).status_code == 200
    assert (await seen())["email_verified"] is True
    # staff changes
    staff = unique("st")
    await accounts.create_user(staff, f"{staff}@example.com", PASSWORD, is_staff=True, is_superuser=True)
    staff_login = await client.post("/user/login", json={"username": staff, "password": PASSWORD})
    staff_auth = bearer(staff_login.json()["access_token"])
    r = await client.patch(f"/admin/users/{user_id}", json={"is_staff": True}, headers=staff_auth)
    assert r.status_code == 200, r.text
    assert (await seen())["is_staff"] is True


def test_a_change_through_one_worker_is_in_the_user_object_of_every_worker(two_workers):
    def fresh(method, path, **kw):
        with httpx.Client(base_url=two_workers) as c:
            return c.request(method, path, **kw)

    name = "w" + os.urandom(4).hex()
    reg = fresh(
        "POST",
        "/user/register",
        json={"username": name, "email": f"{name}@example.com", "password": "Corr3ct-Horse-Battery"},
    ).json()
    auth = bearer(reg["access_token"])
    before = [fresh("GET", "/user/me", headers=auth) for _ in range(60)]
    assert {r.json()["username"] for r in before} == {name}
    assert len({worker_of(r) for r in before}) == 2, "one worker answered everything: the test proves nothing"
    renamed = name + "x"
    assert fresh("PATCH", "/user/me", json={"username": renamed}, headers=auth).status_code == 200
    after = [fresh("GET", "/user/me", headers=auth) for _ in range(60)]
    assert {r.json()["username"] for r in after} == {renamed}
    assert len({worker_of(r) for r in after}) == 2
    # a login (through whichever worker) moves last_login in both workers' copies
    login = fresh("POST", "/user/login", json={"username": renamed, "password": "Corr3ct-Horse-Battery"})
    after = [fresh("GET", "/user/me", headers=auth) for _ in range(60)]
    assert {r.json()["last_login"] for r in after} == {login.json()["user"]["last_login"]}
    assert len({worker_of(r) for r in after}) == 2

"""The cross-host revocation listeners in a running app: PostgreSQL LISTEN/NOTIFY (the default on
PostgreSQL) and Redis pub/sub (REVOCATION_SIGNAL=redis, the machine's Redis). What a revocation
carries (exactly the ended session), when it goes (with the commit, never for a rollback), and that a
listener whose connection is cut trusts no cached session until it has reconnected. Several hosts at
once: tests/system/test_two_hosts.py.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import asyncpg
import jwt
import pytest
import redis.asyncio as redis

import settings
from apps.user import revocation, sessions
from apps.user.models import Session
from tests.helpers import assert_problem, bearer, register

REDIS_URL = "redis://127.0.0.1:6379/0"


def session_of(pair: dict) -> str:
    return jwt.decode(pair["access_token"], options={"verify_signature": False})["sid"]


async def me(client, pair):
    return await client.get("/user/me", headers=bearer(pair["access_token"]))


async def revoke_behind_the_services_back(pair) -> None:
    await Session.filter(id=session_of(pair)).update(revoked_at=datetime.now(UTC))


async def until(condition, within: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
def postgres(backend, database_url):
    if backend != "postgres":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    assert revocation.signal().name == "postgres"  # REVOCATION_SIGNAL=auto chose it
    return database_url


@pytest.fixture
async def notices(postgres):
    """Every NOTIFY on the revocation channel, heard by a connection of the test's own."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    connection = await asyncpg.connect(postgres)
    await connection.add_listener(revocation.CHANNEL, lambda *args: heard.put_nowait(args[-1]))
    yield heard
    await connection.close()


async def registered(client, notices) -> dict:
    """A new account; its first session moved last_login, which is notified as a profile change (its
    user object changed; its sessions and rights did not)."""
    account = await register(client)
    message = json.loads(await asyncio.wait_for(notices.get(), 2))
    assert message == {"s": [], "u": [], "p": [account["user"]["id"]]}
    return account


async def test_a_logout_is_notified_with_exactly_its_session(client, notices):
    pair = await registered(client, notices)
    other = await registered(client, notices)
    assert (await client.post("/user/logout", headers=bearer(pair["access_token"]))).status_code == 204
    message = json.loads(await asyncio.wait_for(notices.get(), 2))
    assert message == {"s": [session_of(pair)], "u": []}
    assert (await me(client, other)).status_code == 200


async def test_a_rolled_back_ending_notifies_nobody(client, notices):
    pair = await registered(client, notices)
    with pytest.raises(RuntimeError):
        async with sessions.ending() as end:
            assert await end.session(session_of(pair), "logout")
            raise RuntimeError("the transaction fails after the session was ended")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(notices.get(), 0.5)
    assert (await me(client, pair)).status_code == 200  # not ended: rolled back


async def test_a_postgres_listener_cut_off_trusts_no_cache_then_resumes(client, postgres):
    pair = await register(client)
    assert (await me(client, pair)).status_code == 200  # cached
    await revoke_behind_the_services_back(pair)
    assert (await me(client, pair)).status_code == 200  # the cache is real
    listener = revocation.signal().remote
    connection = await asyncpg.connect(postgres)
    try:
        killed = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'authservice revocation' AND datname = current_database()"
        )
    finally:
        await connection.close()
    assert killed >= 1
    # Cut off, or reconnected and resynchronised: either way the stale entry is not trusted.
    await until(lambda: not listener.synced or listener._outage)
    assert_problem(await me(client, pair), 401, "invalid_token")
    await until(lambda: listener.synced)
    fresh = await register(client)
    assert (await me(client, fresh)).status_code == 200
    await revoke_behind_the_services_back(fresh)
    assert (await me(client, fresh)).status_code == 200  # caching again once in sync


@pytest.fixture
async def redis_signal(app, monkeypatch):
    """This process's revocation switched to Redis pub/sub, and back afterwards."""
    monkeypatch.setattr(settings, "REVOCATION_SIGNAL", "redis")
    monkeypatch.setattr(settings, "REDIS_URL", REDIS_URL)
    await revocation.stop()
    await revocation.start()
    assert revocation.signal().name == "redis" and revocation.signal().remote.synced
    yield revocation.signal().remote
    monkeypatch.undo()
    await revocation.stop()
    await revocation.start()


async def test_redis_carries_exactly_the_ended_session(client, redis_signal):
    pair = await register(client)
    other = await register(client)
    subscriber = redis.Redis.from_url(REDIS_URL)
    pubsub = subscriber.pubsub()
    await pubsub.subscribe(revocation.CHANNEL)
    try:
        assert (await client.post("/user/logout", headers=bearer(pair["access_token"]))).status_code == 204
        message = None
        while message is None or message["type"] != "message":
            message = await asyncio.wait_for(pubsub.get_message(timeout=2), 3)
        assert json.loads(message["data"]) == {"s": [session_of(pair)], "u": []}
    finally:
        await pubsub.aclose()
        await subscriber.aclose()
    assert (await me(client, other)).status_code == 200


async def test_a_redis_listener_cut_off_trusts_no_cache_then_resumes(client, redis_signal):
    pair = await register(client)
    assert (await me(client, pair)).status_code == 200
    await revoke_behind_the_services_back(pair)
    assert (await me(client, pair)).status_code == 200  # the cache is real
    admin = redis.Redis.from_url(REDIS_URL)
    try:
        clients = await admin.client_list()
        ours = [
            c["id"] for c in clients if c.get("name") == "authservice-revocation" and "subscribe" in c["cmd"]
        ]
        assert ours
        for client_id in ours:
            await admin.client_kill_filter(_id=client_id)
    finally:
        await admin.aclose()
    await until(lambda: not redis_signal.synced or redis_signal._outage)
    assert_problem(await me(client, pair), 401, "invalid_token")
    await until(lambda: redis_signal.synced)
    fresh = await register(client)
    assert (await me(client, fresh)).status_code == 200
    await revoke_behind_the_services_back(fresh)
    assert (await me(client, fresh)).status_code == 200

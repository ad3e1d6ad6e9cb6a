"""The PostgreSQL pool skips asyncpg's per-release reset query, and nothing relies on it; SQLite's one
connection is waited for no longer than a pooled PostgreSQL connection is."""

import asyncio
import time

import pytest
from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

import settings
from apps.core.database import PooledConnection
from tests.helpers import assert_problem


async def test_postgres_pool_uses_connections_without_reset_query(app, backend):
    if backend != "postgres":
        pytest.skip("asyncpg's pool only exists on PostgreSQL")
    client = connections.get("default")
    async with client.acquire_connection() as connection:
        assert isinstance(connection, PooledConnection)
        assert connection.get_reset_query() == ""
        # session state that a reset would have cleared: the service never sets any
        assert await connection.fetchval("SHOW search_path") == '"$user", public'


async def test_transaction_left_open_is_still_rolled_back_on_release(app, backend):
    if backend != "postgres":
        pytest.skip("asyncpg's pool only exists on PostgreSQL")
    client = connections.get("default")
    async with client.acquire_connection() as connection:
        await connection.execute("BEGIN")
        await connection.execute("CREATE TEMP TABLE leak_probe (x int)")
    # whichever pooled connection comes next, none is inside that transaction
    async with client.acquire_connection() as connection:
        assert not connection.is_in_transaction()


async def test_a_request_waiting_too_long_for_sqlites_one_connection_is_answered_503(client, backend):
    if backend != "sqlite":
        pytest.skip("SQLite's one connection, shared under a lock, is SQLite's")
    connection = connections.get("default")
    assert connection._lock._timeout == 2 * settings.DATABASE_TIMEOUT  # database.bounded()
    connection._lock._timeout = 0.2  # this test's patience, not the suite's 4 s
    try:
        async with connection._lock:  # what a transaction holds while it runs...
            started = time.monotonic()
            # ...so a login's lookup waits for it, then gives up: 503, not a queue that only grows
            r = await client.post("/user/login", json={"username": "nobody", "password": "whatever-1"})
            assert 0.2 <= time.monotonic() - started < 2
        assert_problem(r, 503, "service_unavailable")
        assert int(r.headers["retry-after"]) > 0
        # the connection is free again: the next request is served
        r = await client.post("/user/login", json={"username": "nobody", "password": "whatever-1"})
        assert_problem(r, 401, "invalid_credentials")
    finally:
        connection._lock._timeout = 2 * settings.DATABASE_TIMEOUT


async def test_sqlite_transactions_begin_commit_and_roll_back(app, backend):
    if backend != "sqlite":
        pytest.skip("the SQLite client's own transaction")
    await connections.get("default").execute_script("CREATE TEMP TABLE probe (x INTEGER)")
    with pytest.raises(RuntimeError):
        async with in_transaction() as connection:
            await connection.execute_query("INSERT INTO probe VALUES (1)")
            raise RuntimeError("undo")
    async with in_transaction() as connection:
        await connection.execute_query("INSERT INTO probe VALUES (2)")
    _, rows = await connections.get("default").execute_query("SELECT x FROM probe")
    assert [row["x"] for row in rows] == [2]
    assert not connections.get("default")._connection.in_transaction


async def test_a_sqlite_pipeline_runs_in_order_and_fails_with_its_transaction(app, backend):
    if backend != "sqlite":
        pytest.skip("the SQLite transaction's pipeline")
    await connections.get("default").execute_script("CREATE TEMP TABLE piped (x INTEGER UNIQUE)")
    async with in_transaction() as connection:
        inserted, counted = await connection.pipeline(
            ("INSERT INTO piped VALUES (?) RETURNING x", [1]), ("SELECT count(*) AS n FROM piped", [])
        )
    assert inserted == [{"x": 1}] and counted == [{"n": 1}]  # the second saw the first's effect
    with pytest.raises(IntegrityError):
        async with in_transaction() as connection:
            await connection.pipeline(
                ("INSERT INTO piped VALUES (?)", [2]), ("INSERT INTO piped VALUES (?)", [1])
            )
    _, rows = await connections.get("default").execute_query("SELECT x FROM piped")
    assert [row["x"] for row in rows] == [1]  # 2 went in, then rolled back with its transaction


async def test_a_sqlite_transaction_whose_begin_fails_gives_the_connection_back(client, backend):
    if backend != "sqlite":
        pytest.skip("SQLite's one connection, shared under a lock, is SQLite's")
    connection = connections.get("default")

    async def transaction() -> None:
        async with in_transaction():
            pass

    # cancelled while its BEGIN is with SQLite's thread (as at shutdown, or by a timeout): Tortoise
    # kept the lock, and every later request waited for it and was answered 503
    started = asyncio.create_task(transaction())
    await asyncio.sleep(0)  # it holds the lock and awaits its BEGIN
    assert connection._lock.locked()
    started.cancel()
    with pytest.raises(asyncio.CancelledError):
        await started
    assert not connection._lock.locked()
    r = await client.post("/user/login", json={"username": "nobody", "password": "whatever-1"})
    assert_problem(r, 401, "invalid_credentials")
    # the BEGIN it sent was undone: the connection is in no transaction (a later write outside a
    # transaction is committed at once, not held in a transaction nobody ends)
    await connection.execute_query("SELECT 1")
    assert not connection._connection.in_transaction

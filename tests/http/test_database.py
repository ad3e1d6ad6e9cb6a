"""The PostgreSQL pool skips asyncpg's per-release reset query, and nothing relies on it."""

import pytest
from tortoise import connections

from apps.core.database import PooledConnection


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


async def test_sqlite_reader_is_read_only_and_sees_committed_writes(app, backend, client):
    if backend != "sqlite":
        pytest.skip("the reader exists for SQLite only")
    import sqlite3

    from apps.core import database
    from apps.user.models import User
    from tests.helpers import bearer, register

    reg = await register(client)
    assert (await client.get("/user/me", headers=bearer(reg["access_token"]))).json()["is_staff"] is False
    await User.filter(id=reg["user"]["id"]).update(is_staff=True)  # through Tortoise's own connection
    assert (await client.get("/user/me", headers=bearer(reg["access_token"]))).json()["is_staff"] is True
    reader = database.sqlite_reader(connections.get("default").filename)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await reader.fetch_one("UPDATE user_user SET is_staff = 0", [])
    # a refused write must not leave the reader inside an old snapshot
    await User.filter(id=reg["user"]["id"]).update(is_staff=False)
    assert (await client.get("/user/me", headers=bearer(reg["access_token"]))).json()["is_staff"] is False
    await User.filter(id=reg["user"]["id"]).update(is_staff=True)
    assert (await client.get("/user/me", headers=bearer(reg["access_token"]))).json()["is_staff"] is True

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

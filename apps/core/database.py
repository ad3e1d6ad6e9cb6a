"""Database connection details that settings.tortoise_config() and the app plug into Tortoise."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolAcquireContext
from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import TransactionContext, TransactionContextPooled
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
    translate_exceptions,
)
from tortoise.connection import get_connections
from tortoise.exceptions import TransactionManagementError

ASYNCPG_ENGINE = "tortoise.backends.asyncpg"


def create_sqlite_file(config: dict) -> None:
    """Create a new SQLite database file readable by its owner only (0600) before SQLite does (0644).

    SQLite gives its -wal and -shm files the database file's permissions, so they follow. An existing
    file is left as it is.
    """
    for connection in config["connections"].values():
        if isinstance(connection, dict) and _is_sqlite(connection):
            path = connection["credentials"]["file_path"]
            if path != ":memory:":
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
                except FileExistsError:
                    pass


class PooledConnection(asyncpg.Connection):
    """An asyncpg connection that skips the session-reset query when it goes back to the pool.

    asyncpg's pool sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every
    release: a second round trip for every one-query request (it was 15 % of a /user/me worker's
    time). This service never changes session state: no SET, LISTEN, advisory locks or cursors. An
    open transaction is still rolled back by the pool, whatever this returns.
    """

    def get_reset_query(self) -> str:
        return ""


class BoundedPool:
    """asyncpg's pool, whose acquire() gives up after `acquire_timeout`; Tortoise never passes one, so
    while every pooled connection is held by a request stuck on a database that does not answer, the
    next request would queue for ever. The timeout also bounds the release of the connection (asyncpg
    applies the acquire's). Everything else is the pool's own."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float | None) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        return self._pool.acquire(timeout=self._acquire_timeout if timeout is None else timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


# Tortoise 1.1's transaction contexts take their connection (PostgreSQL) or the one connection's lock
# (SQLite) and point the task at the transaction, then send BEGIN; when BEGIN fails (a statement
# timeout on a database that froze, a cancellation) they give neither back. A pooled connection was
# then in use for ever (the pool one smaller, and its close at shutdown waiting 10 s for it); SQLite's
# lock was held for ever (every later request 503); and the task went on using the dead transaction.
# These two give everything back before the error goes on.


class _PooledTransactionContext(TransactionContextPooled):
    async def __aenter__(self) -> TransactionWrapper:
        try:
            return await super().__aenter__()
        except BaseException:
            if getattr(self, "token", None) is not None:
                get_connections().reset(self.token)
            connection, self.client._connection = self.client._connection, None
            if connection is not None:
                # Acquired, and in no known state (BEGIN sent or not, its cancellation perhaps in
                # flight): closed, which frees its place in the pool at once, rather than reset,
                # which on a frozen database would wait another acquire timeout for an answer.
                connection.terminate()
                with contextlib.suppress(Exception):  # the error to report is the one above
                    await self.client._parent._pool.release(connection)
            raise


class _SqliteTransactionContext(SqliteTransactionContext):
    async def __aenter__(self) -> SqliteTransactionWrapper:
        await self._trxlock.acquire()
        token = None
        try:
            await self.ensure_connection()
            token = self.token = get_connections().set(self.connection_name, self.connection)
            await self.connection.begin()
        except BaseException:
            if token is not None:
                get_connections().reset(token)
            try:
                # A cancelled BEGIN is still in SQLite's queue and runs: undone by a ROLLBACK queued
                # after it (nothing, if no transaction began), or the next statements would run in a
                # transaction nobody ends.
                if self.connection._connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self.connection._connection.rollback())
            finally:
                self._trxlock.release()
            raise
        return self.connection


class BoundedAsyncpgClient(AsyncpgDBClient):
    """Tortoise's asyncpg client with a pool whose acquire() is bounded (`acquire_timeout`, seconds),
    and transactions that give their connection back when BEGIN fails."""

    def __init__(self, *args, acquire_timeout: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout

    async def create_pool(self, **kwargs) -> BoundedPool:
        return BoundedPool(await super().create_pool(**kwargs), self.acquire_timeout)

    def _in_transaction(self) -> TransactionContext:
        return _PooledTransactionContext(TransactionWrapper(self), self._pool_init_lock)


class _BoundedLock(asyncio.Lock):
    """An asyncio.Lock whose acquire() gives up (TimeoutError) after `timeout` seconds."""

    def __init__(self, timeout: float | None) -> None:
        super().__init__()
        self._timeout = timeout

    async def acquire(self) -> bool:
        async with asyncio.timeout(self._timeout):
            return await super().acquire()


class _SqliteTransaction(SqliteTransactionWrapper):
    async def begin(self) -> None:
        # Tortoise commits before BEGIN, in case the connection is inside a transaction: a hop to
        # SQLite's thread for nothing, since holding the client's lock it never is (unless a COMMIT
        # failed). Each hop costs an event-loop turn or two, with the lock held all along.
        try:
            if self._connection.in_transaction:
                await self._connection.commit()
            await self._connection.execute("BEGIN")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc

    @translate_exceptions
    async def pipeline(self, *statements: tuple[str, Sequence[Any]]) -> list[list[dict[str, Any]]]:
        """The rows of each statement, run in order and handed to SQLite's thread all at once: one
        turn of the event loop for them all rather than one each, while the transaction holds the
        connection every request shares. Every statement runs whatever an earlier one did (matched
        nothing, or failed: then the first error is raised once all have run, and the transaction
        rolls back), so a statement must not depend on an earlier one's outcome, only on its effect."""
        async with self.acquire_connection() as connection:
            # gather starts the calls in order, and the thread runs what it is handed first come
            # first served
            results = await asyncio.gather(
                *(connection.execute_fetchall(sql, values) for sql, values in statements),
                return_exceptions=True,
            )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [[dict(row) for row in rows] for rows in results]


class BoundedSqliteClient(SqliteClient):
    """Tortoise's SQLite client, whose one connection is shared by every request under one lock: a
    request waits for it at most `lock_timeout` seconds, then is answered 503 (as a request that
    cannot get a pooled PostgreSQL connection is) rather than lining up behind a backlog that only
    grows. A transaction begins in one hop to SQLite's thread rather than two, and gives the lock
    back when BEGIN fails."""

    def __init__(self, file_path: str, *, lock_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(file_path, **kwargs)  # (every other keyword becomes a PRAGMA)
        self._lock = _BoundedLock(lock_timeout)

    def _in_transaction(self) -> TransactionContext:
        return _SqliteTransactionContext(_SqliteTransaction(self), self._lock)


# Tortoise's engine protocol: an engine is a module that names its client class. bounded() points
# PostgreSQL and SQLite connections at this module.
def get_client_class(db_info: dict) -> type:
    return BoundedSqliteClient if _is_sqlite(db_info) else BoundedAsyncpgClient


def _is_sqlite(connection: dict) -> bool:
    # Tortoise's own engine name, or this module's once bounded() took the connection over
    return "file_path" in connection.get("credentials", {})


def own_clients(config: dict) -> dict:
    """`config` with its PostgreSQL and SQLite connections on this module's clients, unbounded: what
    manage.py runs with (a migration or a bulk deletion may rightly run for minutes), with the
    transactions that give back what a failed BEGIN took."""
    connections = {}
    for name, connection in config["connections"].items():
        if isinstance(connection, dict):
            if connection.get("engine") == ASYNCPG_ENGINE or _is_sqlite(connection):
                connection = {**connection, "engine": __name__}
        connections[name] = connection
    return {**config, "connections": connections}


def bounded(config: dict, timeout: float) -> dict:
    """`config` for a process that answers requests: with PostgreSQL, no wait on the database lasts
    longer than `timeout` seconds (connecting, one statement; twice that for a pooled connection; with
    SQLite, twice that for its one connection, BoundedSqliteClient), so a
    database that is down or does not answer turns into a 503 within the contract's 2 s rather than
    a request that hangs (a request can line up three such waits: a pooled connection, a statement,
    the cancellation of that statement). manage.py runs on own_clients(), unbounded.

    The pool keeps no connection open when idle (minsize 0, unless DATABASE_URL says otherwise), so
    creating it never waits on the database, and no background task reconnects and logs a traceback
    per attempt while the database is away: each request connects when it needs to, within `timeout`.
    Values DATABASE_URL sets itself (`?timeout=`, `?command_timeout=`, `?min_size=`) win.
    """
    config = own_clients(config)
    connections = {}
    for name, connection in config["connections"].items():
        if isinstance(connection, dict) and connection.get("engine") == __name__:
            if _is_sqlite(connection):
                # SQLite's one connection is the pool: the same bound on the wait for it
                credentials = {**connection["credentials"], "lock_timeout": 2 * timeout}
            else:
                credentials = {"minsize": 0, "timeout": timeout, "command_timeout": timeout}
                credentials |= connection["credentials"]
                # Twice as long to wait for a pooled connection: under a burst the pool is merely
                # busy (the benchmark's 64 connections saw 503s at 1x); past that the request is shed
                # with a 503 as an overloaded service should. Worst case 2x + 1x (a statement) + 1x
                # (its cancellation) = 2 s at the default 0.5 s.
                credentials["acquire_timeout"] = 2 * timeout
            connection = {**connection, "credentials": credentials}
        connections[name] = connection
    return {**config, "connections": connections}

"""Database connection details that settings.tortoise_config() plugs into Tortoise."""

from __future__ import annotations

import os
import sqlite3

import aiosqlite
import asyncpg

from apps.core import lifecycle


def create_sqlite_file(config: dict) -> None:
    """Create a new SQLite database file readable by its owner only (0600) before SQLite does (0644).

    SQLite gives its -wal and -shm files the database file's permissions, so they follow. An existing
    file is left as it is.
    """
    for connection in config["connections"].values():
        if isinstance(connection, dict) and connection.get("engine") == "tortoise.backends.sqlite":
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


class SqliteReader:
    """A second, read-only SQLite connection for hot single-statement reads (GET /user/me).

    Tortoise runs every SQLite statement through one connection behind one lock, so each query waits
    for the previous one's full round trip through aiosqlite's thread: /user/me was bound by that
    latency, not by CPU (py-spy showed the event loop mostly idle). Queued on their own connection,
    reads run back to back. In WAL mode a reader sees only committed data and never blocks the
    writer, so the answers are as fresh as through Tortoise's connection.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._connection: aiosqlite.Connection | None = None

    async def fetch_one(self, sql: str, parameters: list) -> dict | None:
        if self._connection is None:
            # autocommit: no implicit BEGIN, so no read ever holds an old snapshot open
            connection = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
            connection.row_factory = sqlite3.Row
            if self._connection is None:
                self._connection = connection
            else:  # another request opened one meanwhile
                await connection.close()
        rows = await self._connection.execute_fetchall(sql, parameters)
        return dict(rows[0]) if rows else None

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()


_readers: dict[str, SqliteReader] = {}


def sqlite_reader(path: str) -> SqliteReader:
    """The reader for one database file, opened on first use."""
    reader = _readers.get(path)
    if reader is None:
        reader = _readers[path] = SqliteReader(path)
    return reader


async def close_readers() -> None:
    """Close every reader (app shutdown)."""
    while _readers:
        _, reader = _readers.popitem()
        await reader.close()


lifecycle.register("sqlite readers", stop=close_readers)

"""Revocation: how every worker learns that sessions ended or an account changed, without a query per
request.

One protocol, `RevocationSignal`: `publish()` is called by sessions.py alone, after the commit that
ended sessions or changed an account; `version()` is read by authentication.py at the start of every
authenticated request, and a worker drops its cached sessions when the version moved. The first
implementation, `LocalEpoch`, is a counter in a small memory-mapped file shared by the processes of
one host; PostgreSQL NOTIFY and Redis pub/sub (several hosts) come next behind the same protocol.

The counter file is named after the database's identity as the database itself reports it (SQLite:
the file's device and inode; PostgreSQL: the cluster's system identifier and the database's oid), so
`localhost` and `127.0.0.1` in DATABASE_URL are one counter, and two databases are never one.
Whoever can write the file can pin it and keep logged-out tokens alive until the cache's TTL, so the
service creates it 0600 and refuses a file it does not own or that others can write.

A database that does not answer at start-up does not stop the process (it answers /health, and 503
elsewhere, until the database is back; a crash loop would not bring it sooner): the counter is then
found as soon as the database answers, and until then no cache is trusted (`UnknownDatabase`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import itertools
import logging
import mmap
import os
import stat
import struct
import tempfile
from collections.abc import Iterable
from typing import Protocol

from tortoise import connections

import settings
from apps.core import lifecycle, metrics
from apps.core.errors import is_database_fault
from apps.core.exceptions import ImproperlyConfigured

logger = logging.getLogger("apps.user.revocation")

_COUNTER = struct.Struct("<Q")


class RevocationSignal(Protocol):
    # Names the mechanism in the metric authservice_revocation_listener_in_sync{signal=...}: 1 while
    # this process hears every revocation, 0 while it does not (a listener that lost its connection
    # sets 0 until it has reconnected and resynchronised; apps/core/metrics.set_revocation_in_sync).
    name: str

    def version(self) -> int:
        """A number that moves whenever a session ended or an account changed, anywhere it reaches."""

    async def publish(self, *, sessions: Iterable[str] = (), users: Iterable[int] = ()) -> None:
        """Tell every worker that these sessions ended / these accounts changed (after the commit)."""

    def close(self) -> None: ...


class LocalEpoch:
    """A counter in a memory-mapped file that every worker on this host shares; 8 bytes per read.
    Nothing to lose a connection to: always in sync."""

    name = "local_epoch"

    def __init__(self, path: str) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise ImproperlyConfigured(f"cannot open the revocation counter {path}: {exc.strerror}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ImproperlyConfigured(f"the revocation counter {path} is not a regular file")
            if info.st_uid != os.geteuid():
                raise ImproperlyConfigured(
                    f"the revocation counter {path} belongs to another user (uid {info.st_uid}); "
                    "whoever owns it can keep logged-out tokens alive. Remove it or set REVOCATION_EPOCH_FILE"
                )
            if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise ImproperlyConfigured(
                    f"the revocation counter {path} is writable by others "
                    f"(mode {stat.S_IMODE(info.st_mode):o}); whoever can write it can keep logged-out "
                    "tokens alive. chmod 600 it"
                )
            if info.st_size < _COUNTER.size:
                os.ftruncate(fd, _COUNTER.size)
            self._map = mmap.mmap(fd, _COUNTER.size)
            # flock on a descriptor of our own, kept open: the path could be swapped after this check
            self._lock_fd = os.dup(fd)
        finally:
            os.close(fd)
        self.path = path

    def version(self) -> int:
        return _COUNTER.unpack_from(self._map)[0]

    def bump(self) -> None:
        # An exclusive lock across processes: two concurrent bumps must both move the counter.
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            _COUNTER.pack_into(self._map, 0, self.version() + 1)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    async def publish(self, *, sessions: Iterable[str] = (), users: Iterable[int] = ()) -> None:
        # One host, one counter: every cached session is dropped, whichever ended.
        self.bump()

    def close(self) -> None:
        self._map.close()
        os.close(self._lock_fd)


class ProcessEpoch:
    """An in-memory database (`sqlite://:memory:`) lives in one process; so does its counter."""

    name = "process"

    def __init__(self) -> None:
        self._version = 0

    def version(self) -> int:
        return self._version

    async def publish(self, *, sessions: Iterable[str] = (), users: Iterable[int] = ()) -> None:
        self._version += 1

    def close(self) -> None:
        pass


class UnknownDatabase:
    """The signal until the database has said who it is (it did not answer at start-up), so which
    counter this host's workers share is not known yet. Meanwhile no cache may be trusted: the version
    moves on every read, so every authenticated request looks its session up (and is answered 503
    while the database is away)."""

    def __init__(self) -> None:
        self._reads = itertools.count()

    def version(self) -> int:
        return next(self._reads)

    async def publish(self, *, sessions: Iterable[str] = (), users: Iterable[int] = ()) -> None:
        # A commit has just ended sessions, so the database answers: find the shared counter now,
        # or the other workers of this host would go on trusting their caches.
        await (await resolve()).publish(sessions=sessions, users=users)

    def close(self) -> None:
        pass


async def database_identity() -> str | None:
    """Who the database is, by its own account; None for an in-memory SQLite database."""
    connection = connections.get("default")
    if connection.capabilities.dialect == "sqlite":
        if connection.filename == ":memory:":
            return None
        info = os.stat(connection.filename)  # noqa: ASYNC240 (one stat at start-up; follows links)
        return f"sqlite:{info.st_dev}:{info.st_ino}"
    _, rows = await connection.execute_query(
        "SELECT (SELECT system_identifier FROM pg_control_system())::text AS cluster, "
        "(SELECT oid FROM pg_database WHERE datname = current_database())::text AS database"
    )
    return f"postgres:{rows[0]['cluster']}:{rows[0]['database']}"


def epoch_path(identity: str) -> str:
    """REVOCATION_EPOCH_FILE, or one file per database (and per system user): in the user's private
    runtime directory when there is one (systemd's XDG_RUNTIME_DIR, 0700), else in shared memory,
    where another local user could squat the name and stop the service from starting (never from
    revoking: a file it does not own is refused)."""
    if settings.REVOCATION_EPOCH_FILE:
        return settings.REVOCATION_EPOCH_FILE
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isdir(runtime):
        directory = runtime
    else:
        directory = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()  # noqa: S108
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return os.path.join(directory, f"authservice-{os.geteuid()}-{digest}.epoch")


_signal: RevocationSignal | None = None
_resolving: asyncio.Task | None = None
RESOLVE_RETRY_INTERVAL = 1.0  # seconds between two attempts while the database is away at start-up


def signal() -> RevocationSignal:
    """The process's signal; started with the app (lifecycle), so it exists in every request."""
    if _signal is None:
        raise RuntimeError("revocation has not started: run inside apps.core.lifecycle.running()")
    return _signal


async def resolve() -> RevocationSignal:
    """The signal of the database, asking the database who it is if that is not known yet.

    Raises:
        ImproperlyConfigured: the counter file cannot be used.
        Exception: whatever the database raises when it does not answer (errors.is_database_fault).
    """
    global _signal
    if _signal is not None and not isinstance(_signal, UnknownDatabase):
        return _signal
    identity = await database_identity()
    if _signal is None or isinstance(_signal, UnknownDatabase):  # nobody resolved it meanwhile
        _signal = (
            ProcessEpoch()
            if identity is None and not settings.REVOCATION_EPOCH_FILE
            else LocalEpoch(epoch_path(identity or "memory"))
        )
        metrics.set_revocation_in_sync(_signal.name, True)
    return _signal


async def _resolve_when_the_database_answers() -> None:
    while True:
        await asyncio.sleep(RESOLVE_RETRY_INTERVAL)
        try:
            await resolve()
        except Exception as exc:
            if is_database_fault(exc):
                continue
            # the counter file is unusable: refusing to start is no longer possible; stay untrusting
            logger.critical("revocation counter unusable (%s); every request checks its session", exc)
            return
        logger.info("revocation counter found: session caches are trusted again")
        return


async def start() -> None:
    global _signal, _resolving
    if settings.REVOCATION_EPOCH_FILE:  # named by the operator: no need to ask the database who it is
        _signal = LocalEpoch(settings.REVOCATION_EPOCH_FILE)
        metrics.set_revocation_in_sync(_signal.name, True)
        return
    try:
        await resolve()
    except Exception as exc:
        if not is_database_fault(exc):
            raise
        logger.warning(
            "the database did not answer at start-up (%s): no session cache is trusted until it does",
            type(exc).__name__,
        )
        _signal = UnknownDatabase()
        metrics.set_revocation_in_sync("local_epoch", False)  # no cache is trusted meanwhile
        _resolving = asyncio.get_running_loop().create_task(
            _resolve_when_the_database_answers(), name="revocation counter"
        )


async def stop() -> None:
    global _signal, _resolving
    if _resolving is not None:
        _resolving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _resolving
        _resolving = None
    if _signal is not None:
        _signal.close()
        _signal = None


lifecycle.register("revocation", start=start, stop=stop)

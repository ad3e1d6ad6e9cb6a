"""Revocation: how every worker of every host learns which sessions ended and which accounts changed,
so that it can keep a cache of live sessions and still refuse a logged-out token on the next request.

sessions.ending() is the one publisher: inside the transaction that ends sessions or changes an
account it calls `Revocation.announce()`, after the commit `Revocation.publish()`. The one listener
per process is the authenticator (authentication.py), which removes exactly the sessions named (all
of an account's for an account) from its cache: a busy logout rate costs each worker a few dict
deletions, never its whole cache. Two carriers work together:

- `LocalEpoch`, on every host: a counter and a ring of the last revocations in a small memory-mapped
  file shared by the processes of the host. A worker reads 8 bytes per authenticated request, and the
  new entries when the counter moved: a logout is refused by every worker of the host on the very
  next request, with no network in between.
- the cross-host listener, chosen by REVOCATION_SIGNAL: `PostgresNotify` (LISTEN/NOTIFY on a
  connection of its own; the NOTIFY is part of the transaction, so PostgreSQL delivers it exactly when
  the commit lands and never for a rollback) or `RedisPubSub` (published after the commit). None on
  SQLite, which has one host.

A listener can lose its connection and messages with it. While it is not connected and caught up,
`Revocation.trusted()` is False and the authenticator looks every session up (no cache); on
reconnecting it listens first, then drops every cached session (what it missed is unknown), and only
then trusts its cache again. The metric authservice_revocation_listener_in_sync{signal} says which.

The counter file is named after the database's identity as the database itself reports it (SQLite:
the file's device and inode; PostgreSQL: the cluster's system identifier and the database's oid), so
`localhost` and `127.0.0.1` in DATABASE_URL are one counter, and two databases are never one.
Whoever can write the file can hide revocations from this host's caches until their TTL, so the
service creates it 0600 and refuses a file it does not own or that others can write. A database
that does not answer at start-up does not stop the process: the file is found as soon as the
database answers, and until then no cache is trusted (`UnknownDatabase`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fcntl
import hashlib
import inspect
import json
import logging
import mmap
import os
import stat
import struct
import tempfile
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

import asyncpg
from tortoise import connections

import settings
from apps.core import lifecycle, metrics
from apps.core.errors import is_database_fault
from apps.core.exceptions import ImproperlyConfigured

logger = logging.getLogger("apps.user.revocation")

CHANNEL = "authservice_revocation"  # the NOTIFY channel and the Redis channel
HEARTBEAT_SECONDS = 2.0  # how often a quiet listener checks that its connection still answers
RECONNECT_MAX_SECONDS = 5.0  # the longest wait between two attempts to reconnect
NOTIFY_PAYLOAD_MAX = 7900  # PostgreSQL refuses a payload of 8000 bytes or more
PENDING_MAX = 100  # Redis messages kept while Redis does not answer, before they collapse into one


class Listener(Protocol):
    """What hears revocations in a process: the authenticator's cache."""

    def forget(self, sessions: Iterable[str], users: Iterable[int], profiles: Iterable[int] = ()) -> None:
        """These sessions ended / these accounts changed what request.user shows / these accounts'
        user objects changed (last login, pending email...) with their sessions and rights intact."""

    def forget_all(self) -> None:
        """Anything may have changed (messages were missed, or nothing more precise is known)."""


class _Nobody:
    def forget(self, sessions: Iterable[str], users: Iterable[int], profiles: Iterable[int] = ()) -> None:
        pass

    def forget_all(self) -> None:
        pass


def encode(sessions: Iterable[str], users: Iterable[int], profiles: Iterable[int] = ()) -> str:
    """One revocation as a message; "everything" when it names nothing (or too much to carry)."""
    sessions, users, profiles = sorted(sessions), sorted(users), sorted(profiles)
    if not sessions and not users and not profiles:
        return '{"all":true}'
    names = {"s": sessions, "u": users, **({"p": profiles} if profiles else {})}
    message = json.dumps(names, separators=(",", ":"))
    return message if len(message) <= NOTIFY_PAYLOAD_MAX else '{"all":true}'


def deliver(message: str | bytes, listener: Listener) -> None:
    """Hand a message made by encode() to the listener; anything unreadable counts as "everything"."""
    try:
        data = json.loads(message)
        if data.get("all"):
            raise ValueError
        sessions = [str(uuid.UUID(s)) for s in data.get("s", [])]
        users = [int(u) for u in data.get("u", [])]
        profiles = [int(p) for p in data.get("p", [])]
    except (ValueError, TypeError, AttributeError):
        listener.forget_all()
        return
    listener.forget(sessions, users, profiles)


# --- on one host ----------------------------------------------------------------------------------

_COUNTER = struct.Struct("<Q")  # entries written so far
# One entry: its sequence number (written last, so a reader sees a half-written entry as such), what
# it names, and the name: a session's UUID, or an account id.
_ENTRY = struct.Struct("<QB7x16s")
_ALL, _SESSION, _USER, _PROFILE = 0, 1, 2, 3
RING_ENTRIES = 4096
_FILE_SIZE = _COUNTER.size + RING_ENTRIES * _ENTRY.size


class LocalEpoch:
    """The revocations of this host's processes, in a file they all map: a counter and a ring of the
    last RING_ENTRIES revocations. A reader further behind than the ring, or that finds an entry
    overwritten while it read it, forgets everything instead. Nothing to lose a connection to."""

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
            if info.st_size < _FILE_SIZE:  # new, or a counter of an earlier version: its ring reads as "all"
                os.ftruncate(fd, _FILE_SIZE)
            self._map = mmap.mmap(fd, _FILE_SIZE)
            # flock on a descriptor of our own, kept open: the path could be swapped after this check
            self._lock_fd = os.dup(fd)
        finally:
            os.close(fd)
        self.path = path
        self._seen = self.version()

    def version(self) -> int:
        """How many revocations were ever written to the file."""
        return _COUNTER.unpack_from(self._map)[0]

    def write(
        self, sessions: Iterable[str] = (), users: Iterable[int] = (), profiles: Iterable[int] = ()
    ) -> None:
        """Add a revocation for every process of the host; naming nothing means everything."""
        entries: list[tuple[int, bytes]] = []
        for session in sessions:
            try:
                entries.append((_SESSION, uuid.UUID(session).bytes))
            except ValueError:
                entries = []  # not a session id this service issues: say "everything" instead
                break
        else:
            entries += [(_USER, _COUNTER.pack(user).ljust(16, b"\0")) for user in users]
            entries += [(_PROFILE, _COUNTER.pack(user).ljust(16, b"\0")) for user in profiles]
        if not entries or len(entries) > RING_ENTRIES // 4:
            entries = [(_ALL, bytes(16))]
        # An exclusive lock across processes: two writers must not take the same sequence numbers.
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            written = self.version()
            for kind, name in entries:
                written += 1
                offset = _COUNTER.size + (written % RING_ENTRIES) * _ENTRY.size
                _COUNTER.pack_into(self._map, offset, 0)  # a reader now sees the slot as being written
                _ENTRY.pack_into(self._map, offset, 0, kind, name)
                _COUNTER.pack_into(self._map, offset, written)
            _COUNTER.pack_into(self._map, 0, written)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def catch_up(self, listener: Listener) -> bool:
        """Deliver what other processes wrote since the last call; always in sync (True)."""
        written = self.version()
        if written == self._seen:
            return True
        sessions: list[str] = []
        users: list[int] = []
        profiles: list[int] = []
        everything = not 0 < written - self._seen <= RING_ENTRIES
        sequence = self._seen
        while not everything and sequence < written:
            sequence += 1
            offset = _COUNTER.size + (sequence % RING_ENTRIES) * _ENTRY.size
            number, kind, name = _ENTRY.unpack_from(self._map, offset)
            if number != sequence or _COUNTER.unpack_from(self._map, offset)[0] != sequence:
                everything = True  # overwritten by a writer a whole ring ahead, or mid-write
            elif kind == _SESSION:
                sessions.append(str(uuid.UUID(bytes=name)))
            elif kind == _USER:
                users.append(_COUNTER.unpack_from(name)[0])
            elif kind == _PROFILE:
                profiles.append(_COUNTER.unpack_from(name)[0])
            else:
                everything = True
        self._seen = written
        if everything:
            listener.forget_all()
        else:
            listener.forget(sessions, users, profiles)
        return True

    def close(self) -> None:
        self._map.close()
        os.close(self._lock_fd)


class ProcessEpoch:
    """An in-memory database (`sqlite://:memory:`) lives in one process: nobody else to tell."""

    name = "process"

    def write(
        self, sessions: Iterable[str] = (), users: Iterable[int] = (), profiles: Iterable[int] = ()
    ) -> None:
        pass

    def catch_up(self, listener: Listener) -> bool:
        return True

    def close(self) -> None:
        pass


class UnknownDatabase:
    """The host-local carrier until the database has said who it is (it did not answer at start-up),
    so which file this host's workers share is not known yet. Meanwhile no cache is trusted."""

    name = "local_epoch"

    def write(
        self, sessions: Iterable[str] = (), users: Iterable[int] = (), profiles: Iterable[int] = ()
    ) -> None:
        pass  # Revocation.publish finds the file first: a commit has just shown the database answers

    def catch_up(self, listener: Listener) -> bool:
        return False

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


async def local_carrier() -> LocalEpoch | ProcessEpoch:
    """The host-local carrier of the database, asking the database who it is.

    Raises:
        ImproperlyConfigured: the counter file cannot be used.
        Exception: whatever the database raises when it does not answer (errors.is_database_fault).
    """
    if settings.REVOCATION_EPOCH_FILE:  # named by the operator: no need to ask the database who it is
        return LocalEpoch(settings.REVOCATION_EPOCH_FILE)
    identity = await database_identity()
    return ProcessEpoch() if identity is None else LocalEpoch(epoch_path(identity))


# --- across hosts ---------------------------------------------------------------------------------


class CrossHostListener(abc.ABC):
    """A connection of its own that hears every other host's revocations; reconnects by itself.

    `synced` is True only while connected, listening and caught up. Subclasses say how to connect,
    listen, check the connection and publish."""

    name = ""

    def __init__(self) -> None:
        self.synced = False
        self.listener: Listener = _Nobody()
        self._task: asyncio.Task | None = None
        self._first_sync = asyncio.Event()
        self._outage = False

    async def start(self, wait: float) -> None:
        """Start listening; wait up to `wait` seconds for the first sync (the process serves either way,
        looking sessions up until it is in sync)."""
        metrics.set_revocation_in_sync(self.name, False)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"revocation {self.name}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_sync.wait(), wait)

    async def stop(self) -> None:
        if self._task is not None:
            await lifecycle.cancel(self._task)
            self._task = None

    async def announce(self, connection: Any, message: str) -> None:
        """Inside the transaction that ends sessions (PostgreSQL: the NOTIFY commits with it)."""
        return  # a carrier that publishes after the commit has nothing to add to the transaction

    async def publish(self, message: str) -> None:
        """After the commit (Redis)."""
        return  # a carrier whose notice rode the commit has nothing left to send

    @abc.abstractmethod
    async def _session(self) -> None:
        """Connect, listen, call self._in_sync(), then serve until the connection fails (raise)."""

    def _in_sync(self) -> None:
        # Listening already: whatever was missed before is covered by forgetting everything now.
        self.listener.forget_all()
        self.synced = True
        self._first_sync.set()
        metrics.set_revocation_in_sync(self.name, True)
        if self._outage:
            logger.info("revocation listener (%s) is back: session caches are trusted again", self.name)
            self._outage = False

    async def _run(self) -> None:
        delay = 0.1
        self._outage = False
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._outage:  # one line per outage, not one per attempt
                    logger.warning(
                        "revocation listener (%s) is not connected (%s): sessions are looked up on "
                        "every request until it is back",
                        self.name,
                        type(exc).__name__,
                    )
                    self._outage = True
            finally:
                if self.synced:
                    self.synced = False
                    delay = 0.1  # it was connected: try again at once, then back off
                    metrics.set_revocation_in_sync(self.name, False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)


class PostgresNotify(CrossHostListener):
    """LISTEN on a connection of its own; NOTIFY inside the transaction that ends sessions."""

    name = "postgres"

    def _connect_arguments(self) -> dict[str, Any]:
        client = connections.get("default")
        accepted = inspect.signature(asyncpg.connect).parameters
        extra = {key: value for key, value in client.extra.items() if key in accepted}
        extra.pop("command_timeout", None)
        return {
            **extra,
            "host": client.host,
            "port": client.port,
            "user": client.user,
            "password": client.password,
            "database": client.database,
            "server_settings": {**client.server_settings, "application_name": "authservice revocation"},
            "timeout": settings.DATABASE_TIMEOUT,
        }

    async def _session(self) -> None:
        connection = await asyncpg.connect(**self._connect_arguments())
        try:
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _: lost.set())
            await asyncio.wait_for(
                connection.add_listener(CHANNEL, self._notified), settings.DATABASE_TIMEOUT
            )
            self._in_sync()
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), HEARTBEAT_SECONDS)
                if lost.is_set():
                    raise ConnectionError("the listening connection was closed")
                # A database that stopped answering (a partition, a frozen server) closes nothing.
                await asyncio.wait_for(connection.fetchval("SELECT 1"), settings.DATABASE_TIMEOUT)
        finally:
            connection.terminate()

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        deliver(payload, self.listener)

    async def announce(self, connection: Any, message: str) -> None:
        await connection.execute_query("SELECT pg_notify($1, $2)", [CHANNEL, message])


class RedisPubSub(CrossHostListener):
    """SUBSCRIBE on a connection of its own; PUBLISH after the commit. A message that cannot be
    published (Redis away) is kept and published once Redis answers again."""

    name = "redis"

    def __init__(self, url: str) -> None:
        # imported here: a worker without REDIS_URL is spared the client's ~4 MB (issue 12's RSS bound)
        import redis.asyncio as redis

        super().__init__()
        self._errors = (redis.RedisError, OSError, TimeoutError)
        self._redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=settings.DATABASE_TIMEOUT,
            socket_timeout=settings.DATABASE_TIMEOUT,
            client_name="authservice-revocation",  # what CLIENT LIST shows an operator
        )
        self._pending: list[str] = []

    async def _session(self) -> None:
        pubsub = self._redis.pubsub()
        try:
            await asyncio.wait_for(pubsub.subscribe(CHANNEL), settings.DATABASE_TIMEOUT)
            # Subscribed once Redis confirms: only then is every later PUBLISH sure to reach us.
            while True:
                message = await asyncio.wait_for(
                    pubsub.get_message(timeout=settings.DATABASE_TIMEOUT), 2 * settings.DATABASE_TIMEOUT
                )
                if message is None:
                    raise ConnectionError("Redis did not confirm the subscription")
                if message["type"] == "subscribe":
                    break
            self._in_sync()
            loop = asyncio.get_running_loop()
            heard = loop.time()
            while True:
                await self._publish_pending()
                message = await asyncio.wait_for(
                    pubsub.get_message(timeout=HEARTBEAT_SECONDS / 2), HEARTBEAT_SECONDS
                )
                if message is not None:
                    heard = loop.time()
                    if message["type"] == "message":
                        deliver(message["data"], self.listener)
                    continue
                if loop.time() - heard > HEARTBEAT_SECONDS:
                    raise ConnectionError("Redis stopped answering")
                await asyncio.wait_for(pubsub.ping(), settings.DATABASE_TIMEOUT)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), settings.DATABASE_TIMEOUT)

    async def publish(self, message: str) -> None:
        try:
            await self._redis.publish(CHANNEL, message)
        except self._errors as exc:
            # The commit stands; other hosts hear of it when Redis answers again (their own listeners
            # are likely cut off too, and trust no cache meanwhile).
            logger.warning(
                "revocation not published to Redis (%s): kept until it answers", type(exc).__name__
            )
            self._pending.append(message)
            if len(self._pending) > PENDING_MAX:
                self._pending = ['{"all":true}']

    async def _publish_pending(self) -> None:
        while self._pending:
            await self._redis.publish(CHANNEL, self._pending[0])
            self._pending.pop(0)

    async def stop(self) -> None:
        await super().stop()
        await self._redis.aclose()


# --- the process's signal -------------------------------------------------------------------------


class Revocation:
    """This process's end of revocation: the host-local carrier and the cross-host listener."""

    def __init__(self, local: LocalEpoch | ProcessEpoch | UnknownDatabase, remote: CrossHostListener | None):
        self.local = local
        self.remote = remote
        self.listener: Listener = _Nobody()

    @property
    def name(self) -> str:
        return self.remote.name if self.remote is not None else self.local.name

    def listen(self, listener: Listener) -> None:
        """Deliver every revocation to `listener` (the authenticator) from now on."""
        self.listener = listener
        if self.remote is not None:
            self.remote.listener = listener

    def trusted(self) -> bool:
        """Hand over what other processes of the host published; True when every revocation published
        so far anywhere has reached the listener, so that its cache may be trusted."""
        in_sync = self.local.catch_up(self.listener)
        return in_sync and (self.remote is None or self.remote.synced)

    async def announce(
        self,
        connection: Any,
        *,
        sessions: Iterable[str] = (),
        users: Iterable[int] = (),
        profiles: Iterable[int] = (),
    ) -> None:
        """Called inside the transaction that ends sessions or changes accounts, before its commit."""
        if self.remote is not None:
            await self.remote.announce(connection, encode(sessions, users, profiles))

    async def publish(
        self, *, sessions: Iterable[str] = (), users: Iterable[int] = (), profiles: Iterable[int] = ()
    ) -> None:
        """Called once that transaction has committed; naming nothing means everything changed."""
        sessions, users, profiles = list(sessions), list(users), list(profiles)
        if sessions or users or profiles:
            self.listener.forget(sessions, users, profiles)  # this process first: its very next request
        else:
            self.listener.forget_all()
        if isinstance(self.local, UnknownDatabase):
            try:  # the commit just went through, so the database is likely to say who it is now
                await _find_local_carrier()
            except Exception as exc:  # the commit stands; this process trusts no cache meanwhile
                if not is_database_fault(exc):
                    raise
                logger.warning(
                    "revocation not written for this host's workers: the database did not say who it is"
                )
        self.local.write(sessions, users, profiles)
        if self.remote is not None:
            await self.remote.publish(encode(sessions, users, profiles))

    async def close(self) -> None:
        if self.remote is not None:
            await self.remote.stop()
        self.local.close()


_signal: Revocation | None = None
_resolving: asyncio.Task | None = None
RESOLVE_RETRY_INTERVAL = 1.0  # seconds between two attempts while the database is away at start-up


def signal() -> Revocation:
    """The process's signal; started with the app (lifecycle), so it exists in every request."""
    if _signal is None:
        raise RuntimeError("revocation has not started: run inside apps.core.lifecycle.running()")
    return _signal


async def _find_local_carrier() -> None:
    """Replace UnknownDatabase by the host's file, once the database answers who it is."""
    current = signal()
    if not isinstance(current.local, UnknownDatabase):
        return
    local = await local_carrier()
    if isinstance(current.local, UnknownDatabase):  # nobody found it meanwhile
        current.local = local
        if current.remote is None:
            metrics.set_revocation_in_sync(local.name, True)
    else:
        local.close()


async def _find_local_carrier_when_the_database_answers() -> None:
    while True:
        await asyncio.sleep(RESOLVE_RETRY_INTERVAL)
        try:
            await _find_local_carrier()
        except Exception as exc:
            if is_database_fault(exc):
                continue
            # the counter file is unusable: refusing to start is no longer possible; stay untrusting
            logger.critical("revocation counter unusable (%s); every request checks its session", exc)
            return
        logger.info("revocation counter found: session caches are trusted again")
        return


def _cross_host_listener() -> CrossHostListener | None:
    chosen = settings.REVOCATION_SIGNAL
    if chosen == "auto":  # by the database the app was started with (a test may swap it)
        chosen = "local" if connections.get("default").capabilities.dialect == "sqlite" else "postgres"
    if chosen == "postgres":
        return PostgresNotify()
    if settings.REVOCATION_SIGNAL == "redis":
        return RedisPubSub(settings.REDIS_URL)
    return None


async def start() -> None:
    global _signal, _resolving
    remote = _cross_host_listener()
    try:
        local: LocalEpoch | ProcessEpoch | UnknownDatabase = await local_carrier()
    except Exception as exc:
        if not is_database_fault(exc):
            raise
        logger.warning(
            "the database did not answer at start-up (%s): no session cache is trusted until it does",
            type(exc).__name__,
        )
        local = UnknownDatabase()
        _resolving = asyncio.get_running_loop().create_task(
            _find_local_carrier_when_the_database_answers(), name="revocation counter"
        )
    _signal = Revocation(local, remote)
    if remote is None:
        metrics.set_revocation_in_sync(local.name, not isinstance(local, UnknownDatabase))
    else:
        await remote.start(wait=2 * settings.DATABASE_TIMEOUT)


async def stop() -> None:
    global _signal, _resolving
    if _resolving is not None:
        await lifecycle.cancel(_resolving)
        _resolving = None
    if _signal is not None:
        await _signal.close()
        _signal = None


lifecycle.register("revocation", start=start, stop=stop)

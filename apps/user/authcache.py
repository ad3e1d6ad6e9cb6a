"""What makes an authenticated request cheap without making revocation slow.

Each worker process remembers verified access tokens (so PyJWT runs once per token, not per
request) and live sessions (so the session check needs no query per request). Every write that
ends a session or changes what `request.user` shows (logout, password change, deactivation,
deletion, profile change, a replayed refresh token) calls `invalidate()` after its commit: that
bumps a counter shared by every worker on the host (8 bytes in a memory-mapped file) and each
worker, reading the counter at the start of every authenticated request, drops its session cache
when it moved. So an ended session's next request is refused by every worker, at the cost of one
8-byte read per request; a cache miss costs one indexed query.

Scope: the counter is shared by the processes of one host (the documented deployment: uvicorn
workers behind nginx). Workers spread over several hosts must set SESSION_CACHE=false (one query
per request) until revocation is broadcast between hosts.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import time
from functools import cache

from starlette.authentication import BaseUser

import settings
from apps.user import tokens

_COUNTER = struct.Struct("<Q")
TOKEN_CACHE_SIZE = 10_000
SESSION_CACHE_SIZE = 10_000


class RevocationEpoch:
    """A counter in a small memory-mapped file that every worker on this host shares."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _COUNTER.size:
                os.ftruncate(fd, _COUNTER.size)
            self._map = mmap.mmap(fd, _COUNTER.size)
        finally:
            os.close(fd)
        self._lock_path = path

    def read(self) -> int:
        return _COUNTER.unpack_from(self._map)[0]

    def bump(self) -> None:
        # An exclusive lock across processes: two concurrent bumps must both move the counter.
        with open(self._lock_path, "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _COUNTER.pack_into(self._map, 0, self.read() + 1)
            self._map.flush()


def epoch_path() -> str:
    """The counter's file: REVOCATION_EPOCH_FILE, or one per database in shared memory."""
    if settings.REVOCATION_EPOCH_FILE:
        return settings.REVOCATION_EPOCH_FILE
    directory = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()  # noqa: S108
    database = hashlib.sha256(settings.DATABASE_URL.encode()).hexdigest()[:16]
    return os.path.join(directory, f"authservice-{database}.epoch")


class AuthenticatedUser(BaseUser):
    """`request.user` for a valid access token: the account as it was when its session was checked
    (in this worker, since the last change anywhere), and the session the token belongs to."""

    __slots__ = (
        "id",
        "username",
        "email",
        "is_staff",
        "is_superuser",
        "session_id",
        "session_expires_at",
        "scopes",
    )

    def __init__(
        self,
        *,
        id: int,
        username: str,
        email: str,
        is_staff: bool,
        is_superuser: bool,
        session_id: str,
        session_expires_at: float,
    ) -> None:
        self.id = id
        self.username = username
        self.email = email
        self.is_staff = is_staff
        self.is_superuser = is_superuser
        self.session_id = session_id
        self.session_expires_at = session_expires_at
        # request.auth.scopes, in the spirit of Django's is_staff / is_superuser checks
        self.scopes = [
            "authenticated",
            *(["staff"] if is_staff else []),
            *(["superuser"] if is_superuser else []),
        ]

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.username

    @property
    def identity(self) -> str:
        return str(self.id)


class AuthCache:
    """Verified tokens and live sessions of this worker, valid while the shared epoch stands still."""

    def __init__(self, epoch: RevocationEpoch) -> None:
        self.epoch = epoch
        self._tokens: dict[str, tokens.AccessClaims] = {}
        self._sessions: dict[str, tuple[AuthenticatedUser, float]] = {}
        self._seen_epoch = epoch.read()

    def claims(self, token: str) -> tokens.AccessClaims:
        """Decode `token`, once per token; expiry is still checked on every use.

        Raises:
            tokens.TokenError: invalid or expired.
        """
        claims = self._tokens.get(token)
        if claims is None:
            claims = tokens.decode_access_token(token)
            if len(self._tokens) >= TOKEN_CACHE_SIZE:
                del self._tokens[next(iter(self._tokens))]  # oldest first
            self._tokens[token] = claims
        elif claims.expires_at <= time.time():
            del self._tokens[token]
            raise tokens.TokenError("The access token has expired.")
        return claims

    def current_epoch(self) -> int:
        """Read the shared counter; if another request (in any worker) ended sessions, forget them all."""
        epoch = self.epoch.read()
        if epoch != self._seen_epoch:
            self._sessions.clear()
            self._seen_epoch = epoch
        return epoch

    def session(self, session_id: str) -> AuthenticatedUser | None:
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        user, cached_at = entry
        now = time.time()
        # Past the session's expiry or the cache TTL: look again (a refresh may have extended it).
        if user.session_expires_at <= now or now - cached_at > settings.SESSION_CACHE_TTL:
            del self._sessions[session_id]
            return None
        return user

    def remember(self, user: AuthenticatedUser, epoch: int) -> None:
        """Cache a session checked in the database, unless sessions ended since `epoch` was read."""
        if epoch != self._seen_epoch or not settings.SESSION_CACHE:
            return
        if len(self._sessions) >= SESSION_CACHE_SIZE:
            del self._sessions[next(iter(self._sessions))]
        self._sessions[user.session_id] = (user, time.time())

    def invalidate(self) -> None:
        """Sessions ended or account data changed: every worker drops its session cache."""
        self.epoch.bump()
        self.current_epoch()


@cache
def auth_cache() -> AuthCache:
    return AuthCache(RevocationEpoch(epoch_path()))


def invalidate() -> None:
    auth_cache().invalidate()

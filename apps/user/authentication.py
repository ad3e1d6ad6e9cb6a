"""Bearer access token -> `request.user`, cheaply and without making revocation slow.

Each worker remembers verified access tokens (PyJWT runs once per token, not per request) and live
sessions (no query per request). Both caches are trusted only while the revocation signal
(revocation.py) stands still: every commit that ends a session or changes what `request.user` shows
publishes through it, and a worker that sees it move drops its sessions. A session miss costs one
indexed query (queries.session_user). Time comes from an injected clock, so tests move it instead
of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.authentication import BaseUser

import settings
from apps.user import revocation, tokens

TOKEN_CACHE_SIZE = 10_000
SESSION_CACHE_SIZE = 10_000

Clock = Callable[[], float]


class TokenRefused(Exception):
    """The token cannot authenticate anybody; the message is safe to show."""


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


SessionLoader = Callable[[int, str], Awaitable[AuthenticatedUser | None]]


class Authenticator:
    """Verified tokens and live sessions of this worker, valid while the revocation signal stands still."""

    def __init__(
        self, signal: revocation.RevocationSignal, load_session: SessionLoader, clock: Clock
    ) -> None:
        self.signal = signal
        self.load_session = load_session
        self.clock = clock
        self._tokens: dict[str, tokens.AccessClaims] = {}
        self._sessions: dict[str, tuple[AuthenticatedUser, float]] = {}
        self._seen_version = signal.version()

    def claims(self, token: str) -> tokens.AccessClaims:
        """Decode `token`, once per token; expiry is still checked on every use.

        Raises:
            TokenRefused: invalid or expired.
        """
        claims = self._tokens.get(token)
        if claims is None:
            try:
                claims = tokens.decode_access_token(token)
            except tokens.TokenError as exc:
                raise TokenRefused(str(exc)) from exc
            if len(self._tokens) >= TOKEN_CACHE_SIZE:
                del self._tokens[next(iter(self._tokens))]  # oldest first
            self._tokens[token] = claims
        elif claims.expires_at <= self.clock():
            del self._tokens[token]
            raise TokenRefused("The access token has expired.")
        return claims

    def _current_version(self) -> int:
        version = self.signal.version()
        if version != self._seen_version:  # sessions ended or accounts changed somewhere: forget them
            self._sessions.clear()
            self._seen_version = version
        return version

    def _cached_session(self, session_id: str) -> AuthenticatedUser | None:
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        user, cached_at = entry
        now = self.clock()
        # Past the session's expiry or the cache TTL: look again (a refresh may have extended it).
        if user.session_expires_at <= now or now - cached_at > settings.SESSION_CACHE_TTL:
            del self._sessions[session_id]
            return None
        return user

    def _remember(self, user: AuthenticatedUser, version: int) -> None:
        # Not if the signal moved while the query ran: the answer may predate the revocation.
        if version != self._seen_version or not settings.SESSION_CACHE:
            return
        if len(self._sessions) >= SESSION_CACHE_SIZE:
            del self._sessions[next(iter(self._sessions))]
        self._sessions[user.session_id] = (user, self.clock())

    async def user_for_token(self, token: str) -> AuthenticatedUser:
        """The user behind an access token whose session is live.

        Raises:
            TokenRefused: the token is invalid or expired, or its session has ended.
        """
        claims = self.claims(token)
        version = self._current_version()
        user = self._cached_session(claims.session_id)
        if user is None:
            user = await self.load_session(claims.user_id, claims.session_id)
            if user is None:
                raise TokenRefused("The session of this access token has ended.")
            self._remember(user, version)
        if user.id != claims.user_id:
            raise TokenRefused("The access token is malformed or not issued by this service.")
        return user


_current: Authenticator | None = None


def authenticator() -> Authenticator:
    """This process's authenticator, bound to the running revocation signal (a new one after a restart)."""
    global _current
    signal = revocation.signal()
    if _current is None or _current.signal is not signal:
        from apps.user import queries  # the read side imports the models; keep this module light

        _current = Authenticator(signal, queries.session_user, time.time)
    return _current

"""Bearer access token -> `request.user`, cheaply and without making revocation slow.

Each worker remembers verified access tokens (PyJWT runs once per token, not per request) and live
sessions (no query per request). The session cache listens to revocation.py: every commit that ends
a session or changes what `request.user` shows reaches every worker of every host, which removes
exactly those sessions (all of an account's for an account change); while the revocation signal is
not in sync (a listener reconnecting), no cached session is trusted. A session miss costs one indexed
query (queries.session_user). Time comes from an injected clock, so tests move it instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

from starlette.authentication import BaseUser

import settings
from apps.core.errors import is_database_fault
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
    """Verified tokens and live sessions of this worker; the listener of the revocation signal."""

    def __init__(self, signal: revocation.Revocation, load_session: SessionLoader, clock: Clock) -> None:
        self.signal = signal
        self.load_session = load_session
        self.clock = clock
        self._tokens: dict[str, tokens.AccessClaims] = {}
        self._sessions: dict[str, tuple[AuthenticatedUser, float]] = {}
        self._sessions_of: dict[int, set[str]] = {}  # account id -> its cached sessions
        # Moves with every revocation heard: a session looked up while it moved is not cached, as the
        # answer may predate the revocation.
        self._revocations_heard = 0
        signal.listen(self)

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

    # --- revocation.Listener ---

    def forget(self, sessions: Iterable[str], users: Iterable[int]) -> None:
        self._revocations_heard += 1
        for session_id in sessions:
            self._drop(session_id)
        for user_id in users:
            for session_id in self._sessions_of.pop(user_id, ()):
                self._sessions.pop(session_id, None)

    def forget_all(self) -> None:
        self._revocations_heard += 1
        self._sessions.clear()
        self._sessions_of.clear()

    # --- the session cache ---

    def _drop(self, session_id: str) -> None:
        entry = self._sessions.pop(session_id, None)
        if entry is not None:
            of_user = self._sessions_of.get(entry[0].id)
            if of_user is not None:
                of_user.discard(session_id)
                if not of_user:
                    del self._sessions_of[entry[0].id]

    def _cached_session(self, session_id: str) -> AuthenticatedUser | None:
        entry = self._sessions.get(session_id)
        if entry is None:
            return None
        user, cached_at = entry
        now = self.clock()
        # Past the session's expiry or the cache TTL: look again (a refresh may have extended it).
        if user.session_expires_at <= now or now - cached_at > settings.SESSION_CACHE_TTL:
            self._drop(session_id)
            return None
        return user

    def _remember(self, user: AuthenticatedUser) -> None:
        if len(self._sessions) >= SESSION_CACHE_SIZE:
            self._drop(next(iter(self._sessions)))  # oldest first
        self._sessions[user.session_id] = (user, self.clock())
        self._sessions_of.setdefault(user.id, set()).add(user.session_id)

    async def user_for_token(self, token: str) -> AuthenticatedUser:
        """The user behind an access token whose session is live.

        Raises:
            TokenRefused: the token is invalid or expired, or its session has ended.
        """
        claims = self.claims(token)
        # Not trusted while a listener is reconnecting: then every request looks its session up.
        trusted = settings.SESSION_CACHE and self.signal.trusted()
        cached = self._cached_session(claims.session_id) if settings.SESSION_CACHE else None
        if trusted and cached is not None:
            user = cached
        else:
            heard = self._revocations_heard
            try:
                user = await self.load_session(claims.user_id, claims.session_id)
            except Exception as exc:
                # The database is away, so the listener is too (it is the same server, or the same
                # network): a session this worker saw live within SESSION_CACHE_TTL still answers, as
                # it would had the listener stayed connected; nothing can be revoked through a
                # database nobody reaches, and a host cut off alone hears what it missed on reconnecting.
                if cached is not None and is_database_fault(exc):
                    return cached
                raise
            if user is None:
                self._drop(claims.session_id)
                raise TokenRefused("The session of this access token has ended.")
            if trusted and heard == self._revocations_heard:
                self._remember(user)
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

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
from datetime import datetime
from typing import Any

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
    (in this worker, since the last change anywhere), and the session the token belongs to. It holds
    the whole user object, so GET /user/me reads nothing while it is cached: a change to what
    request.user shows drops the entry (revocation.py), and a change to the rest of the user object
    (a login elsewhere moving last_login, a pending email) marks it stale, so that the next GET
    /user/me reads it again; the session itself stays cached for everything else."""

    __slots__ = (
        "id",
        "username",
        "email",
        "is_staff",
        "is_superuser",
        "email_verified",
        "pending_email",
        "has_usable_password",
        "date_joined",
        "last_login",
        "session_id",
        "session_expires_at",
        "scopes",
        "profile_json",
        "profile_changes",
        "profile_read",
    )

    is_active = True  # a session of an inactive account never authenticates

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
        email_verified: bool = False,
        pending_email: str | None = None,
        has_usable_password: bool = True,
        date_joined: datetime | None = None,
        last_login: datetime | None = None,
    ) -> None:
        self.id = id
        self.username = username
        self.email = email
        self.is_staff = is_staff
        self.is_superuser = is_superuser
        # the rest of the user object (GET /user/me answers from it): a change to these is published
        # as a profile change (sessions.Ending.profile_changed), to those above as an account change
        self.email_verified = email_verified
        self.pending_email = pending_email
        self.has_usable_password = has_usable_password
        self.date_joined = date_joined
        self.last_login = last_login
        self.session_id = session_id
        self.session_expires_at = session_expires_at
        self.profile_json: bytes | None = None  # GET /user/me's body, made once per cached entry
        # How many changes to the rest of the user object this worker heard of while the entry was
        # cached, and up to which one the fields above are read: the object is stale between the two.
        self.profile_changes = self.profile_read = 0
        # request.auth.scopes, in the spirit of Django's is_staff / is_superuser checks
        self.scopes = [
            "authenticated",
            *(["staff"] if is_staff else []),
            *(["superuser"] if is_superuser else []),
        ]

    @property
    def profile_stale(self) -> bool:
        return self.profile_read != self.profile_changes

    def profile_changed(self) -> None:
        self.profile_changes += 1
        self.profile_json = None

    def read_profile(self, account: Any, as_of: int) -> None:
        """Take the user object's fields from `account` (a User row read after change `as_of` was
        heard); still stale if another change was heard during the read."""
        self.email_verified = account.email_verified
        self.pending_email = account.pending_email
        self.has_usable_password = account.has_usable_password
        self.last_login = account.last_login
        self.profile_json = None
        self.profile_read = as_of

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
        # answer may predate the revocation. A profile change (every login publishes one) moves the
        # second counter only: a session looked up meanwhile is cached, with its user object stale.
        self._revocations_heard = 0
        self._profile_changes_heard = 0
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

    def forget(self, sessions: Iterable[str], users: Iterable[int], profiles: Iterable[int] = ()) -> None:
        sessions, users, profiles = list(sessions), list(users), list(profiles)
        if sessions or users:
            self._revocations_heard += 1
        if profiles:
            self._profile_changes_heard += 1
        for session_id in sessions:
            self._drop(session_id)
        for user_id in users:
            for session_id in self._sessions_of.pop(user_id, ()):
                self._sessions.pop(session_id, None)
        for user_id in profiles:
            for session_id in self._sessions_of.get(user_id, ()):
                entry = self._sessions.get(session_id)
                if entry is not None:
                    entry[0].profile_changed()

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
            heard, profiles_heard = self._revocations_heard, self._profile_changes_heard
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
                if profiles_heard != self._profile_changes_heard:
                    user.profile_changed()  # its user object may predate that change: read it again
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

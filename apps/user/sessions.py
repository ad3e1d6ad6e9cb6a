"""Sessions: start, rotate, end. The only code that ends sessions, and so the only caller of revocation.

A session is one login. Its access tokens name it (`sid`); its refresh tokens form a rotation chain.
It lives while it is used (REFRESH_TOKEN_LIFETIME after its last refresh) and never longer than
SESSION_MAX_LIFETIME after it began, however active it was.

Ending sessions happens inside `ending()`, a transaction that publishes through revocation.py once it
has committed, so no caller has to remember to tell the other workers, and nothing is published for
a change that was rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

import settings
from apps.user import events, revocation, tokens
from apps.user.clients import Client
from apps.user.exceptions import EmailUnverified, InvalidCredentials, InvalidRefreshToken
from apps.user.models import RefreshToken, Session, User


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    user: User
    session_id: str
    access_token: str
    refresh_token: str
    expires_in: int


def _now() -> datetime:
    return datetime.now(UTC)


def _expiry(created_at: datetime, now: datetime) -> datetime:
    """Sliding idle expiry, capped by the absolute lifetime."""
    return min(
        now + timedelta(seconds=settings.REFRESH_TOKEN_LIFETIME),
        created_at + timedelta(seconds=settings.SESSION_MAX_LIFETIME),
    )


def _issue(user: User, session_id: str, refresh: str, now: datetime) -> IssuedTokens:
    return IssuedTokens(
        user=user,
        session_id=session_id,
        access_token=tokens.issue_access_token(user.id, session_id, now=now),
        refresh_token=refresh,
        expires_in=settings.ACCESS_TOKEN_LIFETIME,
    )


async def start(
    user: User,
    client: Client,
    *,
    checked_password: str,
    now: datetime | None = None,
    event: str | None = events.LOGIN,
    last_login: datetime | None | type[Ellipsis] = ...,
) -> IssuedTokens:
    """Open a session for `user`, provided the account is still as it was when its password was checked.

    The check and the insert are one transaction that begins by writing the user row (last_login)
    on that condition: a password change, deactivation or deletion that committed after the password
    check makes it match nothing, and one that comes later waits for this commit and then ends the
    new session with the others. So no session outlives a change that raced its login.

    `event` is recorded in the same transaction (None: the caller records its own, as registration does).
    `last_login`, when given, must also be unchanged: of two second-factor steps finishing one login
    attempt at once (mfa.py), one opens a session.

    Raises:
        InvalidCredentials: the password, the active flag or the account itself changed meanwhile.
    """
    now = now or _now()
    async with ending() as end:
        unchanged = {} if last_login is ... else {"last_login": last_login}
        claimed = await User.filter(
            id=user.id, password=checked_password, is_active=True, **unchanged
        ).update(last_login=now)
        if not claimed:
            raise InvalidCredentials()
        end.profile_changed(user.id)  # the user object of its other sessions shows last_login
        session = await Session.create(
            id=uuid.uuid4(),
            user_id=user.id,
            created_at=now,
            last_used_at=now,
            expires_at=_expiry(now, now),
            user_agent=client.user_agent,
            ip_address=client.ip_address,
        )
        refresh = tokens.new_refresh_token()
        await RefreshToken.create(session=session, digest=tokens.refresh_token_digest(refresh))
        if event is not None:
            await events.record(event, user.id, client, at=now)
    user.last_login = now
    return _issue(user, str(session.id), refresh, now)


async def rotate(
    refresh_token: str, client: Client, *, now: datetime | None = None, grace: bool = False
) -> IssuedTokens:
    """Spend `refresh_token` and return a new pair for the same session.

    The token is claimed by one conditional UPDATE (used_at IS NULL), so of concurrent refreshes with
    one token at most one wins. Presenting a spent token again is taken as theft: the whole session
    ends, the thief's tokens and the victim's alike (OAuth 2.0 Security BCP, refresh token rotation).

    With `grace` (the cookie transport: the tabs of one browser share one cookie), the new token is also
    kept on the spent row, sealed under a key derived from the spent token; a token spent that way at
    most REFRESH_TOKEN_REUSE_GRACE seconds ago and presented again (by the cookie transport) answers
    the newest unspent token down that chain, and a new access token: the tab that lost the race ends
    up with the cookie the winner got. Otherwise (later, a bearer-spent token, or the grace off) it is
    theft as above.

    Raises:
        InvalidRefreshToken: unknown, spent, expired, revoked, or past SESSION_MAX_LIFETIME.
    """
    digest = tokens.refresh_token_digest(refresh_token)
    now = now or _now()
    issued = None
    async with ending() as end:
        claimed = await RefreshToken.filter(digest=digest, used_at=None).update(used_at=now)
        row = await RefreshToken.get_or_none(digest=digest).select_related("session__user")
        successor = None
        if row is not None and not claimed and grace:
            successor = await _unspent_successor(row, refresh_token, now)
        if row is not None and not claimed and successor is None and row.session.expires_at > now:
            # a spent token presented again while its session lives: theft suspected
            if await end.session(str(row.session.id), "refresh_token_reused", now=now):
                await events.record(events.REFRESH_REUSE_DETECTED, row.session.user_id, client, at=now)
        elif row is not None:
            session, user = row.session, row.session.user
            # idle expiry and the absolute lifetime (in case SESSION_MAX_LIFETIME was lowered since)
            live = session.expires_at > now and _expiry(session.created_at, now) > now
            if live and session.revoked_at is None and user.is_active:
                if settings.EMAIL_VERIFICATION == "mandatory" and not user.email_verified:
                    # a session from before verification became mandatory: no new tokens until the
                    # address is verified (rolled back: the refresh token works again after that)
                    raise EmailUnverified()
                if successor is None:
                    session.last_used_at = now
                    session.expires_at = _expiry(session.created_at, now)
                    session.ip_address = client.ip_address
                    await session.save(update_fields=["last_used_at", "expires_at", "ip_address"])
                    successor = tokens.new_refresh_token()
                    await RefreshToken.create(session=session, digest=tokens.refresh_token_digest(successor))
                    if grace:
                        sealed = tokens.seal_successor(refresh_token, successor)
                        await RefreshToken.filter(id=row.id).update(successor=sealed)
                issued = _issue(user, str(session.id), successor, now)
    # Raised after the block, so that ending a replayed session is committed, not rolled back.
    if issued is None:
        raise InvalidRefreshToken()
    return issued


GRACE_CHAIN = 4  # tabs racing more refreshes than this within the window are not a race


async def _unspent_successor(row: RefreshToken, refresh_token: str, now: datetime) -> str | None:
    """The newest unspent token down the chain of browser refreshes from `row`, each spent within
    the grace window; None if there is none (the caller then treats it as a replay)."""
    window = timedelta(seconds=settings.REFRESH_TOKEN_REUSE_GRACE)
    spent, token = row, refresh_token
    for _ in range(GRACE_CHAIN):
        # abs(): of two refreshes racing, the loser's clock may read earlier than the winner's used_at
        if (
            not window
            or spent.used_at is None
            or spent.successor is None
            or abs(now - spent.used_at) > window
        ):
            return None
        successor = tokens.open_successor(token, spent.successor)
        if successor is None:
            return None
        following = await RefreshToken.get_or_none(
            session_id=row.session_id, digest=tokens.refresh_token_digest(successor)
        )
        if following is None:
            return None
        if following.used_at is None:
            return successor
        spent, token = following, successor
    return None


@dataclass
class Ending:
    """What one transaction ended or changed; published to every worker once it commits."""

    sessions: set[str] = field(default_factory=set)
    users: set[int] = field(default_factory=set)
    profiles: set[int] = field(default_factory=set)

    async def session(
        self, session_id: str, reason: str, *, user_id: int | None = None, now: datetime | None = None
    ) -> int:
        """End one session (of `user_id`, if given); returns 1 if it was live."""
        sessions = Session.filter(id=session_id)
        if user_id is not None:
            sessions = sessions.filter(user_id=user_id)
        ended = await _revoke(sessions, reason, now)
        if ended:  # nothing to tell about a session already over (a replayed token, replayed again)
            self.sessions.add(session_id)
        return ended

    async def user_sessions(
        self, user_id: int, reason: str, *, except_session_id: str | None = None, now: datetime | None = None
    ) -> int:
        """End every session of a user (but one, if named); returns how many were live."""
        sessions = Session.filter(user_id=user_id)
        if except_session_id is not None:
            sessions = sessions.exclude(id=except_session_id)
        ended = await _revoke(sessions, reason, now)
        if ended:
            self.users.add(user_id)
        return ended

    def account_changed(self, user_id: int) -> None:
        """What request.user shows of this account changed (name, email, flags), or the account went
        (its sessions go with it, ON DELETE CASCADE): cached copies must go."""
        self.users.add(user_id)

    def profile_changed(self, user_id: int) -> None:
        """Only the rest of the user object changed (last_login, pending_email, email_verified,
        has_usable_password): cached sessions stay good, but GET /user/me must read it again."""
        self.profiles.add(user_id)

    def __bool__(self) -> bool:
        return bool(self.sessions or self.users or self.profiles)


async def _revoke(sessions, reason: str, now: datetime | None) -> int:
    return await sessions.filter(revoked_at=None).update(revoked_at=now or _now(), revoked_reason=reason)


@asynccontextmanager
async def ending() -> AsyncIterator[Ending]:
    """A transaction in which sessions may end; every worker hears of it after the commit.

    Raises:
        RuntimeError: revocation is not running (outside lifecycle.running()): before anything is
            written, since a change nobody hears of would leave ended sessions alive in the caches.
    """
    signal = revocation.signal()
    ended = Ending()
    async with in_transaction() as connection:
        yield ended
        if ended:  # PostgreSQL's NOTIFY goes out with the commit, or not at all
            await signal.announce(
                connection, sessions=ended.sessions, users=ended.users, profiles=ended.profiles
            )
    if ended:
        await signal.publish(sessions=ended.sessions, users=ended.users, profiles=ended.profiles)


async def end(user_id: int, session_id: str, client: Client, *, event: str = events.LOGOUT) -> int:
    """End one of the user's sessions (logout, or one ended from the device list): its refresh token
    and every access token it issued are refused now. Returns 0 if the user has no such live session."""
    async with ending() as end:
        ended = await end.session(session_id, event, user_id=user_id)
        if ended:
            await events.record(event, user_id, client)
    return ended


async def end_all(user_id: int, client: Client) -> int:
    """End every session of the user at once (logout everywhere); returns how many were live."""
    async with ending() as end:
        ended = await end.user_sessions(user_id, events.LOGOUT)
        if ended:
            await events.record(events.LOGOUT, user_id, client)
    return ended


async def clear() -> int:
    """Delete ended and expired sessions (and their refresh tokens); returns how many."""
    return await Session.filter(Q(revoked_at__isnull=False) | Q(expires_at__lte=_now())).delete()

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
from typing import Any

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
    async with ending() as end:
        claimed = await _claim(end.connection, digest, now)
        if claimed is not None:
            issued = await _move_on(end.connection, claimed, refresh_token, client, now, grace)
        else:
            issued = await _spent_or_unknown(end, digest, refresh_token, client, now, grace)
    # Raised after the block, so that ending a replayed session is committed, not rolled back.
    if issued is None:
        raise InvalidRefreshToken()
    return issued


def _usable(user: User, created_at: datetime, expires_at: datetime, revoked_at: datetime | None, now) -> bool:
    """Whether a refresh of this session may answer new tokens.

    Raises:
        EmailUnverified: a session from before verification became mandatory, of an account whose
            address is still not verified: no new tokens until it is (raised inside the transaction,
            which rolls back: the refresh token works again after that).
    """
    # idle expiry and the absolute lifetime (in case SESSION_MAX_LIFETIME was lowered since)
    live = expires_at > now and _expiry(created_at, now) > now
    if not (live and revoked_at is None and user.is_active):
        return False
    if settings.EMAIL_VERIFICATION == "mandatory" and not user.email_verified:
        raise EmailUnverified()
    return True


# --- the common case, a live token spent once: two statements of SQL written here ------------------
#
# A refresh is the service's most frequent write. Through the ORM it was five statements, each built
# anew (the select_related join alone cost about 0.5 ms of query building). Here: claim the token and
# read its session and account; move the session on and insert the successor. On PostgreSQL each is
# one round trip (data-modifying CTEs); SQLite has no such CTEs: each step's statements are handed to
# its thread together (database.pipeline), one turn of the event loop.
# A token that cannot be claimed (spent, unknown) takes the ORM path, _spent_or_unknown, rare.


@dataclass(frozen=True, slots=True)
class _Claimed:
    refresh_id: int
    session_id: Any  # a UUID on PostgreSQL, its text on SQLite: handed back as the driver gave it
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    user: User


_CLAIM_SQL = {
    "postgres": (
        "WITH claimed AS (UPDATE user_refresh_token SET used_at = $1 WHERE digest = $2 AND used_at IS NULL"
        " RETURNING id, session_id)"
        " SELECT c.id AS refresh_id, s.id AS session_id, s.created_at AS session_created_at,"
        " s.expires_at AS session_expires_at, s.revoked_at AS session_revoked_at, u.*"
        " FROM claimed c JOIN user_session s ON s.id = c.session_id JOIN user_user u ON u.id = s.user_id",
    ),
    "sqlite": (
        "UPDATE user_refresh_token SET used_at = ? WHERE digest = ? AND used_at IS NULL"
        " RETURNING id AS refresh_id, session_id",
        # sent with the UPDATE (database.pipeline), so it names the session by the token's digest
        "SELECT s.id AS session_id, s.created_at AS session_created_at,"
        " s.expires_at AS session_expires_at, s.revoked_at AS session_revoked_at, u.*"
        " FROM user_session s JOIN user_user u ON u.id = s.user_id"
        " WHERE s.id = (SELECT session_id FROM user_refresh_token WHERE digest = ?)",
    ),
}
_MOVE_ON = "UPDATE user_session SET last_used_at = {1}, expires_at = {2}, ip_address = {3} WHERE id = {4}"
_INSERT = "INSERT INTO user_refresh_token (session_id, digest, created_at) VALUES ({4}, {5}, {1})"
_SEAL = "UPDATE user_refresh_token SET successor = {6} WHERE id = {7}"
_MOVE_ON_SQL = {
    ("postgres", False): (f"WITH moved AS ({_MOVE_ON}) {_INSERT}".format(*(f"${i}" for i in range(8))),),
    ("postgres", True): (
        f"WITH moved AS ({_MOVE_ON}), sealed AS ({_SEAL}) {_INSERT}".format(*(f"${i}" for i in range(8))),
    ),
    ("sqlite", False): (_MOVE_ON.format(*"????????"), _INSERT.format(*"????????")),
    ("sqlite", True): (_MOVE_ON.format(*"????????"), _INSERT.format(*"????????"), _SEAL.format(*"????????")),
}
# which of the numbered parameters each SQLite statement takes, in order
_SQLITE_PARAMETERS = {_MOVE_ON: (1, 2, 3, 4), _INSERT: (4, 5, 1), _SEAL: (6, 7)}


def _timestamp(value: datetime | str | None) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value  # SQLite answers text


async def _claim(connection: Any, digest: str, now: datetime) -> _Claimed | None:
    """Spend the token if it is unspent (one conditional UPDATE: of concurrent refreshes, one wins)
    and read its session and account; None if it could not be spent."""
    dialect = connection.capabilities.dialect
    statements = _CLAIM_SQL[dialect]
    if dialect == "sqlite":
        claimed, rows = await connection.pipeline((statements[0], [now, digest]), (statements[1], [digest]))
        rows = [{**row, "refresh_id": claimed[0]["refresh_id"]} for row in rows] if claimed else []
    else:
        rows = await connection.execute_query_dict(statements[0], [now, digest])
    if not rows:
        return None
    row = rows[0]
    return _Claimed(
        refresh_id=row["refresh_id"],
        session_id=row["session_id"],
        created_at=_timestamp(row["session_created_at"]),
        expires_at=_timestamp(row["session_expires_at"]),
        revoked_at=_timestamp(row["session_revoked_at"]),
        user=User._init_from_db(**row),
    )


async def _move_on(
    connection: Any, claimed: _Claimed, refresh_token: str, client: Client, now: datetime, grace: bool
) -> IssuedTokens | None:
    """The claimed token's session, if still usable, moves on: its idle expiry slides, a successor
    is stored (and, with `grace`, sealed on the spent row for a tab that lost the race)."""
    if not _usable(claimed.user, claimed.created_at, claimed.expires_at, claimed.revoked_at, now):
        return None  # the token stays spent: the session is over
    successor = tokens.new_refresh_token()
    parameters = {
        1: now,
        2: _expiry(claimed.created_at, now),
        3: client.ip_address,
        4: claimed.session_id,
        5: tokens.refresh_token_digest(successor),
        6: tokens.seal_successor(refresh_token, successor) if grace else None,
        7: claimed.refresh_id,
    }
    dialect = connection.capabilities.dialect
    statements = _MOVE_ON_SQL[dialect, grace]
    if dialect == "postgres":
        used = range(1, 8 if grace else 6)
        await connection.execute_query_dict(statements[0], [parameters[i] for i in used])
    else:
        await connection.pipeline(
            *(
                (statement, [parameters[i] for i in _SQLITE_PARAMETERS[template]])
                for statement, template in zip(statements, (_MOVE_ON, _INSERT, _SEAL), strict=False)
            )
        )
    return _issue(claimed.user, str(claimed.session_id), successor, now)


async def _spent_or_unknown(
    end: Ending, digest: str, refresh_token: str, client: Client, now: datetime, grace: bool
) -> IssuedTokens | None:
    """A token that could not be spent: unknown (None), a tab's repeat within the grace window (the
    newest unspent token of its chain), or a replay, which ends its session (None)."""
    row = await RefreshToken.get_or_none(digest=digest).select_related("session__user")
    if row is None:
        return None
    session, user = row.session, row.session.user
    successor = await _unspent_successor(row, refresh_token, now) if grace else None
    if successor is None:
        if session.expires_at > now:  # a spent token presented again while its session lives: theft
            if await end.session(str(session.id), "refresh_token_reused", now=now):
                await events.record(events.REFRESH_REUSE_DETECTED, session.user_id, client, at=now)
        return None
    if not _usable(user, session.created_at, session.expires_at, session.revoked_at, now):
        return None
    return _issue(user, str(session.id), successor, now)


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
    connection: Any = None  # the transaction's own (for the refresh's SQL)

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
        ended.connection = connection
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

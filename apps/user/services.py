"""Account rules: the only module that writes users and sessions. Views call these; nothing else does.

Every function takes plain values and returns models or raises a `Problem`; none knows about HTTP
requests, so `manage.py` commands can call them too.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

import settings
from apps.core import database
from apps.core.errors import BEARER_CHALLENGE, Conflict, Problem, ValidationFailed
from apps.user import authcache, passwords, tokens
from apps.user.models import RefreshToken, Session, User, normalize_email, username_key


class InvalidCredentials(Problem):
    status, code, title = 401, "invalid_credentials", "Invalid credentials"
    detail = "The email or password is wrong."
    headers = {"WWW-Authenticate": BEARER_CHALLENGE}


class InvalidRefreshToken(Problem):
    status, code, title = 401, "invalid_refresh_token", "Invalid refresh token"
    # One answer for unknown, spent, expired and revoked: a thief learns nothing from it.
    detail = "The refresh token is invalid, expired or already used. Log in again."
    headers = {"WWW-Authenticate": BEARER_CHALLENGE}


def wrong_password(field: str) -> ValidationFailed:
    return ValidationFailed(errors=[{"field": field, "message": "The password is wrong."}])


@dataclass(frozen=True, slots=True)
class Client:
    """Who is logging in from where; recorded on the session for the user's device list."""

    user_agent: str = ""
    ip_address: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    user: User
    session_id: str
    access_token: str
    refresh_token: str
    expires_in: int


def _now() -> datetime:
    return datetime.now(UTC)


async def _conflict_for(username: str | None, email: str | None) -> Conflict:
    """Name the taken field(s) after a unique index refused an insert or update."""
    errors = []
    if username is not None and await User.filter(username_key=username_key(username)).exists():
        errors.append({"field": "username", "message": "This username is already taken."})
    if email is not None and await User.filter(email=normalize_email(email)).exists():
        errors.append({"field": "email", "message": "An account with this email already exists."})
    return Conflict("The username or email is already taken.", errors=errors or None)


async def _start_session(user: User, client: Client, now: datetime) -> IssuedTokens:
    """Open a session for `user` and set last_login; call inside a transaction."""
    session = await Session.create(
        id=uuid.uuid4(),
        user=user,
        last_used_at=now,
        expires_at=now + timedelta(seconds=settings.REFRESH_TOKEN_LIFETIME),
        user_agent=client.user_agent[:512],
        ip_address=client.ip_address,
    )
    refresh = tokens.new_refresh_token()
    await RefreshToken.create(session=session, digest=tokens.refresh_token_digest(refresh))
    user.last_login = now
    await user.save(update_fields=["last_login"])
    return _issue(user, str(session.id), refresh, now)


def _issue(user: User, session_id: str, refresh: str, now: datetime) -> IssuedTokens:
    return IssuedTokens(
        user=user,
        session_id=session_id,
        access_token=tokens.issue_access_token(user.id, session_id, now=now),
        refresh_token=refresh,
        expires_in=settings.ACCESS_TOKEN_LIFETIME,
    )


async def register(username: str, email: str, password: str, client: Client) -> IssuedTokens:
    """Create an account and log it in.

    No look-up first: the unique indexes decide, so two concurrent registrations cannot both win.

    Raises:
        Conflict: 409, the username or email is taken (case-insensitively).
    """
    password_hash = await passwords.hash_password(password)
    try:
        async with in_transaction():
            user = await User.create(
                username=username,
                username_key=username_key(username),
                email=normalize_email(email),
                password=password_hash,
            )
            return await _start_session(user, client, user.date_joined)
    except IntegrityError:
        raise await _conflict_for(username, email) from None


async def create_user(
    username: str, email: str, password: str | None, *, is_staff: bool = False, is_superuser: bool = False
) -> User:
    """An account without a session (manage.py createsuperuser). No password: an unusable one, as Django does.

    Raises:
        Conflict: 409, the username or email is taken.
    """
    password_hash = (
        await passwords.hash_password(password)
        if password
        else passwords.UNUSABLE_PREFIX + secrets.token_urlsafe(30)
    )
    try:
        return await User.create(
            username=username,
            username_key=username_key(username),
            email=normalize_email(email),
            password=password_hash,
            is_staff=is_staff,
            is_superuser=is_superuser,
        )
    except IntegrityError:
        raise await _conflict_for(username, email) from None


async def set_password(user: User, new_password: str) -> int:
    """Set a password without the old one (manage.py changepassword); every session ends at once."""
    new_hash = await passwords.hash_password(new_password)
    async with in_transaction():
        await User.filter(id=user.id).update(password=new_hash)
        ended = await _end_user_sessions(user.id, "password_changed")
    authcache.invalidate()
    user.password = new_hash
    return ended


async def import_accounts(creates: list[dict], updates: list[tuple[int, dict]]) -> None:
    """Write what django_import.py decided, in one transaction. An update that deactivates an account
    or replaces its password ends its sessions, as the same change made here would."""
    async with in_transaction():
        for values in creates:
            await User.create(**values)
        for user_id, changed in updates:
            await User.filter(id=user_id).update(**changed)
            if changed.get("is_active") is False or "password" in changed:
                await _end_user_sessions(user_id, "changed_by_import")
    if updates:
        authcache.invalidate()


async def clear_sessions() -> int:
    """Delete ended and expired sessions (and their refresh tokens); returns how many."""
    return await Session.filter(Q(revoked_at__isnull=False) | Q(expires_at__lte=_now())).delete()


async def authenticate(password: str, *, email: str | None = None, username: str | None = None) -> User:
    """The active user with these credentials; the hash is upgraded if the policy moved on.

    Unknown account, wrong password and inactive account fail alike, in the same time.

    Raises:
        InvalidCredentials: 401, whatever the reason.
    """
    if email is not None:
        key, lookup = normalize_email(email), "email"
    else:
        key, lookup = username_key(username or ""), "username_key"
    # An identifier longer than its column names nobody (and Tortoise refuses it before querying).
    too_long = len(key) > User._meta.fields_map[lookup].max_length
    user = None if too_long else await User.get_or_none(**{lookup: key})
    if user is None:
        await passwords.burn_password_check(password, account=(lookup, key))
        raise InvalidCredentials()
    matches, upgraded_hash = await passwords.verify_password(
        password, user.password, account=(lookup, key), upgrade=user.is_active
    )
    if not matches or not user.is_active:
        raise InvalidCredentials()
    if upgraded_hash:
        # Only the password column, and only if nobody changed it meanwhile.
        await User.filter(id=user.id, password=user.password).update(password=upgraded_hash)
        user.password = upgraded_hash
    return user


async def login(
    password: str, client: Client, *, email: str | None = None, username: str | None = None
) -> IssuedTokens:
    user = await authenticate(password, email=email, username=username)
    async with in_transaction():
        return await _start_session(user, client, _now())


async def rotate_refresh_token(refresh_token: str, client: Client) -> IssuedTokens:
    """Spend `refresh_token` and return a new pair for the same session.

    The token is claimed by one conditional UPDATE (used_at IS NULL), so of concurrent refreshes with
    one token at most one wins. Presenting a spent token again is taken as theft: the whole session
    ends, the thief's tokens and the victim's alike (OAuth 2.0 Security BCP, refresh token rotation).

    Raises:
        InvalidRefreshToken: 401, unknown, spent, expired or revoked.
    """
    digest = tokens.refresh_token_digest(refresh_token)
    now = _now()
    replayed = 0
    async with in_transaction():
        claimed = await RefreshToken.filter(digest=digest, used_at=None).update(used_at=now)
        row = await RefreshToken.get_or_none(digest=digest).select_related("session__user")
        if row is None:
            issued = None
        elif not claimed:
            replayed = await _end_sessions(Session.filter(id=row.session.id), "refresh_token_reused", now)
            issued = None
        else:
            session, user = row.session, row.session.user
            if session.revoked_at is not None or session.expires_at <= now or not user.is_active:
                issued = None
            else:
                session.last_used_at = now
                session.expires_at = now + timedelta(seconds=settings.REFRESH_TOKEN_LIFETIME)
                session.ip_address = client.ip_address
                await session.save(update_fields=["last_used_at", "expires_at", "ip_address"])
                refresh = tokens.new_refresh_token()
                await RefreshToken.create(session=session, digest=tokens.refresh_token_digest(refresh))
                issued = _issue(user, str(session.id), refresh, now)
    # After the transaction, so that ending a replayed session is committed, not rolled back.
    if replayed:
        authcache.invalidate()
    if issued is None:
        raise InvalidRefreshToken()
    return issued


async def _end_sessions(sessions, reason: str, now: datetime) -> int:
    return await sessions.filter(revoked_at=None).update(revoked_at=now, revoked_reason=reason)


async def logout(session_id: str) -> None:
    """End one session: its refresh token and every access token it issued are refused from now on."""
    await _end_sessions(Session.filter(id=session_id), "logout", _now())
    authcache.invalidate()


async def _end_user_sessions(user_id: int, reason: str, *, except_session_id: str | None = None) -> int:
    # No invalidate() here: callers run this inside a transaction and invalidate after the commit.
    sessions = Session.filter(user_id=user_id)
    if except_session_id is not None:
        sessions = sessions.exclude(id=except_session_id)
    return await _end_sessions(sessions, reason, _now())


async def end_user_sessions(user_id: int, reason: str) -> int:
    """End every session of a user at once (staff tools, manage.py); returns how many were live."""
    ended = await _end_user_sessions(user_id, reason)
    authcache.invalidate()
    return ended


async def session_user(user_id: int, session_id: str) -> authcache.AuthenticatedUser | None:
    """The user behind an access token, if its session is live and the account active.

    One indexed join, run when this worker has no live entry for the session (authcache.py).
    """
    session = (
        await Session.filter(
            id=session_id, user_id=user_id, revoked_at=None, expires_at__gt=_now(), user__is_active=True
        )
        .select_related("user")
        .first()
    )
    if session is None:
        return None
    user = session.user
    return authcache.AuthenticatedUser(
        id=user.id,
        username=user.username,
        email=user.email,
        is_staff=user.is_staff,
        is_superuser=user.is_superuser,
        session_id=session_id,
        session_expires_at=session.expires_at.timestamp(),
    )


PROFILE_FIELDS = ("id", "username", "email", "is_active", "is_staff", "date_joined", "last_login")
_profile_sql: dict[str, str] = {}


async def user_profile(user_id: int) -> dict | None:
    """The public fields of an account, fresh from the database (GET /user/me, on every call).

    Tortoise writes the SQL once per database dialect; running it directly skips building a queryset
    and a model, which cost several times more than the primary-key look-up itself. On SQLite it runs
    on a read-only connection of its own (apps/core/database.py explains why).
    """
    connection = connections.get("default")
    dialect = connection.capabilities.dialect
    sql = _profile_sql.get(dialect)
    if sql is None:
        sql = _profile_sql[dialect] = User.filter(id=0).values(*PROFILE_FIELDS).sql(params_inline=False)
    if dialect == "sqlite" and connection.filename != ":memory:":
        profile = await database.sqlite_reader(connection.filename).fetch_one(sql, [user_id])
    else:
        _, rows = await connection.execute_query(sql, [user_id])
        profile = dict(rows[0]) if rows else None
    if profile is None:
        return None
    for name in ("date_joined", "last_login"):  # SQLite hands back ISO strings, asyncpg datetimes
        if isinstance(profile[name], str):
            profile[name] = datetime.fromisoformat(profile[name])
    return profile


async def update_profile(user: User, *, username: str | None = None, email: str | None = None) -> User:
    """Change username and/or email.

    Raises:
        Conflict: 409, the new username or email belongs to another account.
    """
    changed = []
    if username is not None and username != user.username:
        user.username, user.username_key = username, username_key(username)
        changed += ["username", "username_key"]
    if email is not None and normalize_email(email) != user.email:
        user.email = normalize_email(email)
        changed.append("email")
    if changed:
        try:
            await user.save(update_fields=changed)
        except IntegrityError:
            # name only what changed: the account's own, unchanged email is not a conflict
            raise await _conflict_for(
                username if "username" in changed else None, email if "email" in changed else None
            ) from None
        authcache.invalidate()  # request.user shows username and email
    return user


async def change_password(
    user: User, current_password: str, new_password: str, *, keep_session_id: str
) -> None:
    """Set a new password and end every other session of the user.

    Raises:
        ValidationFailed: 422, `current_password` is wrong.
    """
    matches, _ = await passwords.verify_password(
        current_password, user.password, account=user.id, upgrade=False
    )
    if not matches:
        raise wrong_password("current_password")
    new_hash = await passwords.hash_password(new_password)
    async with in_transaction():
        await User.filter(id=user.id).update(password=new_hash)
        await _end_user_sessions(user.id, "password_changed", except_session_id=keep_session_id)
    authcache.invalidate()
    user.password = new_hash


async def deactivate(user_id: int) -> None:
    """Lock an account out: it cannot log in, and its sessions end at once (for staff tools)."""
    async with in_transaction():
        await User.filter(id=user_id).update(is_active=False)
        await _end_user_sessions(user_id, "deactivated")
    authcache.invalidate()


async def list_users(
    *, search: str | None, is_active: bool | None, is_staff: bool | None, page: int, page_size: int
) -> tuple[int, list[User]]:
    """One page of accounts, oldest first, and how many match in all."""
    users = User.all()
    if search:
        users = users.filter(Q(username_key__contains=search.casefold()) | Q(email__contains=search.lower()))
    if is_active is not None:
        users = users.filter(is_active=is_active)
    if is_staff is not None:
        users = users.filter(is_staff=is_staff)
    count = await users.count()
    return count, await users.order_by("id").offset((page - 1) * page_size).limit(page_size)


async def set_flags(
    user: User,
    *,
    is_active: bool | None = None,
    is_staff: bool | None = None,
    is_superuser: bool | None = None,
) -> User:
    """Change an account's flags (staff tools). Deactivation ends every session at once; any change
    reaches request.user in every worker at once."""
    changes = {
        name: value
        for name, value in (("is_active", is_active), ("is_staff", is_staff), ("is_superuser", is_superuser))
        if value is not None and value != getattr(user, name)
    }
    if not changes:
        return user
    async with in_transaction():
        await User.filter(id=user.id).update(**changes)
        if changes.get("is_active") is False:
            await _end_user_sessions(user.id, "deactivated")
    authcache.invalidate()
    for name, value in changes.items():
        setattr(user, name, value)
    return user


async def delete_user(user_id: int) -> None:
    """Delete an account (staff tools); its sessions go with it, its tokens die at once."""
    await User.filter(id=user_id).delete()
    authcache.invalidate()


async def delete_account(user: User, password: str) -> None:
    """Delete the account; its sessions go with it (ON DELETE CASCADE), so its tokens die at once.

    Raises:
        ValidationFailed: 422, `password` is wrong.
    """
    matches, _ = await passwords.verify_password(password, user.password, account=user.id, upgrade=False)
    if not matches:
        raise wrong_password("password")
    await User.filter(id=user.id).delete()
    authcache.invalidate()

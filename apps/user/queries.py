"""The read side: what views and the authenticator read, never writing. Writes live in accounts.py and
sessions.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tortoise.expressions import Q

import settings
from apps.user.authentication import AuthenticatedUser
from apps.user.exceptions import UserNotFound
from apps.user.models import MAX_USER_ID, Event, Session, User


async def session_user(user_id: int, session_id: str) -> AuthenticatedUser | None:
    """The user behind an access token, if its session is live and the account active.

    One indexed join, run when this worker has no live entry for the session (authentication.py).
    """
    session = (
        await Session.filter(
            id=session_id,
            user_id=user_id,
            revoked_at=None,
            expires_at__gt=datetime.now(UTC),
            user__is_active=True,
        )
        .select_related("user")
        .first()
    )
    if session is None:
        return None
    user = session.user
    return AuthenticatedUser(
        id=user.id,
        username=user.username,
        email=user.email,
        is_staff=user.is_staff,
        is_superuser=user.is_superuser,
        email_verified=user.email_verified,
        pending_email=user.pending_email,
        has_usable_password=user.has_usable_password,
        date_joined=user.date_joined,
        last_login=user.last_login,
        session_id=session_id,
        session_expires_at=session.expires_at.timestamp(),
    )


async def get_user(user_id: int) -> User:
    """Raises:
    UserNotFound: no account has this id.
    """
    user = await User.get_or_none(id=user_id) if 0 < user_id <= MAX_USER_ID else None
    if user is None:
        raise UserNotFound()
    return user


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


async def live_sessions(user_id: int) -> list[Session]:
    """The user's sessions that are neither ended nor expired (SESSION_MAX_LIFETIME as it is now
    included), newest first."""
    now = datetime.now(UTC)
    oldest = now - timedelta(seconds=settings.SESSION_MAX_LIFETIME)
    return (
        await Session.filter(user_id=user_id, revoked_at=None, expires_at__gt=now, created_at__gt=oldest)
        .order_by("-created_at", "-id")
        .all()
    )


async def events(
    *, user_id: int | None = None, type: str | None = None, page: int, page_size: int
) -> tuple[int, list[Event]]:
    """One page of history, newest first, and how many events match in all."""
    found = Event.all()
    if user_id is not None:
        found = found.filter(user_id=user_id)
    if type is not None:
        found = found.filter(type=type)
    count = await found.count()
    return count, await found.order_by("-at", "-id").offset((page - 1) * page_size).limit(page_size)

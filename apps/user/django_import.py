"""Bring a Django project's users over, passwords included (`manage.py import_django_users`).

Reads `auth_user` from the Django project's database (SQLite or PostgreSQL) or from the output of
`manage.py dumpdata auth.user`, and creates or updates one account per Django user, matched on the
normalised username, so re-running updates and never duplicates. Django's password hashes are
stored as they are: every hasher in Django's default PASSWORD_HASHERS verifies (passwords.py) and
the first successful login re-hashes to argon2id.

Nothing is merged and nothing is dropped silently: Django users whose usernames or emails become
equal after normalisation (Django compares them case-sensitively, this service does not) are all
skipped and reported by id, as are users without a valid email; the summary counts every user.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
from pydantic import TypeAdapter, ValidationError

from apps.user import accounts, passwords
from apps.user.models import User, normalize_email, normalize_username, username_key
from apps.user.schemas import Email, Username

FIELDS = (
    "id",
    "username",
    "email",
    "password",
    "is_active",
    "is_staff",
    "is_superuser",
    "date_joined",
    "last_login",
)
_username = TypeAdapter(Username)
_email = TypeAdapter(Email)


@dataclass
class DjangoUser:
    id: int
    username: str
    email: str
    password: str
    is_active: bool
    is_staff: bool
    is_superuser: bool
    date_joined: datetime
    last_login: datetime | None


@dataclass
class Report:
    imported: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # Django id -> reason

    @property
    def total(self) -> int:
        return len(self.imported) + len(self.updated) + len(self.unchanged) + len(self.skipped)

    def summary(self, dry_run: bool) -> str:
        verb = "would be " if dry_run else ""
        counts = (
            f"{len(self.imported)} {verb}imported",
            f"{len(self.updated)} {verb}updated",
            f"{len(self.unchanged)} unchanged",
            f"{len(self.skipped)} skipped",
        )
        lines = [f"{self.total} Django users: {', '.join(counts)}."]
        lines += [
            f"  skipped Django user id {django_id}: {reason}"
            for django_id, reason in sorted(self.skipped.items())
        ]
        return "\n".join(lines)


def _datetime(value) -> datetime | None:
    """Django stores naive UTC on SQLite (USE_TZ) and aware values on PostgreSQL; dumpdata writes ISO 8601."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _row(values: dict) -> DjangoUser:
    return DjangoUser(
        id=int(values["id"]),
        username=values["username"] or "",
        email=values["email"] or "",
        password=values["password"] or "",
        is_active=bool(values["is_active"]),
        is_staff=bool(values["is_staff"]),
        is_superuser=bool(values["is_superuser"]),
        date_joined=_datetime(values["date_joined"]) or datetime.now(UTC),
        last_login=_datetime(values["last_login"]),
    )


QUERY = f"SELECT {', '.join(FIELDS)} FROM auth_user ORDER BY id"  # noqa: S608 (constant column list)


def _read_sqlite(path: str) -> list[DjangoUser]:
    if not Path(path).exists():
        raise FileNotFoundError(f"no SQLite database at {path}")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:  # read-only: never touch theirs
        connection.row_factory = sqlite3.Row
        return [_row(dict(row)) for row in connection.execute(QUERY)]


async def read_database(database_url: str) -> list[DjangoUser]:
    """auth_user from a Django database: sqlite:///path/db.sqlite3 or postgres://user@host:5432/db."""
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        return await asyncio.to_thread(_read_sqlite, database_url.split("://", 1)[1])
    if parts.scheme in {"postgres", "postgresql"}:
        connection = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
        try:
            return [_row(dict(row)) for row in await connection.fetch(QUERY)]
        finally:
            await connection.close()
    raise ValueError("the Django database URL must start with sqlite:// or postgres://")


def read_dumpdata(path: Path) -> list[DjangoUser]:
    """The JSON of `manage.py dumpdata auth.user` (other models in the file are ignored)."""
    records = json.loads(path.read_text())
    users = [
        _row({"id": record["pk"], **record["fields"]})
        for record in records
        if record.get("model") == "auth.user"
    ]
    return sorted(users, key=lambda u: u.id)


def _differs(current, new) -> bool:
    # dumpdata keeps milliseconds only: a timestamp within one is the same timestamp
    if isinstance(current, datetime) and isinstance(new, datetime):
        return abs(current - new) >= timedelta(milliseconds=1)
    return current != new


def _problem(user: DjangoUser) -> str | None:
    try:
        _username.validate_python(user.username)
    except ValidationError:
        return f"username {user.username!r} is not valid here (letters, digits and @.+-_, up to 150)"
    if not user.email.strip():
        return "no email address (this service logs in by email or username and needs both)"
    try:
        _email.validate_python(user.email)
    except ValidationError:
        return f"email {user.email!r} is not a valid address"
    return None


def _clashes(users: list[DjangoUser]) -> dict[int, str]:
    """Django users that would become one account here: every member of each group, by id."""
    by_username, by_email = defaultdict(list), defaultdict(list)
    for user in users:
        by_username[username_key(user.username)].append(user.id)
        by_email[normalize_email(user.email)].append(user.id)
    reasons: dict[int, str] = {}
    for what, groups in (("username", by_username), ("email", by_email)):
        for ids in groups.values():
            if len(ids) > 1:
                for django_id in ids:
                    others = ", ".join(str(i) for i in ids if i != django_id)
                    reasons.setdefault(
                        django_id,
                        f"{what} equals that of Django user id {others} after normalisation (not merged)",
                    )
    return reasons


async def import_users(users: list[DjangoUser], *, dry_run: bool = False) -> Report:
    """Decide, per Django user, to create, update, leave or skip; then write it all in one transaction."""
    report = Report()
    valid = []
    for user in users:
        reason = _problem(user)
        if reason:
            report.skipped[user.id] = reason
        else:
            valid.append(user)
    report.skipped.update(_clashes(valid))

    creates: list[dict] = []
    updates: list[tuple[int, dict]] = []
    for user in valid:
        if user.id in report.skipped:
            continue
        username = normalize_username(user.username)
        email = normalize_email(user.email)
        existing = await User.get_or_none(username_key=username_key(username))
        email_owner = await User.get_or_none(email=email)
        if email_owner is not None and (existing is None or email_owner.id != existing.id):
            report.skipped[user.id] = f"email {email} belongs to another account here (id {email_owner.id})"
            continue
        values = {
            "username": username,
            "email": email,
            "is_active": user.is_active,
            "is_staff": user.is_staff,
            "is_superuser": user.is_superuser,
            "date_joined": user.date_joined,
            "last_login": user.last_login,
        }
        if existing is None:
            report.imported.append(user.id)
            creates.append({**values, "username_key": username_key(username), "password": user.password})
            continue
        # A hash already upgraded here comes from a login here: newer than Django's, so it stays;
        # likewise a later login here is not rolled back to Django's last_login.
        if not passwords.is_current(existing.password):
            values["password"] = user.password
        if existing.last_login and (user.last_login is None or existing.last_login >= user.last_login):
            del values["last_login"]
        changed = {name: value for name, value in values.items() if _differs(getattr(existing, name), value)}
        if changed:
            report.updated.append(user.id)
            updates.append((existing.id, changed))
        else:
            report.unchanged.append(user.id)
    if not dry_run:
        await accounts.import_accounts(creates, updates)
    return report

"""Bring a Django project's users over, passwords included (`manage.py import_django_users`).

Reads `auth_user` from the Django project's database (SQLite or PostgreSQL) or from the output of
`manage.py dumpdata auth.user`, and creates or updates one account per Django user, matched on the
normalised username, so re-running updates and never duplicates. Django's password hashes are
stored as they are: every hasher in Django's default PASSWORD_HASHERS verifies (passwords.py) and
the first successful login re-hashes to argon2id.

Nothing is merged and nothing is dropped silently: Django users whose usernames or emails become
equal after normalisation (Django compares them case-sensitively, this service does not) are all
skipped and reported by id, as are users without a valid email; the summary counts every user.

A hash this service cannot verify (Django's MD5, unsalted MD5 and SHA1, crypt, plain bcrypt: hashers
outside Django's default PASSWORD_HASHERS) is not copied: the account is imported with an unusable
password and listed by id, username and hasher, so its owner must reset the password. Skipping it
instead would lose a real account and leave its username and email free for someone else to take.

Usernames that are look-alikes (usernames.py) of an account here or of a Django user with a lower id
are imported, since they are existing people with existing names, but without a skeleton: only the
first holder reserves it against new registrations (as migration 0003 does), and they are counted.

Verified emails come from django-allauth when the source has its `account_emailaddress` table (or,
in a dump, its `account.emailaddress` records): an account is imported verified when allauth has a
verified row of that user for the very address imported as its email, compared after normalisation;
another verified address of theirs proves nothing about this one. Without allauth, Django never
proved an address, so everyone comes over unverified. On re-import see `_email_verified`.

Large user bases: the source is read twice, in batches of BATCH_SIZE by id (keyset pagination on the
Django database, a streaming parse of the dumpdata file). The first pass keeps only 16-byte digests
of each normalised username and email, to find the users Django has as two and this service would
have as one; the second decides and writes batch by batch, each batch in its own transaction
(accounts.import_accounts), printing progress as it goes. Memory is a few dozen bytes per user plus
one batch. allauth's verified addresses are read with each batch, by the batch's id range; a dump's
are gathered once beforehand, as 16-byte digests, since they can sit anywhere in the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

import asyncpg
from pydantic import TypeAdapter, ValidationError

from apps.user import accounts, passwords, usernames
from apps.user.models import (
    UNUSABLE_PASSWORD_PREFIX,
    User,
    normalize_email,
    normalize_username,
    username_key,
)
from apps.user.schemas import Email, Username

BATCH_SIZE = 1000
# Django's default PASSWORD_HASHERS: the ones passwords.py verifies (and upgrades at the first login)
VERIFIABLE_HASHERS = frozenset({"pbkdf2_sha256", "pbkdf2_sha1", "argon2", "bcrypt_sha256", "scrypt"})
_UNSALTED_MD5 = re.compile(r"[0-9a-f]{32}\Z")

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
    # allauth verified the address imported as the account's email (filled in by the source)
    email_verified: bool = False


@dataclass
class Report:
    imported: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # Django id -> reason
    unverifiable: dict[int, str] = field(default_factory=dict)  # Django id -> "username (hasher)"
    look_alikes: int = 0  # imported without a skeleton of their own: see the module's docstring
    has_email_addresses: bool = False  # the source has allauth's email addresses
    imported_verified: int = 0
    updated_to_verified: int = 0

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
        if self.unverifiable:
            lines.append(
                f"{len(self.unverifiable)} {verb}imported with an unusable password: their hashers cannot be"
                " verified here, so they must reset their passwords"
            )
            lines += [
                f"  Django user id {django_id}: {who}" for django_id, who in sorted(self.unverifiable.items())
            ]
        if not self.has_email_addresses:
            lines.append(
                "No allauth email addresses (account_emailaddress) in the source: no email"
                f" {verb or 'is '}imported as verified"
            )
        else:
            lines.append(
                f"{self.imported_verified} {verb}imported and {self.updated_to_verified} {verb}updated"
                " with their email verified (allauth)"
            )
        if self.look_alikes:
            lines.append(
                f"{self.look_alikes} {verb}imported with usernames that look like another account's"
                " (they keep them; new look-alikes of the older account stay refused)"
            )
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


QUERY = f"SELECT {', '.join(FIELDS)} FROM auth_user WHERE id > $1 ORDER BY id LIMIT $2"  # noqa: S608
# allauth's verified addresses of one batch of users (ids $1 to $2: keyset batches are id ranges)
VERIFIED_ADDRESSES_QUERY = (
    "SELECT user_id, email FROM account_emailaddress WHERE verified AND user_id BETWEEN $1 AND $2"
)


def _address_key(user: int | list[str], email: str) -> bytes:
    """One of allauth's verified addresses as 16 bytes: the Django user by id, or by natural key
    ([username], which `dumpdata --natural-foreign` writes), and the address normalised, as the
    account's email is, so that allauth's spelling and auth_user's compare equal."""
    return _digest(f"{json.dumps(user)} {email}")


def _address_keys(rows) -> set[bytes]:
    """The keys of the rows of VERIFIED_ADDRESSES_QUERY."""
    return {_address_key(row["user_id"], normalize_email(row["email"])) for row in rows}


def _mark_verified(batch: list[DjangoUser], verified_addresses: set[bytes]) -> None:
    if not verified_addresses:
        return
    for user in batch:
        email = normalize_email(user.email)
        user.email_verified = (
            _address_key(user.id, email) in verified_addresses
            or _address_key([user.username], email) in verified_addresses
        )


def sqlite_path(database_url: str) -> str:
    """The file of a sqlite:// URL, absolute with three slashes or four (Django's and dj-database-url's
    habit: sqlite:////abs/path), relative with two (sqlite://db.sqlite3)."""
    path = unquote(database_url.split("://", 1)[1])
    return "/" + path.lstrip("/") if path.startswith("/") else path


def _hasher(stored: str) -> str:
    """The name of the Django hasher that made `stored` (its algorithm prefix), as Django identifies it."""
    if _UNSALTED_MD5.match(stored):
        return "unsalted_md5"
    algorithm, _, rest = stored.partition("$")
    if algorithm in {"md5", "sha1"} and rest.startswith("$"):
        return f"unsalted_{algorithm}"
    return algorithm if rest else "unknown"


def _verifiable(stored: str) -> bool:
    """Whether a login here can check a password against `stored`; unusable passwords (Django's `!…`)
    count as verifiable, as they are copied as they are and never log in anyway."""
    return stored.startswith(UNUSABLE_PASSWORD_PREFIX) or _hasher(stored) in VERIFIABLE_HASHERS


class Source(Protocol):
    """Django's users in id order, read in batches, each user's `email_verified` read from allauth's
    addresses, if `has_email_addresses` (known once `batches` has begun); each call to `batches`
    reads them anew. The survey reads the addresses too, though it has no use for them: a source
    whose addresses cannot be read then fails before anything is written."""

    has_email_addresses: bool

    def batches(self, size: int) -> AsyncIterator[list[DjangoUser]]: ...


class SQLiteSource(Source):
    def __init__(self, path: str) -> None:
        self.path = path
        self.has_email_addresses = False

    def _connect(self) -> sqlite3.Connection:
        if not Path(self.path).exists():
            raise FileNotFoundError(f"no SQLite database at {self.path}")
        # read-only: never touch theirs
        connection = sqlite3.connect(f"file:{quote(self.path)}?mode=ro", uri=True, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        return connection

    async def batches(self, size: int) -> AsyncIterator[list[DjangoUser]]:
        connection = await asyncio.to_thread(self._connect)
        query = QUERY.replace("$1", "?").replace("$2", "?")
        addresses_query = VERIFIED_ADDRESSES_QUERY.replace("$1", "?").replace("$2", "?")
        try:
            self.has_email_addresses = bool(
                await asyncio.to_thread(
                    _fetch,
                    connection,
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'account_emailaddress'",
                )
            )
            last_id = 0
            while rows := await asyncio.to_thread(_fetch, connection, query, last_id, size):
                batch = [_row(dict(row)) for row in rows]
                if self.has_email_addresses:
                    addresses = await asyncio.to_thread(
                        _fetch, connection, addresses_query, batch[0].id, batch[-1].id
                    )
                    _mark_verified(batch, _address_keys(addresses))
                yield batch
                last_id = rows[-1]["id"]
        finally:
            connection.close()


def _fetch(connection: sqlite3.Connection, query: str, *parameters) -> list[sqlite3.Row]:
    return connection.execute(query, parameters).fetchall()


class PostgresSource(Source):
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url.replace("postgres://", "postgresql://", 1)
        self.has_email_addresses = False

    async def batches(self, size: int) -> AsyncIterator[list[DjangoUser]]:
        connection = await asyncpg.connect(self.database_url)
        try:
            # to_regclass finds the table as the unqualified name in the query will: through search_path
            self.has_email_addresses = await connection.fetchval(
                "SELECT to_regclass('account_emailaddress') IS NOT NULL"
            )
            last_id = 0
            while rows := await connection.fetch(QUERY, last_id, size):
                batch = [_row(dict(row)) for row in rows]
                if self.has_email_addresses:
                    addresses = await connection.fetch(VERIFIED_ADDRESSES_QUERY, batch[0].id, batch[-1].id)
                    _mark_verified(batch, _address_keys(addresses))
                yield batch
                last_id = rows[-1]["id"]
        finally:
            await connection.close()


class DumpdataSource(Source):
    """The JSON of `manage.py dumpdata auth.user` (with `account.emailaddress`, allauth's verified
    addresses; other models in the file are ignored), parsed as a stream: one record in memory at a
    time, however large the file. The verified addresses, which may come before or after their users,
    are gathered by a pass of their own, once, as digests (_address_key)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.has_email_addresses = False
        self._verified_addresses: set[bytes] | None = None

    def _records(self) -> Iterator[dict]:
        decoder = json.JSONDecoder()
        with self.path.open(encoding="utf-8") as file:
            buffer, position, started = "", 0, False
            while True:
                while position < len(buffer) and buffer[position] in " \t\r\n,":
                    position += 1
                if not started and position < len(buffer):
                    if buffer[position] != "[":
                        raise ValueError(f"{self.path} is not a JSON list (manage.py dumpdata auth.user)")
                    started, position = True, position + 1
                    continue
                if position < len(buffer) and buffer[position] == "]":
                    return
                try:
                    record, end = decoder.raw_decode(buffer, position)
                except json.JSONDecodeError:
                    chunk = file.read(1 << 20)
                    if not chunk:
                        raise ValueError(f"{self.path} ends before its JSON list does") from None
                    buffer, position = buffer[position:] + chunk, 0
                    continue
                position = end
                if not isinstance(record, dict):
                    raise ValueError(f"{self.path} holds something other than dumpdata records")
                yield record

    def _gather_verified_addresses(self) -> set[bytes]:
        verified = set()
        for record in self._records():
            if record.get("model") == "account.emailaddress":
                self.has_email_addresses = True
                address = record["fields"]
                if address["verified"]:
                    verified.add(_address_key(address["user"], normalize_email(address["email"])))
        return verified

    async def batches(self, size: int) -> AsyncIterator[list[DjangoUser]]:
        if self._verified_addresses is None:
            self._verified_addresses = await asyncio.to_thread(self._gather_verified_addresses)
        records = await asyncio.to_thread(self._records)
        while True:
            batch = await asyncio.to_thread(_take_users, records, size)
            if not batch:
                return
            _mark_verified(batch, self._verified_addresses)
            yield batch


def _take_users(records: Iterator[dict], size: int) -> list[DjangoUser]:
    batch = []
    for record in records:
        if record.get("model") == "auth.user":
            batch.append(_row({"id": record["pk"], **record["fields"]}))
            if len(batch) == size:
                break
    return batch


def source(*, database_url: str | None = None, json_path: str | None = None) -> Source:
    """Where the Django users are: sqlite:///path/db.sqlite3 (or ////), postgres://user@host:5432/db,
    or a dumpdata file.

    Raises:
        ValueError: a database URL of another kind.
    """
    if json_path is not None:
        return DumpdataSource(Path(json_path))
    scheme = urlsplit(database_url or "").scheme
    if scheme == "sqlite":
        return SQLiteSource(sqlite_path(database_url or ""))
    if scheme in {"postgres", "postgresql"}:
        return PostgresSource(database_url or "")
    raise ValueError("the Django database URL must start with sqlite:// or postgres://")


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


def _digest(value: str) -> bytes:
    return hashlib.blake2b(value.encode(), digest_size=16).digest()


@dataclass
class Survey:
    """What the first pass learns: how many users, which are invalid, which would become one account."""

    total: int = 0
    skipped: dict[int, str] = field(default_factory=dict)


async def survey(source: Source) -> Survey:
    """Read every Django user once, keeping digests only, and find those to skip: invalid users, and
    every member of each group whose usernames or emails are equal after normalisation.

    Raises:
        OSError, ValueError, KeyError, asyncpg errors: the source cannot be read.
    """
    result = Survey()
    groups: dict[str, dict[bytes, int | list[int]]] = {"username": {}, "email": {}}
    async for batch in source.batches(BATCH_SIZE):
        for user in batch:
            result.total += 1
            reason = _problem(user)
            if reason:
                result.skipped[user.id] = reason
                continue
            for what, key in (
                ("username", username_key(user.username)),
                ("email", normalize_email(user.email)),
            ):
                ids = groups[what].setdefault(_digest(key), user.id)
                if ids != user.id:
                    if isinstance(ids, int):
                        ids = groups[what][_digest(key)] = [ids]
                    ids.append(user.id)
    for what in ("username", "email"):
        for ids in groups[what].values():
            if isinstance(ids, list):
                for django_id in ids:
                    others = ", ".join(str(i) for i in ids if i != django_id)
                    result.skipped.setdefault(
                        django_id,
                        f"{what} equals that of Django user id {others} after normalisation (not merged)",
                    )
    return result


async def import_users(
    source: Source,
    plan: Survey,
    *,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Decide, per Django user, to create, update, leave or skip; write batch by batch, each batch in
    its own transaction; call `progress(done, total)` after each batch."""
    report = Report(skipped=dict(plan.skipped))
    done = 0
    async for batch in source.batches(BATCH_SIZE):
        creates, updates = await _decide(batch, report)
        if not dry_run:
            await accounts.import_accounts(creates, updates)
        done += len(batch)
        if progress is not None:
            progress(done, plan.total)
    report.has_email_addresses = source.has_email_addresses
    return report


def _email_verified(user: DjangoUser, current: User, email: str) -> bool:
    """An updated account's email_verified. Verification is knowledge about one address: allauth can
    add it, and an address that stays the account's keeps it whatever the source says, since a link
    used here is more recent than the source (as a hash upgraded or a login made here is) and a
    source without allauth knows nothing either way; re-importing must not lock people out under
    EMAIL_VERIFICATION=mandatory. A new address is verified only if allauth verified it. To unverify
    an address, do it here."""
    return user.email_verified or (current.email_verified and current.email == email)


async def _decide(batch: list[DjangoUser], report: Report) -> tuple[list[dict], list[tuple[int, dict]]]:
    """The creates and updates of one batch, with three queries for the whole batch."""
    users = [user for user in batch if user.id not in report.skipped]
    keys = {user.id: username_key(user.username) for user in users}
    emails = {user.id: normalize_email(user.email) for user in users}
    skeletons = {user.id: usernames.username_skeleton(user.username) for user in users}
    existing = {u.username_key: u for u in await User.filter(username_key__in=list(keys.values()))}
    email_owners = {
        u.email: u.id for u in await User.filter(email__in=list(emails.values())).only("id", "email")
    }
    held = {
        u.username_skeleton
        for u in await User.filter(username_skeleton__in=list(skeletons.values())).only(
            "id", "username_skeleton"
        )
    }

    creates: list[dict] = []
    updates: list[tuple[int, dict]] = []
    for user in users:
        username, email = normalize_username(user.username), emails[user.id]
        current = existing.get(keys[user.id])
        owner = email_owners.get(email)
        if owner is not None and (current is None or owner != current.id):
            report.skipped[user.id] = f"email {email} belongs to another account here (id {owner})"
            continue
        password = user.password
        if not _verifiable(password):
            report.unverifiable[user.id] = f"{username} ({_hasher(password)})"
            password = UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(30)
        values = {
            "username": username,
            "email": email,
            "is_active": user.is_active,
            "is_staff": user.is_staff,
            "is_superuser": user.is_superuser,
            "date_joined": user.date_joined,
            "last_login": user.last_login,
            "email_verified": user.email_verified,
        }
        if current is None:
            report.imported.append(user.id)
            report.imported_verified += user.email_verified
            skeleton = skeletons[user.id]
            if skeleton in held:  # a look-alike of an account here or of an earlier Django user
                report.look_alikes += 1
                skeleton = None
            else:
                held.add(skeleton)
            creates.append(
                {**values, "username_key": keys[user.id], "username_skeleton": skeleton, "password": password}
            )
            continue
        # A hash already upgraded here comes from a login here: newer than Django's, so it stays;
        # likewise a later login here is not rolled back to Django's last_login. An unverifiable hash
        # already made unusable here stays as it is (a new random one would be a change every run).
        unusable_already = user.id in report.unverifiable and current.password.startswith(
            UNUSABLE_PASSWORD_PREFIX
        )
        if not passwords.is_current(current.password) and not unusable_already:
            values["password"] = password
        if current.last_login and (user.last_login is None or current.last_login >= user.last_login):
            del values["last_login"]
        values["email_verified"] = _email_verified(user, current, email)
        changed = {name: value for name, value in values.items() if _differs(getattr(current, name), value)}
        if changed:
            report.updated.append(user.id)
            report.updated_to_verified += changed.get("email_verified") is True
            updates.append((current.id, changed))
        else:
            report.unchanged.append(user.id)
    return creates, updates

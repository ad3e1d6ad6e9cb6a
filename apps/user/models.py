"""Accounts and their sessions.

`User` carries Django's auth_user fields so a Django user base maps one to one. Uniqueness is
case-insensitive after normalisation and enforced by unique indexes, so concurrent requests cannot
create twins: emails are stored trimmed and lower-cased; usernames keep the spelling the user chose
(NFKC-normalised) beside a case-folded `username_key` that carries the unique index.

A `Session` is one login: the access tokens it issues name it (`sid`), and ending it refuses them at
once. Its refresh tokens form a rotation chain of `RefreshToken` rows, stored only as SHA-256 digests.
"""

from __future__ import annotations

import unicodedata
import uuid

from tortoise import fields
from tortoise.models import Model


def normalize_username(username: str) -> str:
    """The stored spelling: NFKC, so look-alike compatibility characters collapse (Django does the same)."""
    return unicodedata.normalize("NFKC", username).strip()


def username_key(username: str) -> str:
    """The comparison form behind the unique index: NFKC then case-folded (so 'Straße' == 'STRASSE')."""
    return unicodedata.normalize("NFKC", normalize_username(username).casefold())


def normalize_email(email: str) -> str:
    """Trimmed and lower-cased, whole address: two spellings of one mailbox are one account."""
    return email.strip().lower()


class User(Model):
    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=150)
    # case folding can lengthen a name (ß -> ss, up to 3 characters for 1): room for 150 of the worst kind
    username_key = fields.CharField(max_length=450, unique=True)
    email = fields.CharField(max_length=254, unique=True)
    password = fields.CharField(max_length=255)
    is_active = fields.BooleanField(default=True)
    is_staff = fields.BooleanField(default=False)
    is_superuser = fields.BooleanField(default=False)
    date_joined = fields.DatetimeField(auto_now_add=True)
    last_login = fields.DatetimeField(null=True)

    sessions: fields.ReverseRelation[Session]

    class Meta:
        table = "user_user"

    def __str__(self) -> str:
        return self.username


class Session(Model):
    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "user.User", related_name="sessions", on_delete=fields.CASCADE, db_index=True
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField()
    # Sliding: every refresh moves it forward by REFRESH_TOKEN_LIFETIME.
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    revoked_reason = fields.CharField(max_length=32, null=True)
    user_agent = fields.CharField(max_length=512, default="")
    ip_address = fields.CharField(max_length=45, null=True)

    refresh_tokens: fields.ReverseRelation[RefreshToken]

    class Meta:
        table = "user_session"


class RefreshToken(Model):
    id = fields.BigIntField(primary_key=True)
    session: fields.ForeignKeyRelation[Session] = fields.ForeignKeyField(
        "user.Session", related_name="refresh_tokens", on_delete=fields.CASCADE, db_index=True
    )
    # SHA-256 of the opaque token; the token itself is never stored.
    digest = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    # Set once, atomically, when the token is exchanged; a second exchange is a replay.
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "user_refresh_token"

"""Accounts and their sessions.

`User` carries Django's auth_user fields so a Django user base maps one to one. Uniqueness is
case-insensitive after normalisation and enforced by unique indexes, so concurrent requests cannot
create twins: emails are stored trimmed and lower-cased; usernames keep the spelling the user chose
(NFKC-normalised) beside a case-folded `username_key` that carries the unique index, and a
`username_skeleton` (usernames.py) whose unique index refuses look-alikes: "аdmin" with a Cyrillic а
beside "admin". It is NULL only for accounts that already had a look-alike before the rule came (the
oldest of them holds the skeleton; see migration 0003 and django_import.py).

A `Session` is one login: the access tokens it issues name it (`sid`), and ending it refuses them at
once. Its refresh tokens form a rotation chain of `RefreshToken` rows, stored only as SHA-256 digests.
"""

from __future__ import annotations

import unicodedata
import uuid

import email_validator
from tortoise import fields
from tortoise.models import Model


def normalize_username(username: str) -> str:
    """The stored spelling: NFKC, so look-alike compatibility characters collapse (Django does the same)."""
    return unicodedata.normalize("NFKC", username).strip()


def username_key(username: str) -> str:
    """The comparison form behind the unique index: NFKC then case-folded (so 'Straße' == 'STRASSE')."""
    return unicodedata.normalize("NFKC", normalize_username(username).casefold())


def normalize_email(email: str) -> str:
    """The stored form of an address, for registration, login and import alike: two spellings of one
    mailbox are one account.

    email-validator's normalisation (what pydantic's EmailStr stores): NFC, the domain in Unicode
    (so "ann@xn--bcher-kva.example" and "ann@bu\u0308cher.example" are "ann@bücher.example"), quotes
    dropped where not needed; then the whole address lower-cased. Something that is not an address
    is only trimmed and lower-cased: a login with it finds nobody, as it should.
    """
    email = email.strip()
    try:
        email = email_validator.validate_email(email, check_deliverability=False).normalized
    except email_validator.EmailNotValidError:
        pass
    return email.lower()


# The id column is an IntField (int4 on PostgreSQL): a larger number names nobody, and must not reach
# the SQL (asyncpg refuses it with an error, not an empty answer).
MAX_USER_ID = 2**31 - 1


class User(Model):
    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=150)
    # case folding can lengthen a name (ß -> ss, up to 3 characters for 1): room for 150 of the worst kind
    username_key = fields.CharField(max_length=450, unique=True)
    # SHA-256 of the TR39 skeleton (usernames.py): a skeleton can reach 3,150 bytes, beyond PostgreSQL's
    # B-tree limit. NULL: a look-alike of an older account that predates the rule (never for new names).
    username_skeleton = fields.CharField(max_length=64, unique=True, null=True)
    email = fields.CharField(max_length=254, unique=True)
    # The address was proven by a link mailed to it (links.py), or imported as verified from allauth.
    email_verified = fields.BooleanField(default=False, db_default=False)  # existing rows: unverified
    # An address asked for by POST /user/me/email: the account's email once its link is used. Not
    # unique: the unique index on `email` decides when the link is used.
    pending_email = fields.CharField(max_length=254, null=True)
    # When it was asked for: a verification link covers it, so a link for an address asked for earlier
    # (then replaced, then asked for again) does not come back to life.
    pending_email_at = fields.DatetimeField(null=True)
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

    @property
    def has_usable_password(self) -> bool:
        return has_usable_password(self.password)


UNUSABLE_PASSWORD_PREFIX = "!"  # noqa: S105 (a marker, not a password)


def has_usable_password(stored: str | None) -> bool:
    """Django's rule: no hash, or one starting with "!", is a password nobody can log in with (an
    account made without a password, or imported with a hasher this service cannot check)."""
    return bool(stored) and not stored.startswith(UNUSABLE_PASSWORD_PREFIX)


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
    # Exchanged by a browser (the cookie transport): the token that replaced it, encrypted under a key
    # derived from this token itself, so that only its holder can be given it again within the grace
    # window (sessions.rotate). NULL for every other token, which so never gets a grace.
    successor = fields.TextField(null=True)

    class Meta:
        table = "user_refresh_token"


class Event(Model):
    """One thing that happened to an account (the contract's event types), written in the same
    transaction as the change it records (a failed login, which changes nothing, just after it).
    Never a password, a token or a code: only what happened, when, and from which client. `user_id`
    is a plain column, not a foreign key, so the history of a deleted account stays for the staff
    (`EVENT_RETENTION_DAYS` prunes it)."""

    id = fields.BigIntField(primary_key=True)
    user_id = fields.IntField()
    # the staff member who made the change, when it was not the account's owner (or manage.py: null)
    actor_id = fields.IntField(null=True)
    type = fields.CharField(max_length=40)
    at = fields.DatetimeField(db_index=True)  # pruning
    ip_address = fields.CharField(max_length=45, null=True)
    user_agent = fields.CharField(max_length=512, default="")

    class Meta:
        table = "user_event"
        indexes = (("user_id", "at"),)  # one account's history, newest first


class TOTPDevice(Model):
    """An account's authenticator app (mfa.py), one per account, active once a code confirmed it.
    Until then a setup can be started over. The secret is stored encrypted (sealing.py)."""

    id = fields.BigIntField(primary_key=True)
    user: fields.OneToOneRelation[User] = fields.OneToOneField(
        "user.User", related_name="totp", on_delete=fields.CASCADE
    )
    secret = fields.TextField()  # sealed: never the base32 secret itself
    created_at = fields.DatetimeField()
    confirmed_at = fields.DatetimeField(null=True)
    # The last time step whose code was accepted: a code is accepted once, so only later steps pass
    # (one conditional UPDATE decides, on every worker and host).
    last_step = fields.BigIntField(null=True)

    class Meta:
        table = "user_totp_device"


class RecoveryCode(Model):
    """One of an account's ten single-use recovery codes, as an HMAC digest (mfa.py): a copy of the
    database alone cannot test guesses against them."""

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "user.User", related_name="recovery_codes", on_delete=fields.CASCADE, db_index=True
    )
    digest = fields.CharField(max_length=64)
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "user_recovery_code"


class Passkey(Model):
    """A WebAuthn credential (passkeys.py): a second factor, and a passwordless login when it is
    discoverable."""

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "user.User", related_name="passkeys", on_delete=fields.CASCADE, db_index=True
    )
    credential_id = fields.CharField(max_length=1400, unique=True)  # base64url of at most 1,023 bytes
    public_key = fields.BinaryField()  # COSE
    sign_count = fields.BigIntField(default=0)
    transports = fields.CharField(max_length=200, default="")  # comma-separated, as the browser said
    aaguid = fields.CharField(max_length=36, default="")
    backed_up = fields.BooleanField(default=False)
    name = fields.CharField(max_length=100)
    created_at = fields.DatetimeField()
    last_used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "user_passkey"


class WebAuthnChallenge(Model):
    """A challenge handed to a browser, found again by its digest in the answer's clientDataJSON and
    deleted by the one request that uses it (single use, on every worker and host). Bound to what
    asked for it: a session (registering a passkey, confirming a sensitive change), a login attempt
    (a passkey as second factor), or nothing (a passwordless login)."""

    digest = fields.CharField(max_length=64, primary_key=True)  # SHA-256 of the challenge
    purpose = fields.CharField(max_length=16)
    user_id = fields.IntField(null=True)
    session_id = fields.CharField(max_length=36, null=True)
    attempt = fields.CharField(max_length=64, null=True)  # the second-factor login attempt's digest
    expires_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "user_webauthn_challenge"

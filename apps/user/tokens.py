"""Access and refresh tokens: pure and synchronous, time injectable. PyJWT never leaks out of here.

Access token: a JWT signed under the pinned JWT_ALGORITHM (with SECRET_KEY, or JWT_PRIVATE_KEY: the
keys come from keys.py), bound to JWT_ISSUER and JWT_AUDIENCE, typed (`token_type: "access"`, header
`typ: at+jwt`, RFC 9068) so that no other JWT we might sign later is accepted in its place. It names
the user (`sub`) and the session (`sid`); its header names the signing key (`kid`), so that a
verifier, here or in another service reading the JWKS, picks the key instead of trying each.

Refresh token: 256 random bits, opaque; only its SHA-256 digest is stored (a slow hash buys nothing
against a token that cannot be guessed).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import settings
from apps.user import keys
from apps.user.models import MAX_USER_ID

ACCESS_TOKEN_TYPE = "access"  # noqa: S105 (a claim value, not a secret)
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "iss", "aud", "sid", "token_type"]


class TokenError(Exception):
    """The token cannot be used; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    session_id: str
    token_id: str
    expires_at: int


def issue_access_token(user_id: int, session_id: str, *, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    issued_at = int(now.timestamp())
    claims = {
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "sub": str(user_id),
        "sid": session_id,
        "jti": uuid.uuid4().hex,
        "iat": issued_at,
        "exp": issued_at + settings.ACCESS_TOKEN_LIFETIME,
        "token_type": ACCESS_TOKEN_TYPE,
    }
    ring = keys.key_ring()
    return jwt.encode(
        claims, ring.signing_key, algorithm=ring.algorithm, headers={"typ": "at+jwt", "kid": ring.kid}
    )


# RFC 9068 section 2.1; media types compare case-insensitively, and "application/" may be omitted
ACCESS_TOKEN_MEDIA_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# NumericDate claims: JSON integers (we only issue integers) between 1970 and 2**53, the largest a
# JavaScript client reads exactly; anything else (strings, booleans, floats, NaN, 10**400) is refused.
TIME_CLAIMS = ("exp", "iat", "nbf")
MAX_NUMERIC_DATE = 2**53
MALFORMED = "The access token is malformed or not issued by this service."
# What reading a hostile token can raise, PyJWT's errors and Python's (on a header or claim built to
# break a parser): each one a TokenError.
UNREADABLE = (jwt.InvalidTokenError, TypeError, ValueError, OverflowError, RecursionError)


def _valid_times(claims: dict) -> bool:
    for name in TIME_CLAIMS:
        value = claims.get(name, 0)
        if type(value) is not int or not 0 <= value < MAX_NUMERIC_DATE:  # bool is an int subclass
            return False
    return True


def _candidate_keys(token: str, ring: keys.KeyRing) -> tuple[keys.VerificationKey, ...]:
    """The key the token's kid names; every key when the kid is unknown or absent (tokens issued
    before kids, or forged). The kid only picks a key: the algorithm stays the pinned one."""
    kid = jwt.get_unverified_header(token).get("kid")
    named = ring.by_kid.get(kid) if isinstance(kid, str) else None
    return (named,) if named is not None else ring.verification_keys


def decode_access_token(token: str) -> AccessClaims:
    """Verify signature, algorithm, header type, issuer, audience, expiry and type.

    The key is the one the header's kid names, else each key newest first (SECRET_KEY then
    SECRET_KEY_FALLBACKS, or JWT_PRIVATE_KEY then JWT_PRIVATE_KEY_FALLBACKS) so keys can rotate.
    Only JWT_ALGORITHM is accepted, so a token cannot choose HMAC and have a public key used as its
    secret (algorithm confusion). Any failure (UNREADABLE) is a TokenError: a bad token must be a
    401, never a 500.

    Raises:
        TokenError: the token is not a valid, current access token of this service.
    """
    ring = keys.key_ring()
    decoded = None
    try:
        candidates = _candidate_keys(token, ring)
    except UNREADABLE as e:
        raise TokenError(MALFORMED) from e
    for candidate in candidates:
        try:
            decoded = jwt.decode_complete(
                token,
                candidate.key,
                algorithms=[ring.algorithm],
                audience=settings.JWT_AUDIENCE,
                issuer=settings.JWT_ISSUER,
                options={"require": REQUIRED_CLAIMS},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError as e:
            raise TokenError("The access token has expired.") from e
        except UNREADABLE as e:
            raise TokenError(MALFORMED) from e
    if decoded is None:
        raise TokenError(MALFORMED)
    header, claims = decoded["header"], decoded["payload"]
    # The header is checked after the signature: before it, nothing in it is worth believing.
    typ = header.get("typ")
    if not (isinstance(typ, str) and typ.lower() in ACCESS_TOKEN_MEDIA_TYPES):
        raise TokenError("This is not an access token (its header typ is not at+jwt).")
    if claims["token_type"] != ACCESS_TOKEN_TYPE:
        raise TokenError("This is not an access token.")
    if not _valid_times(claims):
        raise TokenError(MALFORMED)
    sub, sid, jti = claims["sub"], claims["sid"], claims["jti"]
    try:
        if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and isinstance(jti, str)):
            raise ValueError(sub)
        user_id = int(sub)
        if user_id > MAX_USER_ID:  # what the id column cannot hold must not reach the SQL
            raise ValueError(sub)
        session_id = str(uuid.UUID(sid))
    except (TypeError, ValueError, AttributeError) as e:
        raise TokenError(MALFORMED) from e
    return AccessClaims(user_id=user_id, session_id=session_id, token_id=jti, expires_at=claims["exp"])


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def _successor_box(refresh_token: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"authservice.refresh-successor").derive(
        refresh_token.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def seal_successor(spent: str, successor: str) -> str:
    """`successor`, readable only with the token it replaced (256 random bits: nobody else can derive
    the key, SECRET_KEY holders included)."""
    return _successor_box(spent).encrypt(successor.encode()).decode()


def open_successor(spent: str, sealed: str) -> str | None:
    try:
        return _successor_box(spent).decrypt(sealed.encode()).decode()
    except InvalidToken:
        return None


def refresh_token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

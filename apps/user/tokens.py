"""Access and refresh tokens: pure and synchronous, time injectable. PyJWT never leaks out of here.

Access token: a JWT signed with SECRET_KEY under the pinned JWT_ALGORITHM, bound to JWT_ISSUER and
JWT_AUDIENCE, typed (`token_type: "access"`, header `typ: at+jwt`, RFC 9068) so that no other JWT we
might sign later is accepted in its place. It names the user (`sub`) and the session (`sid`).

Refresh token: 256 random bits, opaque; only its SHA-256 digest is stored (a slow hash buys nothing
against a token that cannot be guessed).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

import settings

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
    return jwt.encode(
        claims, settings.SECRET_KEY, algorithm=settings.JWT_ALGORITHM, headers={"typ": "at+jwt"}
    )


def decode_access_token(token: str) -> AccessClaims:
    """Verify signature, algorithm, issuer, audience, expiry and type.

    Keys are tried newest first (SECRET_KEY, then SECRET_KEY_FALLBACKS) so keys can rotate.

    Raises:
        TokenError: the token is not a valid, current access token of this service.
    """
    claims = None
    for key in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS):
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[settings.JWT_ALGORITHM],
                audience=settings.JWT_AUDIENCE,
                issuer=settings.JWT_ISSUER,
                options={"require": REQUIRED_CLAIMS},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise TokenError("The access token has expired.") from None
        except jwt.InvalidTokenError:
            raise TokenError("The access token is malformed or not issued by this service.") from None
    if claims is None:
        raise TokenError("The access token is malformed or not issued by this service.")
    if claims["token_type"] != ACCESS_TOKEN_TYPE:
        raise TokenError("This is not an access token.")
    sub, sid = claims["sub"], claims["sid"]
    try:
        if not (isinstance(sub, str) and sub.isascii() and sub.isdigit()):
            raise ValueError(sub)
        session_id = str(uuid.UUID(sid))
    except (TypeError, ValueError, AttributeError):
        raise TokenError("The access token is malformed or not issued by this service.") from None
    return AccessClaims(
        user_id=int(sub), session_id=session_id, token_id=claims["jti"], expires_at=claims["exp"]
    )


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def refresh_token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

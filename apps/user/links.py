"""The tokens in mailed links: email verification and password reset.

Django's PasswordResetTokenGenerator design, not a stored digest: a token is the user id, the time it
was made, and an HMAC (SHA-256, a key derived from SECRET_KEY per purpose) over the account's state
that the link is about. Nothing is stored, so a copy of the database holds no live link; and the
link dies by itself the moment that state moves on, which is exactly the contract's "spent":

- a reset link covers the password hash, last_login, the email and is_active: using it (a new hash),
  a later password change, a later login and an email change spend it; it is refused while the
  account is inactive;
- a verification link covers the email, the pending new address and when it was asked for,
  email_verified and is_active: using it, requesting another change (even back to the same address),
  cancelling it (a password change or reset, a deactivation) or verifying by another link spends it.

Expiry is the time in the token against PASSWORD_RESET_TIMEOUT / EMAIL_VERIFICATION_TIMEOUT. Keys
rotate like access tokens: SECRET_KEY first, then SECRET_KEY_FALLBACKS.

A link is checked twice: here against the row as read, and again by the write that acts on it, which
matches the same state columns (so of two uses racing, one wins).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import settings
from apps.user.models import MAX_USER_ID, User

VERIFY = "email-verification"
RESET = "password-reset"
# Not a mailed link but the same construction: the `mfa_token` of a login waiting for its second
# factor (mfa.py). It covers the password, last_login and is_active, so the login it finishes spends it.
SECOND_FACTOR = "login-second-factor"

_TIMEOUT = {
    VERIFY: lambda: settings.EMAIL_VERIFICATION_TIMEOUT,
    RESET: lambda: settings.PASSWORD_RESET_TIMEOUT,
    SECOND_FACTOR: lambda: settings.MFA_TIMEOUT,
}
# A token from the future (a clock stepped back on another host) is believed this far, no further.
CLOCK_SKEW = 60
MAC_LENGTH = 43  # 32 bytes in unpadded base64url


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def _from_b36(text: str) -> int:
    # at most 13 digits: a timestamp or an id, nothing that could be a huge number to parse
    if not (1 <= len(text) <= 13 and text.isascii() and text.isalnum() and text == text.lower()):
        raise ValueError(text)
    return int(text, 36)


def state(purpose: str, user: User) -> tuple:
    """What a link of this purpose is about; when any of it changes, the link is spent."""
    if purpose == RESET:
        last_login = user.last_login.isoformat() if user.last_login else ""
        return (user.password, last_login, user.email, user.is_active)
    if purpose == SECOND_FACTOR:
        last_login = user.last_login.isoformat() if user.last_login else ""
        return (user.password, last_login, user.is_active)
    pending_at = user.pending_email_at.isoformat() if user.pending_email_at else ""
    return (user.email, user.pending_email or "", pending_at, user.email_verified, user.is_active)


def _mac(key: str, purpose: str, user_id: int, made_at: int, account_state: tuple) -> str:
    derived = hashlib.sha256(f"authservice.links.{purpose}\x00{key}".encode()).digest()
    message = "\x00".join(str(part) for part in (user_id, made_at, *account_state)).encode()
    digest = hmac.new(derived, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make(purpose: str, user: User, *, made_at: int | None = None) -> str:
    """A token for `user`'s link; `made_at` (Unix seconds) is when the link was asked for."""
    made_at = int(time.time()) if made_at is None else made_at
    mac = _mac(settings.SECRET_KEY, purpose, user.id, made_at, state(purpose, user))
    return f"{_b36(user.id)}-{_b36(made_at)}-{mac}"


@dataclass(frozen=True, slots=True)
class Link:
    user_id: int
    made_at: int
    mac: str


def parse(token: str) -> Link | None:
    """The parts of a well-formed, unexpired token, or None (which the caller answers invalid_link)."""
    # the MAC's base64url may hold "-" too; the id and the time (base 36) never do
    parts = token.split("-", 2) if isinstance(token, str) and len(token) < 100 else []
    if len(parts) != 3 or len(parts[2]) != MAC_LENGTH:
        return None
    try:
        user_id, made_at = _from_b36(parts[0]), _from_b36(parts[1])
    except ValueError:
        return None
    if not 0 < user_id <= MAX_USER_ID:
        return None
    return Link(user_id, made_at, parts[2])


def fresh(purpose: str, link: Link, *, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    return link.made_at - CLOCK_SKEW <= now and now - link.made_at <= _TIMEOUT[purpose]()


def matches(purpose: str, link: Link, user: User) -> bool:
    """Whether the link was made for this account as it is now (and by a key we hold)."""
    if user.id != link.user_id:
        return False
    account_state = state(purpose, user)
    return any(
        hmac.compare_digest(_mac(key, purpose, user.id, link.made_at, account_state), link.mac)
        for key in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)
    )

"""What a new password must be, in one place: long enough and not too long (checked first, before any
work), not one of the commonest passwords, not close to the account's username or email, and,
when PASSWORD_BREACH_CHECK is on, not in a known breach (Have I Been Pwned's range API).

No composition rules (NIST SP 800-63B): length and blocklists. How passwords are hashed and
verified is passwords.py's.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from difflib import SequenceMatcher
from functools import cache

import httpx

import settings
from apps.user.exceptions import WeakPassword

logger = logging.getLogger("apps.user.password_policy")

# Django's UserAttributeSimilarityValidator threshold (0.7): above it, the password is too close.
MAX_SIMILARITY = 0.7


def check_length(password: str) -> str:
    """Raises:
    ValueError: shorter than PASSWORD_MIN_LENGTH or longer than PASSWORD_MAX_LENGTH (checked before
        any hashing, and before the other rules).
    """
    if len(password) < settings.PASSWORD_MIN_LENGTH:
        raise ValueError(f"Use at least {settings.PASSWORD_MIN_LENGTH} characters.")
    if len(password) > settings.PASSWORD_MAX_LENGTH:
        raise ValueError(f"Use at most {settings.PASSWORD_MAX_LENGTH} characters.")
    return password


@cache
def _common_passwords() -> frozenset[str]:
    # zxcvbn's list: the 30,000 commonest passwords of several leaks (Dropbox's zxcvbn, maintained
    # for Python as zxcvbn on PyPI), lower-cased. Loaded once, on the first new password.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def _normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip()


def _too_similar(password: str, value: str) -> bool:
    """Django's UserAttributeSimilarityValidator: the value and each of its word-parts, compared with
    SequenceMatcher's quick_ratio, skipping parts far shorter than the password."""
    for part in {*re.split(r"\W+", value), value}:
        if not part or (len(password) >= 10 * len(part) and len(part) < MAX_SIMILARITY / 2 * len(password)):
            continue
        if SequenceMatcher(a=password, b=part).quick_ratio() >= MAX_SIMILARITY:
            return True
    return False


async def _breached(password: str) -> bool:
    """Whether the password appears in Have I Been Pwned's breaches. Only the first five hex digits of
    its SHA-1 leave the service (k-anonymity). Fails open: an unreachable API accepts the password,
    with a log line, since refusing every new password while the API is down locks people out."""
    digest = hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()
    prefix, suffix = digest[:5], digest[5:]
    try:
        async with httpx.AsyncClient(timeout=settings.PASSWORD_BREACH_TIMEOUT) as client:
            response = await client.get(
                settings.PASSWORD_BREACH_API + prefix, headers={"Add-Padding": "true"}
            )
            response.raise_for_status()
    except httpx.HTTPError as exc:
        logger.warning(
            "password breach check unavailable (%s); the password was accepted", type(exc).__name__
        )
        return False
    for line in response.text.splitlines():
        candidate, _, count = line.partition(":")
        if candidate.strip() == suffix and count.strip() not in {"", "0"}:  # padding lines count 0
            return True
    return False


async def validate(password: str, *, field: str, username: str | None, email: str | None) -> None:
    """Check a new password against the account it is for.

    Raises:
        WeakPassword: naming `field`, with the reason.
    """
    normal = _normal(password)
    if normal in _common_passwords():
        raise WeakPassword(field, "This password is too common; choose one that is harder to guess.")
    for what, value in (("username", username), ("email address", email)):
        if value and _too_similar(normal, _normal(value)):
            raise WeakPassword(field, f"This password is too similar to your {what}.")
    if settings.PASSWORD_BREACH_CHECK and await _breached(unicodedata.normalize("NFKC", password)):
        raise WeakPassword(field, "This password has appeared in a data breach; choose another one.")

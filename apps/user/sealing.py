"""Secrets the service must read back (TOTP seeds), sealed at rest with a key derived from SECRET_KEY.

Fernet (cryptography's AES-128-CBC + HMAC-SHA256 recipe, authenticated and versioned) with
MultiFernet for rotation: sealed under the key from SECRET_KEY, opened with it or any of
SECRET_KEY_FALLBACKS, so rotating SECRET_KEY as the README says keeps every second factor working; a
value opened with a fallback key is sealed again under the current one when it is next written.
A copy of the database without the settings holds no usable seed.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import settings


class Unreadable(Exception):
    """Sealed under a key this service no longer holds (or altered)."""


def _fernet(secret: str, purpose: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"authservice.{purpose}".encode()
    ).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


@functools.cache
def _box(purpose: str, secrets: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet(secret, purpose) for secret in secrets])


def _keys(purpose: str) -> MultiFernet:
    return _box(purpose, (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS))


def seal(purpose: str, value: str) -> str:
    return _keys(purpose).encrypt(value.encode()).decode()


def open_sealed(purpose: str, sealed: str) -> str:
    """Raises:
    Unreadable: no key we hold opens it."""
    try:
        return _keys(purpose).decrypt(sealed.encode()).decode()
    except InvalidToken as exc:
        raise Unreadable() from exc

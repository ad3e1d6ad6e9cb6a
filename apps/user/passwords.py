"""Password policy: the only module that imports passlib.

New hashes are argon2id with the PASSWORD_HASHER_* parameters (OWASP: m=19456 KiB, t=2, p=1). Hashes
from the earlier service (passlib pbkdf2_sha256) and from Django (pbkdf2_sha256, pbkdf2_sha1, argon2,
bcrypt_sha256) still verify, and `verify_password` hands back a replacement hash whenever the stored
one is not argon2id at the current parameters, so logins migrate hashes as they happen.

Hashing is CPU-bound for tens of milliseconds; it runs on a dedicated thread pool (argon2-cffi,
hashlib and bcrypt release the GIL), never on the event loop.
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from passlib.context import CryptContext
from passlib.exc import UnknownHashError

import settings


@cache
def _context() -> CryptContext:
    return CryptContext(
        schemes=[
            "argon2",
            "pbkdf2_sha256",
            "django_pbkdf2_sha256",
            "django_pbkdf2_sha1",
            "django_argon2",
            "django_bcrypt_sha256",
        ],
        default="argon2",
        # every scheme but the default is deprecated: a successful verify returns an upgraded hash
        deprecated="auto",
        argon2__type="ID",
        argon2__memory_cost=settings.PASSWORD_HASHER_MEMORY_COST,
        argon2__rounds=settings.PASSWORD_HASHER_TIME_COST,
        argon2__parallelism=settings.PASSWORD_HASHER_PARALLELISM,
    )


@cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=settings.PASSWORD_HASHER_THREADS, thread_name_prefix="hasher")


async def _off_loop(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(_executor(), fn, *args)


def _verify_and_update(password: str, stored: str) -> tuple[bool, str | None]:
    try:
        return _context().verify_and_update(password, stored)
    except (UnknownHashError, ValueError):
        # Unusable ("!..." from Django's set_unusable_password) or unknown hashes never verify.
        return False, None


async def hash_password(password: str) -> str:
    return await _off_loop(_context().hash, password)


async def verify_password(password: str, stored: str) -> tuple[bool, str | None]:
    """Check `password` against `stored`; return (matches, new hash if the stored one is outdated)."""
    return await _off_loop(_verify_and_update, password, stored)


@cache
def _dummy_hash() -> str:
    return _context().hash(secrets.token_urlsafe(16))


async def burn_password_check(password: str) -> None:
    """Cost an unknown account exactly what a wrong password costs (Django ticket 20760)."""
    await _off_loop(_verify_and_update, password, await _off_loop(_dummy_hash))


def shutdown() -> None:
    if _executor.cache_info().currsize:
        _executor().shutdown(wait=False, cancel_futures=True)
        _executor.cache_clear()

"""Password policy: the only module that imports passlib.

New hashes are argon2id with the PASSWORD_HASHER_* parameters (OWASP: m=19456 KiB, t=2, p=1). Hashes
from the earlier service (passlib pbkdf2_sha256) and from every hasher in Django's default
PASSWORD_HASHERS (pbkdf2_sha256, pbkdf2_sha1, argon2, bcrypt_sha256, scrypt) still verify, and
`verify_password` hands back a replacement hash whenever the stored one is not argon2id at the
current parameters, so logins migrate hashes as they happen.

Hashing is CPU-bound for tens of milliseconds; it runs on a dedicated, lower-priority thread pool
(argon2-cffi, hashlib and bcrypt release the GIL), never on the event loop, and sheds load with 503
when its queue is too long.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from passlib.context import CryptContext
from passlib.exc import UnknownHashError

import settings
from apps.core import lifecycle
from apps.core.errors import Problem


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


# Django's marker for an unusable password (set_unusable_password); such a hash never verifies.
UNUSABLE_PREFIX = "!"


class HashingOverloaded(Problem):
    status, code, title = 503, "overloaded", "Too busy"
    detail = "Too many password checks are queued. Retry shortly."
    headers = {"Retry-After": "1"}


def _lower_priority() -> None:
    # Linux scopes nice values to threads: hashing yields the CPU to the event loop, so a login storm
    # slows logins rather than every other request.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class HashingPool:
    """The threads that hash, with admission control.

    A job is refused at once (503) when the work queued ahead of it would take longer than
    PASSWORD_HASHER_MAX_WAIT to drain, estimated from the recent time per job, so that under a
    login storm the accepted logins stay fast and the refused ones learn so immediately.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="hasher", initializer=_lower_priority)
        self.pending = 0
        self.seconds_per_job = 0.05  # refined by every job (moving average)

    def _timed(self, fn, *args):
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds_per_job += (time.perf_counter() - started - self.seconds_per_job) * 0.1

    async def run(self, fn, *args):
        """Run `fn(*args)` on a hashing thread.

        Raises:
            HashingOverloaded: 503, the queue is too long to wait in.
        """
        if self.pending * self.seconds_per_job / self.threads > settings.PASSWORD_HASHER_MAX_WAIT:
            raise HashingOverloaded()
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, self._timed, fn, *args)
        finally:
            self.pending -= 1


@cache
def _pool() -> HashingPool:
    return HashingPool(settings.PASSWORD_HASHER_THREADS)


async def _off_loop(fn, *args):
    return await _pool().run(fn, *args)


def _verify_django_scrypt(password: str, stored: str) -> bool:
    """Django's ScryptPasswordHasher (`scrypt$N$salt$r$p$hash`), which passlib does not know."""
    try:
        _, n, salt, r, p, expected = stored.split("$")
        if not 1 < int(n) <= 2**20:  # Django's default is 2**14; refuse a cost that would exhaust memory
            return False
        derived = hashlib.scrypt(
            password.encode(),
            salt=salt.encode(),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=256 * int(n) * int(r),
            dklen=64,
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(base64.b64encode(derived).decode("ascii").strip(), expected)


def _verify_and_update(password: str, stored: str) -> tuple[bool, str | None]:
    if stored.startswith("scrypt$"):
        return (True, _context().hash(password)) if _verify_django_scrypt(password, stored) else (False, None)
    try:
        return _context().verify_and_update(password, stored)
    except (UnknownHashError, ValueError):
        # Unusable ("!..." from Django's set_unusable_password) or unknown hashes never verify.
        return False, None


def is_current(stored: str) -> bool:
    """Whether `stored` is a hash of the current policy (argon2id at the configured parameters)."""
    try:
        return _context().identify(stored) == "argon2" and not _context().needs_update(stored)
    except (UnknownHashError, ValueError):
        return False


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
    if _pool.cache_info().currsize:
        _pool().executor.shutdown(wait=False, cancel_futures=True)
        _pool.cache_clear()


lifecycle.register("hashing pool", stop=shutdown)

"""Password policy: the only module that imports passlib.

New hashes are argon2id with the PASSWORD_HASHER_* parameters (OWASP: m=19456 KiB, t=2, p=1). Hashes
from the earlier service (passlib pbkdf2_sha256) and from every hasher in Django's default
PASSWORD_HASHERS (pbkdf2_sha256, pbkdf2_sha1, argon2, bcrypt_sha256, scrypt) still verify, and
`verify_password` hands back a replacement hash whenever the stored one is not argon2id at the
current parameters, so logins migrate hashes as they happen.

Passwords are compared in Unicode NFKC: "é" typed on macOS (NFD, e + combining accent) and on Windows
(NFC, one code point) is the same password. Hashes made before normalisation (Django's, and this
service's older ones) are tried with the password as typed when the normalised form fails; a match
that way returns a hash of the normalised form, so the account migrates at that login.

Timing: a failed login costs the same whatever the account's state (Django ticket 20760 and
`harden_runtime`). Every verification runs, per pass, one argon2id verification at the current
parameters: against the stored hash when it is current, otherwise against a dummy hash beside the
check of the stored one (so an unknown account, an inactive one, an unusable password "!..." and an
unknown hash format all cost exactly one current-policy verification per pass). A password that is
not NFKC-stable makes two passes (normalised, then as typed) on *every* path, and both passes always
run, even after a match: the number of passes depends only on what the client sent, which it knows
already, and never on the account or on whether the password matched.

The exception, documented rather than hidden: a stored legacy hash costs its own verification *on
top of* the current-policy one until its first successful login upgrades it. A cheap one (this
service's old pbkdf2_sha256 at 29,000 rounds, ~7 ms beside argon2id's ~20 ms) makes a failed login a
little slower than an unknown account's; one slower than the policy (Django's PBKDF2 at 1,000,000
rounds, bcrypt_sha256 at 12 rounds, scrypt, argon2 at Django's parameters: ~200-300 ms each, ten
argon2id verifications) cannot be hidden at all without making every login that slow. Such accounts
are distinguishable by timing from unknown ones until their owners log in once.

Hashing is CPU-bound for tens of milliseconds; it runs on a dedicated, lower-priority thread pool
(argon2-cffi, hashlib and bcrypt release the GIL), never on the event loop, and sheds load with 503
when the work queued ahead would not start within PASSWORD_HASHER_MAX_WAIT (see `HashingPool`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import heapq
import hmac
import os
import secrets
import threading
import time
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache

from passlib.context import CryptContext
from passlib.exc import UnknownHashError

import settings
from apps.core import lifecycle, metrics
from apps.user.exceptions import HashingOverloaded
from apps.user.models import has_usable_password


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


def _normalise(password: str) -> str:
    # NFKC, as Django's forms do for usernames and NIST SP 800-63B asks for passwords: the same
    # characters typed on different systems must make the same password.
    return unicodedata.normalize("NFKC", password)


# --- kinds of hash: what a verification costs depends on the scheme and its parameters -------------

UNUSABLE, UNKNOWN = "unusable", "unknown"

# The "$"-separated fields of each format that set its cost; the others are salt and digest.
_COST_FIELDS = {
    "argon2": slice(1, 4),  # $argon2id$v=19$m=19456,t=2,p=1$salt$digest
    "pbkdf2_sha256": slice(2, 3),  # $pbkdf2-sha256$29000$salt$digest
    "django_pbkdf2_sha256": slice(1, 2),  # pbkdf2_sha256$1000000$salt$digest
    "django_pbkdf2_sha1": slice(1, 2),
    "django_argon2": slice(1, 4),  # argon2$argon2id$v=19$m=102400,t=2,p=8$salt$digest
    "django_bcrypt_sha256": slice(2, 4),  # bcrypt_sha256$$2b$12$saltdigest
}


def _kind(stored: str) -> str:
    """Name the cost class of a stored hash: its scheme and cost parameters ("unusable", "unknown")."""
    if not has_usable_password(stored):  # Django's rule, with the model (such a hash never verifies)
        return UNUSABLE
    fields = stored.split("$")
    if fields[0] == "scrypt" and len(fields) == 6:  # scrypt$N$salt$r$p$digest
        return "django_scrypt " + "$".join(f[:12] for f in (fields[1], fields[3], fields[4]))
    try:
        scheme = _context().identify(stored, required=True)
    except (UnknownHashError, ValueError):
        return UNKNOWN
    return scheme + " " + "$".join(f[:40] for f in fields[_COST_FIELDS.get(scheme, slice(0))])


def current_kind() -> str:
    """The kind of a hash made now: argon2id at the PASSWORD_HASHER_* parameters."""
    argon2 = _context().handler("argon2")
    return (
        f"argon2 argon2{argon2.type}$v={argon2.max_version}"
        f"$m={argon2.memory_cost},t={argon2.default_rounds},p={argon2.parallelism}"
    )


# --- the pool ----------------------------------------------------------------------------------------


def _lower_priority() -> None:
    # Linux scopes nice values to threads: hashing yields the CPU to the event loop, so a login storm
    # slows logins rather than every other request.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


_thread = threading.local()


def _measured(kind: str, fn, *args):
    """Run one hashing primitive and report its kind and duration to the pool running this job."""
    started = time.perf_counter()
    result = fn(*args)
    ops = getattr(_thread, "ops", None)
    if ops is not None:
        ops.append((kind, time.perf_counter() - started))
    return result


@dataclass(eq=False)
class _Job:
    estimate: float  # seconds of hashing-thread time, from the per-kind costs at admission
    account: Hashable | None
    submitted: float
    predicted: float  # its expected wait at admission, before the drift correction
    started: float | None = None


class _AccountTurns:
    """The checks of one account: one in the pool (holding `lock`), the others waiting for it."""

    def __init__(self, registry: dict, account: Hashable) -> None:
        self.registry, self.account = registry, account
        self.lock = asyncio.Lock()
        self.waiting = 0

    def release(self) -> None:
        self.lock.release()
        self.forget_if_idle()

    def forget_if_idle(self) -> None:
        # bounded memory: an account with nothing in flight and nobody waiting has no entry
        if not self.lock.locked() and not self.waiting and self.registry.get(self.account) is self:
            del self.registry[self.account]


@dataclass
class PoolStats:
    """What the pool did, for tests and operators: counts to assert on rather than wall-clock times."""

    ops: Counter = field(default_factory=Counter)  # primitives run, by kind
    waits: deque = field(default_factory=lambda: deque(maxlen=10_000))  # queue wait per job, seconds
    refused: Counter = field(default_factory=Counter)  # "busy" (MAX_WAIT) or "account" (one in flight)


# Admission aims a little below MAX_WAIT: the costs are averages, and the promise is about the slow tail.
_HEADROOM = 0.85


class HashingPool:
    """The threads that hash, with admission control that keeps its promise.

    A job states the work it will do as a sequence of kinds (`work`); its cost is the sum of each
    kind's learned cost. A job is refused at once (503) when, with the jobs already admitted (their
    remaining estimated time if running, their full estimate if queued) laid out on the threads in
    FIFO order, it would not start within 85% of `max_wait` seconds, corrected by how much longer
    than predicted jobs have really waited lately (`drift`). Why per kind: a legacy PBKDF2 check at
    1,000,000 rounds costs ten argon2id ones, so an average over all jobs lets a storm of slow jobs
    in on the credit of fast ones (and the reverse); why remaining time: a running job is already
    partly done, and counting it as queued turns every estimate into guesswork.

    `account`: at most one job per account in the pool; the next ones for that account wait their
    turn outside it, first come first served, and are refused (the same 503) only if their turn would
    not come within `max_wait`. Why outside the pool: hammering one account with a slow legacy hash
    then occupies one thread, never the queue everybody else's logins wait in. Why wait rather than
    refuse: refusing every check while one is in flight would let anyone lock an account's owner
    out of logging in by keeping wrong-password attempts going (each holds the account ~25 ms);
    waiting, the owner's attempt gets its turn behind the few the attacker has in flight.
    """

    def __init__(
        self,
        threads: int,
        *,
        max_wait: float | None = None,
        first_guess: Callable[[str, Mapping[str, float]], float] | None = None,
        reports_metrics: bool = False,
    ) -> None:
        self.threads = threads
        # The process's pool reports its queue and refusals (apps/core/metrics.py); the pools tests
        # make for themselves must not move the process's gauges.
        self.reports_metrics = reports_metrics
        self._queued = 0  # admitted jobs no thread has started yet
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="hasher", initializer=_lower_priority)
        self._max_wait = max_wait
        # A kind never measured yet costs this (given the costs learned so far); the first
        # measurement replaces the guess.
        self.first_guess = first_guess or (lambda kind, costs: 0.05)
        self.costs: dict[str, float] = {}  # seconds per kind, learned from measured durations
        self.stats = PoolStats()
        self._lock = threading.Lock()  # admission runs on the event loop, learning on the threads
        self._jobs: dict[_Job, None] = {}  # admitted and not finished, in FIFO order
        # How much longer jobs really wait than predicted (>= 1): the hand-off between threads, CPU
        # taken by the event loop and by other processes; the check closes the loop on its own promise.
        self.drift = 1.0
        self._accounts: dict[Hashable, _AccountTurns] = {}  # event-loop side only

    @property
    def max_wait(self) -> float:
        return settings.PASSWORD_HASHER_MAX_WAIT if self._max_wait is None else self._max_wait

    def estimate(self, kind: str) -> float:
        cost = self.costs.get(kind)
        return self.first_guess(kind, self.costs) if cost is None else cost

    def expected_wait(self, now: float | None = None) -> float:
        """When a job submitted now would start, in seconds from now (what admission compares)."""
        now = time.perf_counter() if now is None else now
        with self._lock:
            return self._expected_wait(now) * self.drift

    def _expected_wait(self, now: float) -> float:
        # Each thread's free-at time: the remaining estimate of its running job (0 if idle); then
        # every queued job goes, in order, to the thread that frees first.
        jobs = [(job.estimate, job.started) for job in self._jobs]  # `started` is set by the threads
        running = [max(0.0, estimate - (now - started)) for estimate, started in jobs if started]
        free = sorted(running)[: self.threads] + [0.0] * max(0, self.threads - len(running))
        heapq.heapify(free)
        for estimate, started in jobs:
            if started is None:
                heapq.heapreplace(free, free[0] + estimate)
        return free[0]

    def _admit(self, work: Sequence[str], account: Hashable | None) -> _Job:
        now = time.perf_counter()
        with self._lock:
            predicted = self._expected_wait(now)
            if predicted * self.drift > _HEADROOM * self.max_wait:
                self._refused("busy")
                raise HashingOverloaded()
            job = _Job(sum(self.estimate(kind) for kind in work), account, now, predicted)
            self._jobs[job] = None
            self._queue_moved(+1)
            return job

    def _refused(self, reason: str) -> None:
        self.stats.refused[reason] += 1
        if self.reports_metrics:
            metrics.count_hashing_refused(reason)

    def _queue_moved(self, change: int) -> None:
        # under self._lock: the gauge is set to the count, never moved by a delta, so it cannot drift
        self._queued += change
        if self.reports_metrics:
            metrics.set_hashing_queue_depth(self._queued)

    def _release(self, job: _Job) -> None:
        # Called when the thread is done with the job (or it was cancelled before starting), not when
        # its caller stops waiting: a cancelled request's hash still occupies a thread until it ends.
        with self._lock:
            if self._jobs.pop(job, False) is None and job.started is None:  # cancelled while queued
                self._queue_moved(-1)

    def _learn(self, job: _Job, ops: list[tuple[str, float]]) -> None:
        wait = job.started - job.submitted
        with self._lock:
            self.stats.waits.append(wait)
            if job.predicted > 0.05 * self.max_wait:  # near zero, the ratio is mostly noise
                ratio = wait / job.predicted
                # like the costs: quick to raise (a promise is at stake), slow to lower
                self.drift += (ratio - self.drift) * (0.2 if ratio > self.drift else 0.02)
                self.drift = min(3.0, max(1.0, self.drift))
            for kind, seconds in ops:
                self.stats.ops[kind] += 1
                cost = self.costs.get(kind)
                if cost is None:
                    if len(self.costs) < 64:  # kinds come from stored hashes; bound them anyway
                        self.costs[kind] = seconds
                else:
                    # Quick to learn that a kind got slower (a promise is at stake), slow to believe
                    # it got faster (one lucky measurement must not open the gates).
                    self.costs[kind] = cost + (seconds - cost) * (0.3 if seconds > cost else 0.1)

    def _execute(self, job: _Job, work: Sequence[str], fn, args):
        with self._lock:
            job.started = time.perf_counter()
            self._queue_moved(-1)
        ops = _thread.ops = []
        try:
            return fn(*args)
        finally:
            _thread.ops = None
            if not ops and len(work) == 1:  # a job that does not report its primitives is one of them
                ops.append((work[0], time.perf_counter() - job.started))
            self._learn(job, ops)

    async def run(self, fn, *args, work: Sequence[str] = ("other",), account: Hashable | None = None):
        """Run `fn(*args)` on a hashing thread; `work` names the kinds of primitive it will run.

        Raises:
            HashingOverloaded: the job would not start within max_wait, or its account's turn
                would not come within max_wait.
        """
        turns = await self._account_turn(account, work) if account is not None else None
        try:
            job = self._admit(work, account)
            try:
                future = self.executor.submit(self._execute, job, work, fn, args)
            except RuntimeError:  # shut down
                self._release(job)
                raise
        except BaseException:  # refused or shut down: the account's turn passes to the next
            if turns is not None:
                turns.release()
            raise
        future.add_done_callback(lambda _: self._release(job))
        if turns is not None:
            # The account's turn ends when the thread is done with the hash, not when its caller
            # stops waiting: a cancelled request's check still occupies a thread until it ends.
            loop = asyncio.get_running_loop()
            future.add_done_callback(lambda _: loop.call_soon_threadsafe(turns.release))
        return await asyncio.wrap_future(future)

    async def _account_turn(self, account: Hashable, work: Sequence[str]) -> _AccountTurns:
        """Wait for `account`'s turn (FIFO); refuse at once if it would not come within max_wait.

        Raises:
            HashingOverloaded: too many checks of this account ahead of this one.
        """
        turns = self._accounts.get(account)
        if turns is None:
            turns = self._accounts[account] = _AccountTurns(self._accounts, account)
        ahead = turns.waiting + turns.lock.locked()
        if ahead and ahead * sum(self.estimate(kind) for kind in work) > _HEADROOM * self.max_wait:
            self._refused("account")
            turns.forget_if_idle()
            raise HashingOverloaded()
        if not ahead:  # the account's turn is now: no wait, whatever max_wait
            await turns.lock.acquire()
            return turns
        turns.waiting += 1
        try:
            await asyncio.wait_for(turns.lock.acquire(), timeout=self.max_wait)
        except TimeoutError:
            self._refused("account")
            raise HashingOverloaded() from None
        finally:
            turns.waiting -= 1
            turns.forget_if_idle()
        return turns


def _first_guess(kind: str, costs: Mapping[str, float]) -> float:
    # Until measured: the policy's verification 50 ms, anything else ten times the policy's (Django's
    # default hashers cost 10-15 argon2id verifications here), so a cold start facing a storm of
    # legacy hashes refuses rather than promises what it cannot keep; one measurement corrects it.
    policy = costs.get(current_kind(), 0.05)
    return policy if kind == current_kind() else 10 * policy


@cache
def _pool() -> HashingPool:
    return HashingPool(settings.PASSWORD_HASHER_THREADS, first_guess=_first_guess, reports_metrics=True)


# --- hashing and verifying (these run on the pool's threads) -----------------------------------------


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


@cache
def _dummy_hash(kind: str) -> str:
    # One per policy (`kind`), so a policy change gets a dummy as expensive as its real hashes.
    return _context().hash(secrets.token_urlsafe(16))


def _verify_one(candidate: str, stored: str, kind: str, current: str) -> bool:
    """One pass: check `candidate` against `stored`, spending at least one current-policy verification."""
    if kind == current:
        try:
            return _measured(kind, _context().verify, candidate, stored)
        except ValueError:
            pass  # malformed: it cost nothing yet, so it pays the dummy below like any unusable hash
        matches = False
    elif kind in (UNUSABLE, UNKNOWN):
        matches = False  # never verifies (Django's set_unusable_password, or nothing we know)
    else:
        try:
            if kind.startswith("django_scrypt "):
                matches = _measured(kind, _verify_django_scrypt, candidate, stored)
            else:
                matches = _measured(kind, _context().verify, candidate, stored)
        except ValueError:
            matches = False
    # Django's harden_runtime, made simple: whatever the stored hash cost (nothing, or a legacy
    # scheme's own price), add one verification at the current policy, so no account state answers
    # faster than an unknown account does.
    dummy = _dummy_hash(current)
    with contextlib.suppress(ValueError):  # an oversized password is refused alike on every path
        _measured(_kind(dummy), _context().verify, candidate, dummy)
    return matches


def _check(password: str, stored: str) -> tuple[bool, bool]:
    """(matches, the stored hash should be replaced by a hash of the normalised password)."""
    normalised = _normalise(password)
    # Hashes made before normalisation were made from the password as typed: try that second. Both
    # passes always run, so the cost depends on the input alone, never on whether it matched.
    candidates = [normalised] if normalised == password else [normalised, password]
    kind, current = _kind(stored), current_kind()
    matched = [_verify_one(candidate, stored, kind, current) for candidate in candidates]
    if not any(matched):
        return False, False
    return True, not matched[0] or kind != current or not is_current(stored)


def _verify_and_update(password: str, stored: str) -> tuple[bool, str | None]:
    """(matches, a new hash when the stored one is outdated or was made from the unnormalised form)."""
    matches, outdated = _check(password, stored)
    if matches and outdated:
        return True, _measured(current_kind(), _context().hash, _normalise(password))
    return matches, None


def _verify(password: str, stored: str) -> tuple[bool, None]:
    return _check(password, stored)[0], None


def _burn(password: str) -> tuple[bool, str | None]:
    return _verify_and_update(password, _dummy_hash(current_kind()))


def _hash(password: str) -> str:
    return _measured(current_kind(), _context().hash, _normalise(password))


def _work(password: str, stored: str | None, upgrade: bool) -> tuple[str, ...]:
    """The primitives a verification job runs at most, for the pool's admission estimate."""
    current = current_kind()
    kind = current if stored is None else _kind(stored)
    passes = 1 if _normalise(password) == password else 2
    per_pass = (current,) if kind in (current, UNUSABLE, UNKNOWN) else (kind, current)
    rehash = (current,) if upgrade and stored is not None and (kind != current or passes == 2) else ()
    return per_pass * passes + rehash


# --- the API ----------------------------------------------------------------------------------------


def is_current(stored: str) -> bool:
    """Whether `stored` is a hash of the current policy (argon2id at the configured parameters)."""
    try:
        return _context().identify(stored) == "argon2" and not _context().needs_update(stored)
    except (UnknownHashError, ValueError):
        return False


async def hash_password(password: str) -> str:
    """A hash of the NFKC-normalised password at the current policy.

    Raises:
        HashingOverloaded: the hashing queue is too long to wait in.
    """
    return await _pool().run(_hash, password, work=(current_kind(),))


async def verify_password(
    password: str, stored: str, *, account: Hashable | None = None, upgrade: bool = True
) -> tuple[bool, str | None]:
    """Check `password` against `stored`; return (matches, new hash if the stored one is outdated).

    `account` identifies whose password this is: one check per account at a time (see HashingPool).
    `upgrade=False` never computes the new hash (for callers that would discard it, and for an
    inactive account, whose failed login must not cost more when the password is right).

    Raises:
        HashingOverloaded: the hashing queue is too long, or this account is being checked.
    """
    fn = _verify_and_update if upgrade else _verify
    return await _pool().run(fn, password, stored, work=_work(password, stored, upgrade), account=account)


async def burn_password_check(password: str, *, account: Hashable | None = None) -> None:
    """Cost an unknown account exactly what a wrong password costs (Django ticket 20760).

    Raises:
        HashingOverloaded: as `verify_password` would for a known account.
    """
    await _pool().run(_burn, password, work=_work(password, None, False), account=account)


def shutdown() -> None:
    if _pool.cache_info().currsize:
        _pool().executor.shutdown(wait=False, cancel_futures=True)
        _pool.cache_clear()


lifecycle.register("hashing pool", stop=shutdown)

"""Prometheus metrics with prometheus_client, the official client, served at GET /metrics to
METRICS_ALLOWED_IPS (middleware.MetricsMiddleware).

Off by default (METRICS_ENABLED): then no middleware is installed, prometheus_client is not even
imported, and the hooks below (`count_login`, `count_throttled`, ...), called by the code that knows
what happened, return at once. `configure()` (from create_app) turns them on.

What is measured, and where it is counted:
- requests by method, route template and status, with their latency (a histogram; its `_count` is
  the request count): MetricsMiddleware. The route is the Starlette route's path
  (`/user/sessions/{session_id}`), never the raw path, and the method one of a fixed set, so a client
  cannot create series; a request that matched no route is `route="unmatched"`.
- logins by outcome: the login view; the hashing pool's queue depth and its refusals (the 503s):
  apps/user/passwords.py; throttled attempts by limit: apps/core/throttle.py; whether the revocation
  signal is in sync: apps/user/revocation.py.
- values read at scrape time from the database (the mail outbox's backlog): `probe` functions that
  an app registers; a scrape awaits them (bounded by PROBE_TIMEOUT), so they are true whichever process
  sends the mail, and cost nothing between scrapes.

Several workers (uvicorn --workers N): each is a process with its own counters, and a scrape reaches
one of them. With PROMETHEUS_MULTIPROC_DIR set, every worker writes its values into memory-mapped
files in that directory (prometheus_client's multiprocess mode) and a scrape merges them, whichever
worker answers: counters and histograms are summed over every worker of the server, those that have
exited included (so totals never go down while the server runs); a gauge by its mode: the hashing
queue summed over the live workers, the revocation signal the minimum over them (0 if any is out of sync).

The directory must start empty with each server (a stale file would add an earlier run's totals, or a
dead worker's gauges). uvicorn's master process never imports the app, so the workers see to it,
under a lock (`claim_directory`): a worker that starts and finds no live worker's marker there is the
first of a new server and empties it; one that finds a live sibling (started with it, or restarted by
uvicorn after a crash) keeps the totals and drops only the gauges of workers that have died. A marker
holds its worker's pid and start time, so a pid reused by another process is not taken for a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import multiprocessing
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import settings
from apps.core import lifecycle
from apps.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

logger = logging.getLogger("apps.core.metrics")

METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "unmatched"
# Methods a route can have; anything else a client sends is counted as "other" (bounded series).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# From a cached /user/verify (~100 µs) to a login on a loaded hashing pool (PASSWORD_HASHER_MAX_WAIT).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Known up front, so that each series exists (at 0) before its first event: a rate() over a series
# that appears only with its first event misses that event.
LOGIN_OUTCOMES = (
    "success",
    "mfa_required",  # the password was right; a second factor finishes the login (POST /user/login/mfa)
    "invalid_credentials",
    "throttled",
    "email_unverified",
    "overloaded",
    "error",
)
HASHING_REFUSALS = ("busy", "account")  # apps/user/passwords.py: the queue is full; the account's turn
_CONVERTOR = re.compile(r"{(\w+):\w+}")
PROBE_TIMEOUT = 2.0  # seconds: a scrape must not hang on a database that does not answer


class _Instruments:
    """The metrics themselves, made once per process by configure() when metrics are on."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.request_duration = Histogram(
            "authservice_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status (its _count counts them).",
            ("method", "route", "status"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.logins = Counter(
            "authservice_logins_total", "Login attempts by outcome.", ("outcome",), registry=registry
        )
        self.hash_queue = Gauge(
            "authservice_password_hash_queue_depth",
            "Password hashing jobs admitted and waiting for a hashing thread (summed over live workers).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.hash_refused = Counter(
            "authservice_password_hash_refused_total",
            "Hashing requests refused with 503 overloaded: busy (the queue would not start them within "
            "PASSWORD_HASHER_MAX_WAIT) or account (too many checks of one account ahead).",
            ("reason",),
            registry=registry,
        )
        self.throttled = Counter(
            "authservice_throttled_total",
            "Attempts refused with 429 throttled, by the limit's key name (apps/user/throttles.py).",
            ("limit",),
            registry=registry,
        )
        self.revocation_in_sync = Gauge(
            "authservice_revocation_listener_in_sync",
            "1 while this process hears every revocation (its listener connected and caught up), 0 while "
            "it does not and queries the database instead of trusting its caches; min over live workers.",
            ("signal",),
            multiprocess_mode="livemin",
            registry=registry,
        )
        for outcome in LOGIN_OUTCOMES:
            self.logins.labels(outcome)
        for reason in HASHING_REFUSALS:
            self.hash_refused.labels(reason)
        # (method, route, status) -> the histogram's child: labels() costs a lock and a tuple of str
        # conversions; a dict look-up is what every request pays instead. Bounded like the labels.
        self._request_children: dict[tuple[str, str, int], Any] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in KNOWN_METHODS:  # before the look-up: the cache must stay bounded too
            method = "other"
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:
            # as OpenAPI writes it: {session_id}, not {session_id:uuid}
            template = _CONVERTOR.sub(r"{\1}", route)
            child = self._request_children[key] = self.request_duration.labels(method, template, str(status))
        child.observe(seconds)


_instruments: _Instruments | None = None  # made once (prometheus_client refuses a metric twice)
_active: _Instruments | None = None  # _instruments while metrics are on, else None: what hooks test
_registry: CollectorRegistry | None = None


def enabled() -> bool:
    return _active is not None


def configure() -> None:
    """Turn metrics on or off as METRICS_ENABLED says (create_app calls it; tests flip the setting).

    On, the first time in this process: hand PROMETHEUS_MULTIPROC_DIR to prometheus_client before
    importing it (it picks its storage once, at import), claim the directory, make the metrics.

    Raises:
        ImproperlyConfigured: prometheus_client was imported earlier in another mode than the setting says.
    """
    global _instruments, _active, _registry
    if not settings.METRICS_ENABLED:
        _active = None
        return
    if _instruments is None:
        multiprocess_dir = settings.PROMETHEUS_MULTIPROC_DIR
        _set_environment(multiprocess_dir)
        from prometheus_client import CollectorRegistry, disable_created_metrics, values

        if (values.ValueClass is not values.MutexValue) != bool(multiprocess_dir):
            raise ImproperlyConfigured(
                "prometheus_client was imported before the settings handed it PROMETHEUS_MULTIPROC_DIR"
            )
        if multiprocess_dir:
            claim_directory(Path(multiprocess_dir))
        elif multiprocessing.parent_process() is not None:
            # a worker spawned by a supervisor (uvicorn --workers, or --reload): with siblings, a
            # scrape sees one worker's share of the truth
            logger.warning(
                "metrics: a worker process without PROMETHEUS_MULTIPROC_DIR; if the server has several "
                "workers, each reports only its own requests (set PROMETHEUS_MULTIPROC_DIR)"
            )
        # the *_created series (a counter's creation time) double the text and nobody graphs them;
        # multiprocess mode has none, so either mode exposes the same series
        disable_created_metrics()
        _registry = CollectorRegistry(auto_describe=True)
        if not multiprocess_dir:
            # the process's CPU, memory, open files and GC: true of one process only, so only then
            from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                _registry.register(collector)
        _instruments = _Instruments(_registry)
    _active = _instruments


def _set_environment(multiprocess_dir: str) -> None:
    # prometheus_client tests whether the variable *exists*: an empty one (an .env copied from
    # .env.example) would mean files in the current directory.
    os.environ.pop("prometheus_multiproc_dir", None)
    if multiprocess_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
    else:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


# --- hooks: what the code that knows calls; nothing while metrics are off ------------------------------


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    if _active is not None:
        _active.observe_request(method, route, status, seconds)


def count_login(outcome: str) -> None:
    """`outcome`: one of LOGIN_OUTCOMES."""
    if _active is not None:
        _active.logins.labels(outcome).inc()


def count_throttled(limit: str) -> None:
    """`limit`: the key name of the limit that refused (a constant of the code, never client input)."""
    if _active is not None:
        _active.throttled.labels(limit).inc()


def count_hashing_refused(reason: str) -> None:
    if _active is not None:
        _active.hash_refused.labels(reason).inc()


def set_hashing_queue_depth(jobs: int) -> None:
    if _active is not None:
        _active.hash_queue.set(jobs)


def set_revocation_in_sync(signal: str, in_sync: bool) -> None:
    """`signal`: which mechanism (local_epoch, process, postgres, redis)."""
    if _active is not None:
        _active.revocation_in_sync.labels(signal).set(1 if in_sync else 0)


# --- values read at scrape time -------------------------------------------------------------------------

Probe = Callable[[], Awaitable[Iterable["Metric"]]]
_probes: list[Probe] = []


def probe(function: Probe) -> Probe:
    """Register a coroutine function that a scrape awaits for metric families (at import time)."""
    if function not in _probes:
        _probes.append(function)
    return function


async def _probed() -> list[Metric]:
    families: list[Metric] = []
    for function in _probes:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                families.extend(await function())
        except Exception as exc:  # the database is away: the scrape still answers, without this value
            logger.warning("metrics: %s failed (%s)", function.__qualname__, type(exc).__name__)
    return families


class _Scrape:
    """What one scrape exposes: the collectors' metrics, then the probes'."""

    def __init__(self, collectors: Iterable[Any], families: list[Metric]) -> None:
        self.collectors, self.families = collectors, families

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()
        yield from self.families


async def exposition(accept: str | None) -> tuple[bytes, str]:
    """(body, content type) of a scrape: Prometheus text, or OpenMetrics when the scraper asks for it."""
    from prometheus_client.exposition import choose_encoder

    families = await _probed()
    if settings.PROMETHEUS_MULTIPROC_DIR:
        from prometheus_client.multiprocess import MultiProcessCollector

        collectors: list[Any] = [MultiProcessCollector(None, settings.PROMETHEUS_MULTIPROC_DIR)]
    else:
        collectors = [_registry]
    encode, content_type = choose_encoder(accept or "")
    # reading every worker's files and rendering the text: off the event loop
    body = await asyncio.to_thread(encode, _Scrape(collectors, families))
    return body, content_type


# --- the multiprocess directory -------------------------------------------------------------------------

_MARKER_SUFFIX = ".alive"  # not .db: prometheus_client's collector reads every *.db file


def _start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, /proc), None if there is no such process;
    without /proc, "" for any live process (then a reused pid passes for its predecessor)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # the command name (field 2) is in parentheses and may hold spaces: count from its end
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except FileNotFoundError:
        if os.path.isdir("/proc"):
            return None
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return ""


def _pid_of(path: Path) -> int | None:
    # counter_123.db, gauge_livesum_123.db, histogram_123.db, worker_123.alive
    tail = path.name.rsplit("_", 1)[-1].split(".", 1)[0]
    return int(tail) if tail.isdigit() else None


def claim_directory(directory: Path) -> None:
    """Make `directory` this worker's for the server it belongs to (see the module's docstring): empty
    it when no other live worker has a marker there, else forget the gauges of the dead ones; then
    leave this worker's marker. Under an exclusive lock, so that workers starting together agree."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    own = os.getpid()
    lock_fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        live, dead = set(), set()
        for marker in directory.glob("worker_*" + _MARKER_SUFFIX):
            pid = _pid_of(marker)
            if pid is None or pid == own:
                continue
            with contextlib.suppress(FileNotFoundError):
                recorded = marker.read_text().strip()
                (live if _start_time(pid) == recorded else dead).add(pid)
        if not live:
            # the first worker of a new server: whatever is here is an earlier run's
            for stale in [*directory.glob("*.db"), *directory.glob("*" + _MARKER_SUFFIX)]:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
        else:
            # this pid may be a dead worker's, reused: whatever gauges that one left are not ours
            for pid in (*dead, own):
                _forget_process(directory, pid)
        (directory / f"worker_{own}{_MARKER_SUFFIX}").write_text(_start_time(own) or "")
    finally:
        os.close(lock_fd)  # releases the lock


def _forget_process(directory: Path, pid: int) -> None:
    """A worker has exited: its live gauges go (its counters stay: the server's totals)."""
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid, str(directory))
    with contextlib.suppress(FileNotFoundError):
        (directory / f"worker_{pid}{_MARKER_SUFFIX}").unlink()


def _stop() -> None:
    # A worker that exits cleanly takes its gauges with it at once (a crashed one's go when a
    # sibling next starts); only where this process claimed the directory.
    if _instruments is None or not settings.PROMETHEUS_MULTIPROC_DIR:
        return
    directory = Path(settings.PROMETHEUS_MULTIPROC_DIR)
    if (directory / f"worker_{os.getpid()}{_MARKER_SUFFIX}").exists():
        _forget_process(directory, os.getpid())


lifecycle.register("metrics", stop=_stop)

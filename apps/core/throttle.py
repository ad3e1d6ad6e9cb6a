"""Rate limits, with the `limits` library (maintained, typed, the one Flask-Limiter and SlowAPI use).

Counters live in Redis when REDIS_URL is set, so every worker and host shares them, and in this
process otherwise. When Redis stops answering, this process's own counters take over at once (a
warning is logged) and Redis is tried again every few seconds: the service keeps answering, with
per-process limits meanwhile. The strategy is the sliding window counter: two numbers per key, an
O(1) update in memory and in one Redis script, and no window that resets all at once.

A limit is a setting's value (settings._limit: `10/minute`, `5 per 15 minutes`; None for `off`).
`hit()` counts one attempt and raises `Throttled` past the limit; `clear()` forgets a key (a
successful login clears its failures).
"""

from __future__ import annotations

import logging
import math
import time

import limits
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from apps.core import lifecycle, metrics
from apps.core.errors import Problem

logger = logging.getLogger("apps.throttle")

REDIS_RETRY_SECONDS = 5.0
# A Redis that does not answer must cost a request little: it falls back after this long.
REDIS_TIMEOUT_SECONDS = 0.25


class Throttled(Problem):
    """Over a limit: 429 with Retry-After and the IETF RateLimit-* headers (the httpapi draft)."""

    status, code, title = 429, "throttled", "Too many attempts"

    def __init__(self, limit: int, retry_after: int) -> None:
        seconds = str(retry_after)
        super().__init__(
            f"Too many attempts. Try again in {retry_after} seconds.",
            headers={
                "Retry-After": seconds,
                "RateLimit-Limit": str(limit),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": seconds,
            },
        )
        self.limit, self.retry_after = limit, retry_after


class Throttle:
    def __init__(self, redis_url: str | None) -> None:
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._redis: SlidingWindowCounterRateLimiter | None = None
        if redis_url:
            storage: Storage = RedisStorage(
                "async+" + redis_url,
                wrap_exceptions=True,
                implementation="redispy",
                key_prefix="authservice",
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            self._redis = SlidingWindowCounterRateLimiter(storage)
        self._redis_down_until = 0.0

    def _limiter(self) -> SlidingWindowCounterRateLimiter:
        if self._redis is not None and time.monotonic() >= self._redis_down_until:
            return self._redis
        return self._memory

    def _redis_failed(self, exc: Exception) -> None:
        if self._redis_down_until <= time.monotonic():
            logger.warning(
                "Redis is not answering (%s): limits are per process until it is back",
                type(getattr(exc, "storage_error", exc)).__name__,
            )
        self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS

    async def hit(self, limit: limits.RateLimitItem | None, *key: str) -> None:
        """Count one attempt under `key`, whose first part names the limit (for metrics: a constant
        such as "login-ip", never client input; the parts after it say whose attempt it is).

        Raises:
            Throttled: the attempt is over the limit (and is not counted).
        """
        if limit is None:
            return
        limiter = self._limiter()
        try:
            allowed = await limiter.hit(limit, *key)
        except StorageError as exc:
            self._redis_failed(exc)
            limiter = self._memory
            allowed = await limiter.hit(limit, *key)
        if not allowed:
            metrics.count_throttled(key[0])
            raise Throttled(limit.amount, await self._retry_after(limiter, limit, key))

    async def _retry_after(self, limiter, limit: limits.RateLimitItem, key: tuple[str, ...]) -> int:
        try:
            stats = await limiter.get_window_stats(limit, *key)
            reset_in = stats.reset_time - time.time()
        except StorageError:
            reset_in = limit.get_expiry()
        return max(1, math.ceil(reset_in))

    async def clear(self, limit: limits.RateLimitItem | None, *key: str) -> None:
        if limit is None:
            return
        try:
            await self._limiter().clear(limit, *key)
        except StorageError as exc:
            self._redis_failed(exc)
        await self._memory.clear(limit, *key)


_throttle: Throttle | None = None


def throttle() -> Throttle:
    """This process's throttle, made at startup (lifecycle) or on first use (manage.py, tests)."""
    global _throttle
    if _throttle is None:
        import settings

        _throttle = Throttle(settings.REDIS_URL or None)
    return _throttle


async def _close() -> None:
    global _throttle
    _throttle = None


lifecycle.register("throttle", stop=_close)

"""One guarded Redis call: a short timeout and a breaker shared by the whole process.

The per-request Redis work (cache lookups, rate limits, view counts, enqueueing) must never
hold a request hostage to a slow or dead Redis. Every such call goes through
``RedisGuard.call``: bounded by a timeout, and after a failure the breaker stays open for
``pause`` seconds, during which calls fail at once (``BreakerOpen``) without touching Redis;
then one call probes again. A dead Redis therefore costs one short wait, not one per request.

Callers catch ``service.core.errors.REDIS_FAILURES`` and decide what an outage means for them:
the cache serves from PostgreSQL, rate limits fail open, enqueueing reports False.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from redis.exceptions import RedisError

from service.core.errors import REDIS_FAILURES
from service.infra import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class BreakerOpen(RedisError):
    """Redis failed moments ago; this call was not attempted."""


@dataclass
class Breaker:
    """Skips Redis for ``pause`` seconds after a failure, then lets one probe through.

    ``tripped`` stays True from a failure until a call succeeds again: the breaker state that
    metrics report (``redis_breaker_open``)."""

    pause: float
    open_until: float = 0.0
    tripped: bool = False

    def allows(self) -> bool:
        return time.monotonic() >= self.open_until

    def failed(self, exc: BaseException) -> None:
        if self.allows():
            reason = str(exc) or type(exc).__name__
            log.warning("Redis unavailable (%s); skipping it for %.0fs", reason, self.pause)
            metrics.REDIS_BREAKER_OPENS.inc()
        self.open_until = time.monotonic() + self.pause
        if not self.tripped:
            self.tripped = True
            metrics.REDIS_BREAKER_OPEN.set(1)

    def succeeded(self) -> None:
        """A call went through after a failure: the breaker is closed again."""
        self.tripped = False
        metrics.REDIS_BREAKER_OPEN.set(0)


class RedisGuard:
    """Runs Redis calls under ``timeout`` seconds and one ``Breaker``."""

    def __init__(self, *, timeout: float, breaker_seconds: float) -> None:
        self.timeout = timeout
        self.breaker = Breaker(breaker_seconds)

    def allows(self) -> bool:
        """False while the breaker is open (calls would fail at once)."""
        return self.breaker.allows()

    async def call(self, make: Callable[[], Awaitable[T]], *, within: float | None = None) -> T:
        """``await make()`` within ``within`` seconds (the guard's timeout by default); a
        failure opens the breaker and propagates.

        ``make`` is called only when the breaker allows it, so no coroutine is created (and
        left un-awaited) for a call that is skipped."""
        if not self.breaker.allows():
            raise BreakerOpen("skipped: Redis failed moments ago")
        try:
            # asyncio.timeout, not wait_for: no extra task per call on the hot path.
            async with asyncio.timeout(self.timeout if within is None else within):
                result = await make()
        except REDIS_FAILURES as exc:
            metrics.count_redis_error(exc)
            self.breaker.failed(exc)
            raise
        if self.breaker.tripped:
            self.breaker.succeeded()
        return result

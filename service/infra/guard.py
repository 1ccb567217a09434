"""One guarded Redis call: a short timeout and a breaker shared by the whole process.

The per-request Redis work (cache lookups, rate limits, view counts, enqueueing) must never
hold a request hostage to a slow or dead Redis. Every such call goes through
``RedisGuard.call``: bounded by a timeout, and after a failure the breaker stays open for
``pause`` seconds, during which calls fail at once (``BreakerOpen``) without touching Redis;
then one call probes again. A dead Redis therefore costs one short wait, not one per request.

**The timeout counts the loop's time, not the clock's.** Every call shares its process's one
event loop; when that loop is saturated (a burst of requests, a long callback), a healthy Redis
answers in time but the answer waits in the socket until the loop gets to it. So the budget is
measured in time the loop was able to run: when it runs out, the time the loop was behind
meanwhile (``service.infra.loop_lag``, and the lateness of the timeout's own timer) is given
back to the call, up to ``MAX_STRETCH`` times its budget in all. A timeout counts as a Redis
failure (and opens the breaker) only when the loop gave Redis at least half the budget; one the
process caused by lagging (``LaggedOut``) fails that call alone, and the breaker stays closed.
Refused connections and Redis errors always count.

Callers catch ``service.core.errors.REDIS_FAILURES`` and decide what an outage means for them:
the cache serves from PostgreSQL, security rate limits refuse (503) while the others fail open,
enqueueing reports False.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.core.errors import REDIS_FAILURES
from service.infra import metrics
from service.infra.loop_lag import LoopLag

log = logging.getLogger(__name__)

T = TypeVar("T")

# A call whose loop keeps lagging gives up after this many times its budget, however little of
# that time Redis had: requests stay bounded even in a process that is badly behind.
MAX_STRETCH = 20


class LaggedOut(TimeoutError):
    """A Redis call gave up because this process's event loop was behind, not because Redis
    was slow; the breaker is left closed."""


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
    """Runs Redis calls under ``timeout`` seconds of loop time and one ``Breaker``.

    ``lag`` measures the loop (started by the API's lifespan); while it is not running, the
    lateness of each call's own timer is the only sign of a lagging loop. A call waits at most
    ``stretch`` times its budget, however far behind the loop is."""

    def __init__(
        self,
        *,
        timeout: float,
        breaker_seconds: float,
        lag: LoopLag | None = None,
        stretch: float = MAX_STRETCH,
    ) -> None:
        self.timeout = timeout
        self.breaker = Breaker(breaker_seconds)
        self.lag = lag or LoopLag()
        self.stretch = stretch

    def allows(self) -> bool:
        """False while the breaker is open (calls would fail at once)."""
        return self.breaker.allows()

    async def call(self, make: Callable[[], Awaitable[T]], *, within: float | None = None) -> T:
        """``await make()`` within ``within`` seconds of loop time (the guard's timeout by
        default); a Redis failure opens the breaker and propagates, a timeout the process's
        own lag caused raises ``LaggedOut`` and leaves the breaker closed.

        ``make`` is called only when the breaker allows it, so no coroutine is created (and
        left un-awaited) for a call that is skipped."""
        if not self.breaker.allows():
            raise BreakerOpen("skipped: Redis failed moments ago")
        budget = self.timeout if within is None else within
        clock = _LoopClock(self.lag, budget, longest=budget * self.stretch)
        try:
            # asyncio.timeout, not wait_for: no extra task per call on the hot path.
            async with asyncio.timeout(None) as bound:
                clock.watch(bound)
                try:
                    result = await make()
                finally:
                    clock.unwatch()
        except REDIS_FAILURES as exc:
            if isinstance(exc, TimeoutError | RedisTimeoutError) and clock.lagged():
                log.info(
                    "Redis call gave up after %.2fs, %.2fs of them with this process's event "
                    "loop behind: not counted as a Redis failure",
                    clock.elapsed(),
                    clock.stalled(),
                )
                raise LaggedOut(f"event loop behind for {clock.stalled():.2f}s") from exc
            if isinstance(exc, TimeoutError | RedisTimeoutError):
                log.warning(
                    "Redis call timed out after %.2fs, %.2fs of them with the event loop behind",
                    clock.elapsed(),
                    clock.stalled(),
                )
            metrics.count_redis_error(exc)
            self.breaker.failed(exc)
            raise
        if self.breaker.tripped:
            self.breaker.succeeded()
        return result


class _LoopClock:
    """One call's budget, counted in time its loop was able to run."""

    def __init__(self, lag: LoopLag, budget: float, *, longest: float) -> None:
        self.lag = lag
        self.budget = budget
        self.longest = longest
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.stalled_before = lag.stalled()
        self.late = 0.0  # how late this clock's own timers fired, in all
        self.bound: asyncio.Timeout | None = None
        self.timer: asyncio.TimerHandle | None = None

    def elapsed(self) -> float:
        return self.loop.time() - self.started

    def stalled(self) -> float:
        """Seconds of this call during which the loop was behind (at least as measured)."""
        return min(self.elapsed(), max(self.lag.stalled() - self.stalled_before, self.late))

    def available(self) -> float:
        return self.elapsed() - self.stalled()

    def lagged(self) -> bool:
        """Whether the loop gave this call less than half its budget of running time."""
        return self.available() < self.budget / 2

    def watch(self, bound: asyncio.Timeout) -> None:
        self.bound = bound
        self.timer = self.loop.call_at(self.started + self.budget, self._check, self.budget)

    def unwatch(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check(self, after: float) -> None:
        """The budget may be spent: expire the call, or give back the time the loop lagged."""
        assert self.bound is not None
        now = self.loop.time()
        self.late += max(0.0, now - (self.started + after))
        left = self.budget - self.available()
        elapsed = now - self.started
        if left <= 0 or elapsed >= self.longest:
            self.timer = None
            self.bound.reschedule(now)  # expires at once: TimeoutError in the call
            return
        next_check = min(elapsed + left, self.longest)
        self.timer = self.loop.call_at(self.started + next_check, self._check, next_check)

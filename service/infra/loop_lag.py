"""How late this process's event loop runs: the time it spent unable to serve a callback.

A task sleeps ``interval`` seconds over and over; each time it wakes up later than asked, the
difference is time the loop was busy elsewhere (a long callback, a burst of requests, the OS
not scheduling the process). ``stalled()`` adds those delays up into a clock that only moves
while the loop is behind, including the delay of a wake-up that is overdue right now, so a
caller comparing two readings learns how much of the time in between the loop could not run
anything. ``service.infra.guard`` uses it so that a Redis call that ran out of time because
the process itself was saturated is not taken for a Redis failure.

The worst delay of each ``window`` is exported as ``event_loop_lag_seconds`` (the most lagging
live worker in multiprocess mode).
"""

from __future__ import annotations

import asyncio

from service.infra import metrics
from service.infra.periodic import Background


class LoopLag:
    """Measures the running loop's lag from ``start()`` until ``stop()``; reads 0 otherwise."""

    def __init__(self, interval: float = 0.025, window: float = 1.0) -> None:
        self.interval = interval
        self.window = window
        self._total = 0.0  # seconds of delay of every wake-up so far
        # The worst delay of the last complete window (what event_loop_lag_seconds shows).
        self.recent_worst = 0.0
        self._due: float | None = None  # loop time the sleeping monitor should wake up at
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task = Background(self._run, name="loop-lag")

    @property
    def running(self) -> bool:
        return self._task.running

    def start(self) -> None:
        """Start measuring on the running loop (idempotent)."""
        if not self._task.running:
            self._loop = asyncio.get_running_loop()
            self._task.start()

    async def stop(self) -> None:
        await self._task.stop()
        self._due = None
        self.recent_worst = 0.0
        metrics.EVENT_LOOP_LAG.set(0)

    def current(self) -> float:
        """How overdue the monitor's wake-up is at this moment: how far behind the loop is
        now (0 while the loop keeps up, or when not measuring)."""
        if self._due is None or self._loop is None:
            return 0.0
        return max(0.0, self._loop.time() - self._due)

    def stalled(self) -> float:
        """Seconds the loop has been behind since ``start()``; grows only while it lags."""
        return self._total + self.current()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        window_end = loop.time() + self.window
        worst = 0.0
        while True:
            self._due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            late = max(0.0, now - self._due)
            self._total += late
            worst = max(worst, late)
            if now >= window_end:
                self.recent_worst = worst
                metrics.EVENT_LOOP_LAG.set(worst)
                worst = 0.0
                window_end = now + self.window

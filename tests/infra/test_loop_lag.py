"""service.infra.loop_lag: a blocked loop shows as lag, at once and in the gauge afterwards."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from service.infra.loop_lag import LoopLag

BLOCK = 0.3


def hold_the_loop(seconds: float) -> None:
    """Block the running event loop on purpose, as a long callback would."""
    time.sleep(seconds)


async def test_a_blocked_loop_is_behind_by_the_time_it_was_blocked() -> None:
    lag = LoopLag(interval=0.02)
    lag.start()
    try:
        await asyncio.sleep(0.1)  # the monitor is sleeping, due back within 20 ms
        before = lag.stalled()
        hold_the_loop(BLOCK)  # the loop cannot run anything meanwhile
        # Read before the monitor could run: its wake-up is overdue by most of the block.
        assert lag.current() >= BLOCK - lag.interval
        await asyncio.sleep(0.1)
        assert lag.stalled() - before >= BLOCK - lag.interval
    finally:
        await lag.stop()
    assert not lag.running
    assert lag.current() == 0


async def test_the_worst_lag_of_a_window_is_exported() -> None:
    lag = LoopLag(interval=0.02, window=0.5)
    lag.start()
    try:
        await asyncio.sleep(0.05)
        hold_the_loop(BLOCK)
        seen = 0.0
        deadline = time.monotonic() + 10
        while seen < BLOCK - lag.interval and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            seen = max(seen, REGISTRY.get_sample_value("event_loop_lag_seconds") or 0.0)
        assert seen >= BLOCK - lag.interval
    finally:
        await lag.stop()
    assert REGISTRY.get_sample_value("event_loop_lag_seconds") == 0

"""A coroutine that runs in the background of a process from ``start()`` until ``stop()``.

The loop lag monitor, the metrics sampler and the view buffer's retry loop each run one such
task on the process's event loop; this is their one start and stop: ``start()`` is
idempotent and needs a running loop, ``stop()`` cancels the task and waits for it to end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any


class Background:
    """``run()`` as one task of the running loop, from ``start()`` until ``stop()``."""

    def __init__(self, run: Callable[[], Coroutine[Any, Any, None]], *, name: str) -> None:
        self._run = run
        self.name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Start the task on the running loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task and wait for it to end (safe to call twice, or before start)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def every(seconds: float, step: Callable[[], Awaitable[None] | None]) -> Background:
    """A ``Background`` that calls ``step`` (a plain or an async function) every ``seconds``,
    the first time at once."""

    async def repeat() -> None:
        while True:
            done = step()
            if done is not None:
                await done
            await asyncio.sleep(seconds)

    return Background(repeat, name=getattr(step, "__name__", "periodic"))

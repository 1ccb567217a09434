"""Worker settings for tests: Newsdesk's jobs plus ``nap``, a job that takes a while."""

from __future__ import annotations

import asyncio
from typing import Any

from service.jobs.runner import job
from worker import WorkerSettings as NewsdeskWorkerSettings


@job
async def nap(ctx: dict[str, Any], seconds: float, marker: str) -> str:
    """Marks ``<marker>:started`` in Redis, sleeps, then marks ``<marker>:finished``."""
    redis = ctx["redis"]
    await redis.incr(f"{marker}:started")
    await asyncio.sleep(seconds)
    await redis.incr(f"{marker}:finished")
    return "rested"


# arq reads a settings class's own __dict__ (not inherited attributes): copy, then extend.
WorkerSettings = type(
    "WorkerSettings",
    (),
    {
        **{k: v for k, v in vars(NewsdeskWorkerSettings).items() if not k.startswith("__")},
        "functions": [*NewsdeskWorkerSettings.functions, nap],
    },
)

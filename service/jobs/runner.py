"""What every job runs inside: its ids in every log line, its outcome counted.

``job`` wraps a job function so its log lines carry its arq job id and the id of the request
that caused it (``service.core.logs``), and counts its outcome in the Redis hash
``keys.JOB_STATS`` (``<function>:completed | retried | failed``, shared by all workers; read
by ``service.infra.queue.job_stats``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from arq import Retry

from service.core import keys
from service.core.errors import REDIS_FAILURES
from service.core.logs import current_job_id
from service.core.request_id import current_request_id

log = logging.getLogger(__name__)

R = TypeVar("R")


def job(func: Callable[..., Awaitable[R]]) -> Callable[..., Coroutine[Any, Any, R]]:
    """Run ``func(ctx, ...)`` with its job id and originating request id in every log line.

    The job receives ``request_id`` as a keyword (added by ``enqueue``); ``func`` does not."""

    name = func.__name__

    @functools.wraps(func)
    async def run(ctx: dict[str, Any], *args: Any, request_id: str = "-", **kwargs: Any) -> R:
        # arq runs each job in a task of its own: these context variables stay with it.
        current_request_id.set(request_id)
        current_job_id.set(str(ctx.get("job_id", "-")))
        try:
            result = await func(ctx, *args, **kwargs)
        except Retry:
            await _count(ctx, name, "retried")
            raise
        except Exception:
            await _count(ctx, name, "failed")
            raise
        await _count(ctx, name, "completed")
        return result

    return run


async def _count(ctx: dict[str, Any], name: str, outcome: str) -> None:
    redis = ctx.get("redis")
    if redis is None:
        return
    try:
        async with asyncio.timeout(1):
            await redis.hincrby(keys.JOB_STATS, f"{name}:{outcome}", 1)
    except REDIS_FAILURES as exc:
        log.warning("job outcome not counted: %s", exc)

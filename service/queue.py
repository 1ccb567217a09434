"""Background jobs from both sides: enqueueing from the API, and what every job runs inside.

``enqueue`` puts a job on arq's queue without ever failing the caller: a write must succeed
while Redis is down (work left undone is found again by a sweeper, see
``service.processing``). Each call is bounded and shares the cache's breaker, so a dead Redis
costs one short wait, not one per request. The request id travels with the job.

``job`` wraps a job function so its log lines carry its arq job id and the id of the request
that caused it (``service.logs``), and counts its outcome in the Redis hash ``jobs:stats``
(``<function>:completed | retried | failed``, shared by all workers); ``job_stats`` reads
those counts and the queue depth (for ``GET /metrics``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from arq import Retry
from arq.constants import default_queue_name
from redis.exceptions import RedisError

from service.logs import current_job_id
from service.request_id import current_request_id
from service.resources import Resources

log = logging.getLogger(__name__)

R = TypeVar("R")

STATS_KEY = "jobs:stats"
OUTCOMES = ("completed", "retried", "failed")


async def enqueue(
    res: Resources, function: str, *args: Any, job_id: str | None = None, **kwargs: Any
) -> bool:
    """Enqueue ``function(*args, **kwargs)``; False (logged) when Redis cannot take it.

    A ``job_id`` makes duplicates collapse: arq refuses a second job with the id of one
    queued, running or with its result still kept."""
    assert res.redis is not None and res.cache is not None
    breaker = res.cache.breaker
    if not breaker.allows():
        log.warning("job %s not enqueued: Redis is unavailable", function)
        return False
    try:
        async with asyncio.timeout(res.settings.redis_socket_timeout):
            await res.redis.enqueue_job(
                function, *args, _job_id=job_id, request_id=current_request_id.get(), **kwargs
            )
    except (RedisError, OSError, TimeoutError) as exc:
        breaker.failed(exc)
        log.warning("job %s not enqueued: Redis is unavailable (%s)", function, exc)
        return False
    return True


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
            await redis.hincrby(STATS_KEY, f"{name}:{outcome}", 1)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("job outcome not counted: %s", exc)


async def job_stats(res: Resources) -> dict[str, Any]:
    """``{"queued": n, "completed": n, "retried": n, "failed": n, "by_function": {...}}``."""
    assert res.redis is not None
    async with asyncio.timeout(res.settings.readiness_timeout):
        async with res.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(default_queue_name)
            pipe.hgetall(STATS_KEY)
            queued, raw = await pipe.execute()
    totals = dict.fromkeys(OUTCOMES, 0)
    by_function: dict[str, dict[str, int]] = {}
    for key, value in raw.items():
        function, _, outcome = key.decode().rpartition(":")
        if outcome in totals:
            totals[outcome] += int(value)
            by_function.setdefault(function, dict.fromkeys(OUTCOMES, 0))[outcome] = int(value)
    return {"queued": int(queued), **totals, "by_function": by_function}

"""The job queue seen from the API: enqueueing, and the queue's figures.

``enqueue`` puts a job on arq's queue without ever failing the caller: a write must succeed
while Redis is down (work left undone is found again by a sweeper, see
``service.domain.processing``). Each call goes through the process's ``RedisGuard``, so a
dead Redis costs one short wait, not one per request. The request id travels with the job.

``job_stats`` reads the queue depth and the outcomes every worker counts in
``keys.JOB_STATS`` (``service.jobs.runner``), for ``GET /metrics``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq.constants import default_queue_name

from service.core import keys
from service.core.errors import REDIS_FAILURES
from service.core.request_id import current_request_id
from service.infra.resources import Resources

log = logging.getLogger(__name__)

STATS_KEY = keys.JOB_STATS
OUTCOMES = ("completed", "retried", "failed")


async def enqueue(
    res: Resources, function: str, *args: Any, job_id: str | None = None, **kwargs: Any
) -> bool:
    """Enqueue ``function(*args, **kwargs)``; False (logged) when Redis cannot take it.

    A ``job_id`` makes duplicates collapse: arq refuses a second job with the id of one
    queued, running or with its result still kept."""
    redis = res.redis
    assert redis is not None
    try:
        await res.guard.call(
            lambda: redis.enqueue_job(
                function, *args, _job_id=job_id, request_id=current_request_id.get(), **kwargs
            ),
            within=res.settings.redis_socket_timeout,
        )
    except REDIS_FAILURES as exc:
        log.warning("job %s not enqueued: Redis is unavailable (%s)", function, exc)
        return False
    return True


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

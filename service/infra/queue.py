"""The job queue seen from the API: enqueueing.

``enqueue`` puts a job on arq's queue without ever failing the caller: a write must succeed
while Redis is down (work left undone is found again by a sweeper, see
``service.domain.processing``). Each call goes through the process's ``RedisGuard``, so a
dead Redis costs one short wait, not one per request. The request id travels with the job,
and so, when tracing is on, does the W3C ``traceparent`` of the current span
(``service.infra.tracing``), so the job's spans join the request's trace.
"""

from __future__ import annotations

import logging
from typing import Any

from service.core.errors import REDIS_FAILURES
from service.core.request_id import current_request_id
from service.infra import tracing
from service.infra.resources import Resources

log = logging.getLogger(__name__)


async def enqueue(
    res: Resources, function: str, *args: Any, job_id: str | None = None, **kwargs: Any
) -> bool:
    """Enqueue ``function(*args, **kwargs)``; False (logged) when Redis cannot take it.

    A ``job_id`` makes duplicates collapse: arq refuses a second job with the id of one
    queued, running or with its result still kept."""
    redis = res.redis
    assert redis is not None
    parent = tracing.traceparent()  # None when tracing is off: the job's keywords stay as is
    if parent is not None:
        kwargs[tracing.TRACEPARENT] = parent
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

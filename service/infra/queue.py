"""The job queue seen from the API: enqueueing.

``enqueue`` puts a job on arq's queue without ever failing the caller: a write must succeed
while Redis is down (work left undone is found again by a sweeper, see
``service.domain.processing``). Each call goes through the process's ``RedisGuard``, so a
dead Redis costs one short wait, not one per request. The request id travels with the job,
and so, when tracing is on, does the W3C ``traceparent`` of the current span
(``service.infra.tracing``), so the job's spans join the request's trace.

Each job goes on the queue of its kind (``QUEUES``, names in ``service.core.keys``): mail on
the interactive queue, article processing on the bulk one, so a backlog of bulk work never
delays a mail (the cron jobs are enqueued by the periodic workers themselves).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from service.core import keys
from service.core.errors import REDIS_FAILURES
from service.core.request_id import current_request_id
from service.infra import tracing
from service.infra.resources import Resources

log = logging.getLogger(__name__)


# The queue each job is enqueued on; any other job goes on the bulk queue.
QUEUES: dict[str, str] = {
    "send_email": keys.QUEUE_INTERACTIVE,
    "ping": keys.QUEUE_INTERACTIVE,
    "process_article": keys.QUEUE_BULK,
    "flush_views": keys.QUEUE_PERIODIC,
    "sweep_pending": keys.QUEUE_PERIODIC,
    "prune_view_batches": keys.QUEUE_PERIODIC,
}

# What became of a job handed to ``submit``: ``queued``; ``duplicate`` (arq refused it, a job
# with its id is queued, running or has its result kept); ``unavailable`` (Redis is not).
Outcome = Literal["queued", "duplicate", "unavailable"]


def queue_of(function: str) -> str:
    """The queue ``function`` is enqueued on."""
    return QUEUES.get(function, keys.QUEUE_BULK)


async def submit(
    res: Resources, function: str, *args: Any, job_id: str | None = None, **kwargs: Any
) -> Outcome:
    """Enqueue ``function(*args, **kwargs)`` on its queue (``queue_of``) and say what became
    of it; never raises for Redis being unavailable (logged)."""
    redis = res.redis
    assert redis is not None
    parent = res.tracing.traceparent()  # None when tracing is off: the job's keywords stay as is
    if parent is not None:
        kwargs[tracing.TRACEPARENT] = parent
    try:
        job = await res.guard.call(
            lambda: redis.enqueue_job(
                function,
                *args,
                _job_id=job_id,
                _queue_name=queue_of(function),
                request_id=current_request_id.get(),
                **kwargs,
            ),
            within=res.settings.redis_socket_timeout,
        )
    except REDIS_FAILURES as exc:
        log.warning("job %s not enqueued: Redis is unavailable (%s)", function, exc)
        return "unavailable"
    return "queued" if job is not None else "duplicate"


async def enqueue(
    res: Resources, function: str, *args: Any, job_id: str | None = None, **kwargs: Any
) -> bool:
    """Enqueue ``function(*args, **kwargs)``; False (logged) when Redis cannot take it.

    A ``job_id`` makes duplicates collapse: arq refuses a second job with the id of one
    queued, running or with its result still kept (True: the job is there)."""
    return await submit(res, function, *args, job_id=job_id, **kwargs) != "unavailable"

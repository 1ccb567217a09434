"""A backlog on a job queue, made the way the API makes one: arq jobs enqueued on Redis."""

from __future__ import annotations

import datetime as dt

from arq.connections import ArqRedis

from service.core import keys

FIRST_ID = 910_000_000  # articles that do not exist: a worker that runs such a job finds none


async def enqueue_backlog(
    queue: ArqRedis,
    count: int,
    *,
    waiting_since: float = 0.0,
    queue_name: str = keys.QUEUE_BULK,
    first_id: int = FIRST_ID,
) -> None:
    """``count`` ``process_article`` jobs on ``queue_name``, the first due ``waiting_since``
    seconds ago (arq scores a job by the time it may run: a job deferred to a past time is
    a job that has waited since then)."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=waiting_since)
    for n in range(count):
        article_id = first_id + n
        job = await queue.enqueue_job(
            "process_article",
            article_id,
            1,
            _job_id=keys.process_job_id(article_id, 1),
            _queue_name=queue_name,
            _defer_until=since if waiting_since else None,
        )
        assert job is not None

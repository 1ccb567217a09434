"""How far behind the background work is, read from Redis in one round trip.

The same figures serve the worker's ``/metrics`` (``service.jobs.metrics``), the readiness
body of ``/readyz`` (``service.web.api.health``) and ``python -m service queue``
(``service.cli.queue_status``). For each job queue (``service.core.keys``):

* ``ready``: jobs due now (arq scores a queued job by the time it may run, in ms: its
  enqueue time, or the time it was deferred to, a retry's included), ``deferred``: jobs
  scheduled for later, ``depth``: both;
* ``oldest_job_age_seconds``: now minus the lowest score among the ready jobs, i.e. how long
  the job at the head of the queue has been waiting to run (0 when none is due);
* ``running``: whether a worker of that queue is alive: arq's health record
  (``<queue>:health-check``), which each worker writes every 10 s with an 11 s expiry and
  deletes when it stops.

And for the view counters (``service.domain.view_counts``), the *flush lag*: how old the
oldest view counted in Redis and not yet in PostgreSQL can be. Views wait in
``views:pending`` (and, during a flush or after one that died, ``views:flushing``); every one
of them arrived after the last successful flush began, so the lag is ``now`` minus the time
that flush ended (``views:flushed-at``, written by every successful flush, one with nothing to
move included) while any view waits, and 0 when none does. It is short of the exact age by at
most the last flush's own duration (milliseconds), and unknown (``None``) while views wait
and no flush has ever succeeded. Healthy, it stays under ``VIEW_FLUSH_SECONDS`` plus a flush.

``QUEUE_BACKLOG_WARN_SECONDS`` (60 by default) is the figure an operator compares against:
a queue whose oldest ready job has waited longer, or views waiting longer to be flushed, are
marked ``backlog``; on the bulk queue it is the sign to add bulk workers (README, Operations).
A backlog is reported, never refused: writes still enqueue their jobs, and readiness does not
depend on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from arq.constants import health_check_key_suffix
from redis.asyncio import Redis

from service.core import keys
from service.core.errors import REDIS_FAILURES

log = logging.getLogger(__name__)

# Each job queue by the name its figures are labelled with (its role).
QUEUES = keys.QUEUES

# The arq queue a label names, and back (an unknown queue keeps its Redis name).
LABELS: dict[str, str] = {key: label for label, key in QUEUES.items()}


def queue_label(queue_key: str | None) -> str:
    """``bulk`` for ``arq:queue`` and so on; another queue's own name; ``unknown`` for none."""
    if not queue_key:
        return "unknown"
    return LABELS.get(queue_key, queue_key)


@dataclass(frozen=True)
class QueueState:
    name: str  # the label: interactive, bulk, periodic
    key: str  # the arq queue (a Redis sorted set)
    ready: int
    deferred: int
    oldest_job_age_seconds: float  # of the oldest ready job; 0 when none is ready
    running: bool  # a worker of this queue has recorded its health check within 11 s

    @property
    def depth(self) -> int:
        return self.ready + self.deferred

    def backlog(self, warn_seconds: float) -> bool:
        return self.oldest_job_age_seconds > warn_seconds


@dataclass(frozen=True)
class Backlog:
    queues: list[QueueState]
    views_pending_articles: int  # articles with views in views:pending
    views_flushing: bool  # a claimed batch not released yet (a flush running, or one that died)
    view_flushed_at: float | None  # Unix time the last successful flush ended
    read_at: float  # Unix time of the read

    @property
    def views_waiting(self) -> bool:
        return self.views_pending_articles > 0 or self.views_flushing

    @property
    def view_oldest_pending_seconds(self) -> float | None:
        """Bound on the age of the oldest view not yet in PostgreSQL (module docstring)."""
        if not self.views_waiting:
            return 0.0
        if self.view_flushed_at is None:
            return None
        return max(0.0, self.read_at - self.view_flushed_at)

    def view_backlog(self, warn_seconds: float) -> bool:
        lag = self.view_oldest_pending_seconds
        return self.views_waiting if lag is None else lag > warn_seconds

    def as_dict(self, warn_seconds: float) -> dict[str, Any]:
        """``{"queues": {label: {...}}, "views": {...}}``, the shape ``/readyz`` and
        ``python -m service queue --json`` show."""
        lag = self.view_oldest_pending_seconds
        return {
            "queues": {
                q.name: {
                    "depth": q.depth,
                    "ready": q.ready,
                    "deferred": q.deferred,
                    "oldest_job_age_seconds": round(q.oldest_job_age_seconds, 3),
                    "running": q.running,
                    "backlog": q.backlog(warn_seconds),
                }
                for q in self.queues
            },
            "views": {
                "pending_articles": self.views_pending_articles,
                "oldest_pending_seconds": None if lag is None else round(lag, 3),
                "last_flush_at": self.view_flushed_at,
                "backlog": self.view_backlog(warn_seconds),
            },
        }


async def read_backlog(redis: Redis) -> Backlog:
    """Every queue's figures and the view-flush lag, in one pipelined round trip."""
    now = time.time()
    now_ms = int(now * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        for key in QUEUES.values():
            pipe.zcard(key)
            pipe.zcount(key, "-inf", now_ms)
            pipe.zrangebyscore(key, "-inf", now_ms, start=0, num=1, withscores=True)
            pipe.exists(key + health_check_key_suffix)
        pipe.hlen(keys.VIEWS_PENDING)
        pipe.exists(keys.VIEWS_FLUSHING)
        pipe.get(keys.VIEWS_FLUSHED_AT)
        *per_queue, pending, flushing, flushed_at = await pipe.execute()
    queues = []
    for n, (label, key) in enumerate(QUEUES.items()):
        total, ready, head, alive = per_queue[4 * n : 4 * n + 4]
        oldest = max(0.0, now - float(head[0][1]) / 1000) if head else 0.0
        queues.append(
            QueueState(label, key, int(ready), int(total) - int(ready), oldest, bool(alive))
        )
    return Backlog(
        queues=queues,
        views_pending_articles=int(pending),
        views_flushing=bool(flushing),
        view_flushed_at=float(flushed_at) if flushed_at else None,
        read_at=now,
    )


async def backlog_detail(redis: Redis | None, within: float, warn_seconds: float) -> dict[str, Any]:
    """``Backlog.as_dict`` read within ``within`` seconds, or ``{}`` when Redis does not
    answer in time (a readiness body that lacks the figures, never a failed probe)."""
    if redis is None:
        return {}
    try:
        async with asyncio.timeout(within):
            backlog = await read_backlog(redis)
    except REDIS_FAILURES as exc:
        log.warning("readiness: queue figures not read: %s", exc)
        return {}
    return backlog.as_dict(warn_seconds)

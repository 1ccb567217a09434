"""arq job functions and cron jobs. arq delivers at least once, so every job is idempotent.

``ctx`` is arq's per-worker context: ``ctx["resources"]`` holds the engines and the Redis
client that ``worker.startup`` created on the worker's own loop; ``ctx["job_try"]`` counts
tries from 1. Each function is wrapped by ``service.queue.job``, so its log lines carry its
job id and the id of the request that enqueued it.
"""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry
from sqlalchemy import text

from service import processing, views
from service.articles import LISTS_GENERATION, article_generation
from service.queue import enqueue, job
from service.resources import Resources

log = logging.getLogger(__name__)


def _resources(ctx: dict[str, Any]) -> Resources:
    res: Resources = ctx["resources"]
    assert res.sessionmaker is not None and res.redis is not None
    return res


@job
async def ping(ctx: dict[str, Any]) -> str:
    """Round-trip through PostgreSQL: proves a worker is up and can reach the database."""
    res = _resources(ctx)
    assert res.engine is not None
    async with res.engine.connect() as conn:
        value = (await conn.execute(text("SELECT 'pong'"))).scalar_one()
    return str(value)


@job
async def flush_views(ctx: dict[str, Any]) -> int:
    """Move view counts from Redis into ``articles.views`` (``service.views``); returns the
    views added by this run."""
    res = _resources(ctx)
    assert res.redis is not None and res.sessionmaker is not None
    batch = await views.claim(res.redis)
    if batch is None:
        return 0
    added = await views.apply(res.sessionmaker, batch, res.settings.view_flush_batch)
    generations = [article_generation(i) for i in batch.counts]
    await views.release(res.redis, batch, [*generations, LISTS_GENERATION])
    if added:
        log.info("views: %d added to %d articles (batch %s)", added, len(batch.counts), batch.id)
    return added


@job
async def prune_view_batches(ctx: dict[str, Any]) -> int:
    """Forget applied view batches older than a week (daily)."""
    res = _resources(ctx)
    assert res.sessionmaker is not None
    async with res.sessionmaker() as session:
        return await views.prune(session)


@job
async def process_article(ctx: dict[str, Any], article_id: int, version: int) -> str:
    """Summary and keywords for ``article_id`` at ``version`` (``service.processing``)."""
    res = _resources(ctx)
    assert res.sessionmaker is not None and res.redis is not None
    try:
        outcome = await processing.process(
            res.sessionmaker,
            article_id,
            version,
            attempt=int(ctx.get("job_try", 1)),
            max_tries=res.settings.process_max_tries,
        )
    except processing.RetryLater as retry:
        raise Retry(defer=retry.delay) from retry
    if outcome != "skipped":
        await res.redis.incr(article_generation(article_id))
        await res.redis.incr(LISTS_GENERATION)
    log.info("article %s version %s: %s", article_id, version, outcome)
    return outcome


@job
async def sweep_pending(ctx: dict[str, Any]) -> int:
    """Enqueue every article pending for longer than ``PROCESS_STALE_SECONDS`` (its job was
    lost, e.g. Redis was down when it was written); returns how many were found."""
    res = _resources(ctx)
    assert res.sessionmaker is not None
    async with res.sessionmaker() as session:
        stale = await processing.stale_pending(session, res.settings.process_stale_seconds)
    for article_id, version in stale:
        await enqueue(
            res,
            "process_article",
            article_id,
            version,
            job_id=processing.job_id(article_id, version),
        )
    if stale:
        log.info("sweeper: %d pending article(s) enqueued again", len(stale))
    return len(stale)

"""Every arq job function and cron job. arq delivers at least once, so every job is idempotent.

``ctx`` is arq's per-worker context: ``ctx["resources"]`` holds the engines and the Redis
client that ``service.jobs.worker.startup`` created on the worker's own loop; ``ctx["job_try"]``
counts tries from 1. Each function is wrapped by ``service.jobs.runner.job``, so its log lines
carry its job id and the id of the request that enqueued it. The work itself is in
``service.domain``; a job reads its arguments, calls it and says what happened.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import aiosmtplib
from arq import Retry
from sqlalchemy import text

from service.core import keys
from service.domain import processing, view_counts
from service.domain.password_reset import PASSWORD_RESET, send_password_reset
from service.domain.text_analysis import analyse
from service.infra import db_cleanup
from service.infra.queue import submit
from service.infra.resources import Resources
from service.jobs.metrics import record_flush
from service.jobs.runner import job

log = logging.getLogger(__name__)


def _resources(ctx: dict[str, Any]) -> Resources:
    """The worker's started ``Resources`` (``res.clients`` raises before its start-up)."""
    res: Resources = ctx["resources"]
    return res


async def _move_on(res: Resources, *generation_keys: str) -> None:
    """Move cache generations on, on the cache's Redis (CACHE_REDIS_URL or REDIS_URL); a
    failure fails the job, which is tried again."""
    await res.clients.cache.move_on(generation_keys)


@job
async def ping(ctx: dict[str, Any]) -> str:
    """Round-trip through PostgreSQL: proves a worker is up and can reach the database."""
    res = _resources(ctx)
    async with db_cleanup.connection_scope(res.clients.engine) as conn:
        value = (await conn.execute(text("SELECT 'pong'"))).scalar_one()
    return str(value)


# --- view counts ----------------------------------------------------------------------------


@job
async def flush_views(ctx: dict[str, Any]) -> int:
    """Move view counts from Redis into ``articles.views`` (``service.domain.view_counts``);
    returns the views added by this run."""
    res = _resources(ctx)
    batch = await view_counts.claim(res.clients.redis)
    if batch is None:
        await res.clients.redis.set(keys.VIEWS_FLUSHED_AT, time.time())  # for the flush lag metric
        return 0
    added = await view_counts.apply(res.clients.sessionmaker, batch, res.settings.view_flush_batch)
    # A view is not an edit: articles and list pages stay cached (their bodies hold no count,
    # or one as of their caching); only the popular ranking, which is ordered by views, moves.
    # Before the release (the cache may be on another Redis): if it fails, the batch is still
    # claimed, and the next flush applies nothing twice and moves the ranking on then.
    await _move_on(res, keys.POPULAR_GENERATION)
    await view_counts.release(res.clients.redis, batch, [])
    await res.clients.redis.set(keys.VIEWS_FLUSHED_AT, time.time())
    record_flush(len(batch.counts), added)
    if added:
        log.info("views: %d added to %d articles (batch %s)", added, len(batch.counts), batch.id)
    return added


@job
async def prune_view_batches(ctx: dict[str, Any]) -> int:
    """Forget applied view batches older than a week (daily)."""
    res = _resources(ctx)
    async with db_cleanup.session_scope(res.clients.sessionmaker) as session:
        return await view_counts.prune(session)


# --- article processing ---------------------------------------------------------------------


@job
async def process_article(ctx: dict[str, Any], article_id: int, version: int) -> str:
    """Summary and keywords for ``article_id`` at ``version`` (``service.domain.processing``)."""
    res = _resources(ctx)
    try:
        outcome = await processing.process(
            res.clients.engine,
            article_id,
            version,
            attempt=int(ctx.get("job_try", 1)),
            max_tries=res.settings.process_max_tries,
            analyser=analyse,
            offload=ctx.get("offload"),  # the worker's CpuPool.run; a thread without one
        )
    except processing.RetryLater as retry:
        raise Retry(defer=retry.delay) from retry
    if outcome != "skipped":
        # The cached article and every cached list move on, in one round trip.
        await _move_on(res, keys.article_generation(article_id), keys.ARTICLES_GENERATION)
    log.info("article %s version %s: %s", article_id, version, outcome)  # with its request id
    return outcome


# Articles read per query by the sweeper (keyset pages by id).
SWEEP_PAGE = 1000


@job
async def sweep_pending(ctx: dict[str, Any]) -> dict[str, int]:
    """Enqueue again every article pending for longer than ``PROCESS_STALE_SECONDS`` (its job
    was lost, e.g. Redis was down when it was written), all of them, ``SWEEP_PAGE`` at a time.

    Returns and logs what became of them: ``enqueued`` (a job put on the bulk queue) and
    ``already_queued`` (arq refused it: the job with its id is still queued, e.g. behind a
    backlog, running, or finished within the minute its result is kept). When Redis fails
    midway the sweep stops there (logged); the next one starts over."""
    res = _resources(ctx)
    counts = {"enqueued": 0, "already_queued": 0}
    after_id = 0
    stopped = False
    while not stopped:
        async with db_cleanup.session_scope(res.clients.sessionmaker) as session:
            page = await processing.stale_pending(
                session, res.settings.process_stale_seconds, after_id=after_id, limit=SWEEP_PAGE
            )
        for article_id, version in page:
            outcome = await submit(
                res,
                "process_article",
                article_id,
                version,
                job_id=keys.process_job_id(article_id, version),
            )
            if outcome == "unavailable":
                stopped = True
                break
            counts["enqueued" if outcome == "queued" else "already_queued"] += 1
        if len(page) < SWEEP_PAGE:
            break
        after_id = page[-1][0]
    if any(counts.values()) or stopped:
        log.info(
            "sweeper: %d pending article(s) enqueued again, %d already queued%s",
            counts["enqueued"],
            counts["already_queued"],
            "; stopped: Redis is unavailable" if stopped else "",
        )
    return counts


# --- mail -----------------------------------------------------------------------------------


@job
async def send_email(ctx: dict[str, Any], kind: str, to: str, link: str | None = None) -> str:
    """Send the mail of ``kind`` to the address ``to`` (``service.domain.password_reset``);
    ``link`` is the template of the link in it, made by the request that asked for the mail.

    Returns ``sent`` or ``skipped`` (kept by arq as the job's result: never the token)."""
    if kind != PASSWORD_RESET:
        log.error("send_email: unknown kind of mail %r; nothing sent", kind)
        return "skipped"
    res = _resources(ctx)
    try:
        sent = await send_password_reset(res, to, now=time.time(), link=link)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        # The mail server (or the database) is unreachable: try again later, up to arq's
        # max_tries. (Should the server have taken the message after all, the user gets two
        # mails, both with a working token.)
        tries = int(ctx.get("job_try", 1))
        delay = min(300, 10 * tries)
        log.warning("send_email: failed on try %d (%s); retrying in %ds", tries, exc, delay)
        raise Retry(defer=delay) from exc
    return "sent" if sent else "skipped"

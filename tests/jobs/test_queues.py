"""The job queues (service.core.keys, service.jobs.worker): with thousands of process_article
jobs backed up on the bulk queue, the cron jobs still run on time and a password-reset mail
still goes out at once, because neither waits on that queue.

One real worker process serves all three queues, as ``make run`` starts it, its bulk worker
held to one job at a time so the backlog lasts the whole module; a real API asks for the
mail, a real SMTP server receives it."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from service.cli.embedded import EmbeddedRedis
from service.core import keys
from tests.conftest import LiveServers, Workers
from tests.support.api import register
from tests.support.live import LiveServer
from tests.support.smtp import SmtpServer
from tests.support.worker import WorkerProcess

BACKLOG = 5_000
FLUSH_SECONDS = 2  # VIEW_FLUSH_SECONDS
WATCH_SECONDS = 15
# A flush may be late by a scheduling hiccup on a busy machine, never by the backlog: without
# its own queue the flush waits behind every bulk job and none happens in the whole window.
LONGEST_GAP = 2 * FLUSH_SECONDS + 3
MAIL_WITHIN = 10.0  # seconds; behind the backlog it would take minutes
FIRST_ID = 900_000_000  # articles that do not exist: each job looks, finds none, finishes


@pytest.fixture(scope="module")
async def queue(module_own_redis: EmbeddedRedis) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(module_own_redis.url()))
    yield pool
    await pool.aclose()


@pytest.fixture(scope="module")
async def backlog(queue: ArqRedis) -> int:
    """``BACKLOG`` process_article jobs on the bulk queue, as the API's writes enqueue them."""
    for article_id in range(FIRST_ID, FIRST_ID + BACKLOG):
        job = await queue.enqueue_job(
            "process_article",
            article_id,
            1,
            _job_id=keys.process_job_id(article_id, 1),
            _queue_name=keys.QUEUE_BULK,
        )
        assert job is not None
    return BACKLOG


@pytest.fixture(scope="module")
async def all_queues(
    module_own_redis: EmbeddedRedis, smtp: SmtpServer, backlog: int, module_worker: Workers
) -> WorkerProcess:
    process = module_worker(
        REDIS_URL=module_own_redis.url(),
        WORKER_MAX_JOBS="1",  # the bulk worker: one job at a time, the backlog stays
        VIEW_FLUSH_SECONDS=str(FLUSH_SECONDS),
        SMTP_HOST=smtp.host,
        SMTP_PORT=str(smtp.port),
    )
    await process.wait_for_log("Starting worker")
    return process


@pytest.fixture(scope="module")
def api(module_own_redis: EmbeddedRedis, module_live_server: LiveServers) -> LiveServer:
    return module_live_server(REDIS_URL=module_own_redis.url())


async def _still_backed_up(queue: ArqRedis) -> int:
    left = int(await queue.zcard(keys.QUEUE_BULK))
    assert left > BACKLOG // 2, f"the backlog drained ({left} left): the test proves nothing"
    return left


async def test_views_are_flushed_at_their_interval_behind_a_bulk_backlog(
    all_queues: WorkerProcess, queue: ArqRedis
) -> None:
    await _still_backed_up(queue)
    flushes: list[float] = []
    began = time.time()
    while time.time() - began < WATCH_SECONDS:
        stored = await queue.get(keys.VIEWS_FLUSHED_AT)
        if stored is not None and float(stored) >= began and float(stored) not in flushes:
            flushes.append(float(stored))
        await asyncio.sleep(0.05)
    ended = time.time()
    # The gaps between flushes, and those before the first and after the last in the window.
    marks = [began, *flushes, ended]
    gaps = [later - earlier for earlier, later in itertools.pairwise(marks)]
    print(f"flushes in {WATCH_SECONDS}s: {len(flushes)}; longest gap {max(gaps):.2f}s")
    assert max(gaps) <= LONGEST_GAP, (gaps, all_queues.log()[-3000:])
    await _still_backed_up(queue)


async def test_a_reset_mail_goes_out_at_once_behind_a_bulk_backlog(
    all_queues: WorkerProcess, api: LiveServer, smtp: SmtpServer, queue: ArqRedis
) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        user = await register(http)
        await _still_backed_up(queue)
        asked = time.monotonic()
        response = await http.post("/api/v1/auth/reset-password", json={"email": user["email"]})
        assert response.status_code == 202, response.text
        mail = await smtp.inbox.wait_for(user["email"], within=60)
        took = time.monotonic() - asked
    print(f"reset mail delivered {took:.2f}s after it was asked for")
    assert "reset" in str(mail["Subject"]).lower()
    assert took < MAIL_WITHIN, all_queues.log()[-3000:]
    await _still_backed_up(queue)

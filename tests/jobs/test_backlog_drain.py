"""What a client sees behind a backlog: an article created with ``BACKLOG`` process_article
jobs of real articles ahead of it, served by one default worker (``python -m service
worker``, ``WORKER_MAX_JOBS=10``), is answered 201 ``pending`` at once and becomes
``processed`` once the jobs ahead of it have run. The time it took is printed (run with
``-s``); it is a measurement, not an assertion (README, Operations, "Backpressure")."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from service.cli.embedded import EmbeddedRedis
from service.core import keys
from tests.conftest import LiveServers, Workers
from tests.jobs.test_tasks import wait_for_status
from tests.support.api import account, publish
from tests.support.live import LiveServer

BACKLOG = int(os.environ.get("BACKLOG_JOBS", "100"))  # README figure: BACKLOG_JOBS=500
WITHIN = 300.0  # a bound for a stuck worker, far above any expected drain time
WORDS = [
    "council",
    "budget",
    "housing",
    "transport",
    "river",
    "bridge",
    "election",
    "school",
    "hospital",
    "market",
    "energy",
    "weather",
    "harbour",
    "festival",
    "library",
    "museum",
    "railway",
    "airport",
    "stadium",
    "university",
    "research",
]


def content(n: int) -> str:
    """About 1,500 characters of text, different for each article."""
    sentences = []
    for i in range(24):
        picked = [WORDS[(n * 7 + i * 3 + k) % len(WORDS)] for k in range(8)]
        sentences.append(" ".join(picked).capitalize() + ".")
    return " ".join(sentences)


@pytest.fixture
async def queue(own_redis: EmbeddedRedis) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(own_redis.url()))
    yield pool
    await pool.aclose()


@pytest.fixture
def api(own_redis: EmbeddedRedis, live_server: LiveServers) -> LiveServer:
    return live_server(REDIS_URL=own_redis.url())


async def test_time_to_processed_behind_a_backlog_with_one_default_worker(
    worker: Workers,
    own_redis: EmbeddedRedis,
    queue: ArqRedis,
    api: LiveServer,
    pg: asyncpg.Connection,
) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
        ann = await account(http)
        # The backlog: real articles, their jobs queued while no worker runs.
        for start in range(0, BACKLOG, 25):
            await asyncio.gather(
                *(
                    publish(http, ann, title=f"Backlog {n}", content=content(n))
                    for n in range(start, min(start + 25, BACKLOG))
                )
            )
        assert await queue.zcard(keys.QUEUE_BULK) == BACKLOG

        process = worker(REDIS_URL=own_redis.url(), ready="Starting worker")
        created = time.monotonic()
        article = await publish(http, ann, title="Behind the backlog", content=content(-1))
        answered = time.monotonic() - created
        ahead = int(await queue.zcard(keys.QUEUE_BULK)) - 1
        assert article["status"] == "pending"
        found = await wait_for_status(pg, [article["id"]], "processed", WITHIN)
        took = time.monotonic() - created
        assert found == {article["id"]: "processed"}, process.log()[-3000:]
    print(
        f"\nbacklog {BACKLOG} process_article jobs ({ahead} still queued at creation), "
        f"one default worker: 201 pending in {answered * 1000:.0f} ms, processed after "
        f"{took:.1f} s ({ahead / took:.1f} jobs/s)"
    )

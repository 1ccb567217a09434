"""A backlog on the job queues, seen from the API: ``/readyz`` shows it and stays ready, and an
article created behind it is answered 201 ``pending`` with its job queued, never dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from service.cli.embedded import EmbeddedRedis
from service.core import keys
from tests.conftest import LiveServers
from tests.support.api import account, publish
from tests.support.backlog import enqueue_backlog
from tests.support.live import LiveServer

BACKLOG = 2_000  # process_article jobs ahead, no worker draining them
WAITING = 600.0  # seconds the oldest has waited: ten times the default threshold


@pytest.fixture
async def queue(own_redis: EmbeddedRedis) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(own_redis.url()))
    yield pool
    await pool.aclose()


@pytest.fixture
def api(own_redis: EmbeddedRedis, live_server: LiveServers) -> LiveServer:
    # A readiness result kept for no time: /readyz shows the backlog just made.
    return live_server(REDIS_URL=own_redis.url(), READINESS_CACHE_SECONDS="0")


async def test_readyz_shows_the_backlog_and_stays_ready(queue: ArqRedis, api: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        idle = (await http.get("/readyz")).json()
        assert idle["queues"]["bulk"] == {
            "depth": 0,
            "ready": 0,
            "deferred": 0,
            "oldest_job_age_seconds": 0,
            "running": False,
            "backlog": False,
        }
        assert idle["views"]["backlog"] is False

        await enqueue_backlog(queue, 50, waiting_since=WAITING)
        response = await http.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "database_read": "ok", "redis": "ok"}
    bulk = body["queues"]["bulk"]
    assert bulk["depth"] == bulk["ready"] == 50
    assert WAITING <= bulk["oldest_job_age_seconds"] < WAITING + 600
    assert bulk["backlog"] is True
    assert bulk["running"] is False
    assert set(body["queues"]) == {"interactive", "bulk", "periodic"}
    assert set(body["views"]) == {
        "pending_articles",
        "oldest_pending_seconds",
        "last_flush_at",
        "backlog",
    }


async def test_an_article_created_behind_a_deep_backlog_is_201_pending_and_queued(
    queue: ArqRedis, api: LiveServer
) -> None:
    await enqueue_backlog(queue, BACKLOG, waiting_since=WAITING)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        ann = await account(http)
        article = await publish(http, ann, title="Behind the backlog")
        ready = (await http.get("/readyz")).json()
    assert article["status"] == "pending"
    job_id = keys.process_job_id(article["id"], article["version"])
    # Queued behind the others (its score is its enqueue time: the newest), not refused.
    assert await queue.zscore(keys.QUEUE_BULK, job_id) is not None
    assert await queue.zcard(keys.QUEUE_BULK) == BACKLOG + 1
    assert await queue.zrank(keys.QUEUE_BULK, job_id) == BACKLOG
    assert ready["queues"]["bulk"]["depth"] == BACKLOG + 1
    assert ready["queues"]["bulk"]["backlog"] is True

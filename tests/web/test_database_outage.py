"""A PostgreSQL outage under a live server: 503 with Retry-After, logged once, nothing
half-written, and back to normal without a restart (service.web.errors,
service.web.transactions, service.infra.db_errors).

The server has a PostgreSQL of its own, stopped with a fast shutdown (what a failover or a
restart does to the clients) while requests keep coming.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis
from service.core import keys
from tests.conftest import LiveServers
from tests.support.api import account, publish
from tests.support.databases import plain_url
from tests.support.live import LiveServer

# A pool checkout must not wait long for a database that is gone.
OUTAGE_ENV: dict[str, Any] = {
    "DB_POOL_TIMEOUT": "5",
    "DB_CONNECT_TIMEOUT": "5",
    "READINESS_TIMEOUT": "5",
}


@pytest.fixture
def server(
    own_postgres: EmbeddedPostgres, own_redis: EmbeddedRedis, live_server: LiveServers
) -> LiveServer:
    return live_server(
        DATABASE_URL=own_postgres.url("outage"), REDIS_URL=own_redis.url(), **OUTAGE_ENV
    )


async def _count_articles(postgres: EmbeddedPostgres) -> int:
    conn = await asyncpg.connect(plain_url(postgres.url("outage")))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM articles"))
    finally:
        await conn.close()


async def test_an_outage_answers_503_with_retry_after_and_recovers(
    own_postgres: EmbeddedPostgres, server: LiveServer
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        author = await account(http)
        await publish(http, author)
        created = 1
        own_postgres.stop()
        answers = []
        for number in range(6):
            answers.append(await http.get(f"/api/v1/articles?tag=outage{number}"))
            write = await http.post(
                "/api/v1/articles",
                json={"title": f"During the outage {number}", "content": "Text."},
                headers=author.api_key,
            )
            answers.append(write)
            created += write.status_code == 201
        ready = await http.get("/readyz")
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"].isdigit()
            assert answer.json()["error"]["code"] == "service_unavailable"
        # Still ready (in its load balancer, answering cached reads), reporting the outage.
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["database"] != "ok"
        own_postgres.start()
        # Back without a restart: the pool reconnects on the next requests (bounded wait).
        for _ in range(120):
            listed = await http.get(f"/api/v1/articles?author_id={author.id}")
            if listed.status_code == 200:
                break
            await asyncio.sleep(0.5)
        assert listed.status_code == 200
        assert (await publish(http, author))["id"]
        created += 1
    assert await _count_articles(own_postgres) == created  # nothing half-written
    log = server.log_path.read_text()
    assert log.count("database unreachable") == 1, log
    assert "database reachable again" in log
    assert "Traceback" not in log
    assert "unhandled error" not in log


async def test_a_cached_article_is_still_answered_while_the_database_is_down(
    own_postgres: EmbeddedPostgres, own_redis: EmbeddedRedis, server: LiveServer
) -> None:
    redis = Redis.from_url(own_redis.url())
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        author = await account(http)
        article = await publish(http, author)
        path = f"/api/v1/articles/{article['id']}"
        fresh = await http.get(path)
        assert fresh.headers["X-Cache"] == "MISS"
        own_postgres.stop()
        hit = await http.get(path)  # the entry is current: answered from the cache
        assert (hit.status_code, hit.headers["X-Cache"]) == (200, "HIT")
        # The entry's generation moves on (as a view flush or an edit elsewhere does): the
        # current entry is missing and the database cannot rebuild it.
        await redis.incr(keys.article_generation(article["id"]))
        stale = await http.get(path)
        assert (stale.status_code, stale.headers["X-Cache"]) == (200, "STALE")
        assert stale.json() == fresh.json()
        assert stale.headers["ETag"] == fresh.headers["ETag"]
        # An article never read has nothing to fall back on: 503, not 404 or 500.
        missing = await http.get(f"/api/v1/articles/{article['id'] + 1000}")
        assert missing.status_code == 503
        own_postgres.start()
    await redis.aclose()

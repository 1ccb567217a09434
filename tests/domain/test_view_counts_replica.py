"""service.domain.view_counts against a lagging replica: right after a flush has moved an
article's views from Redis into the primary, ``GET /articles/{id}/views`` still shows every
view, although the replica its reads go to has not replayed the flush.

The replica is made to lag deterministically: ``pg_wal_replay_pause()`` stops it applying WAL
(it keeps receiving it). The replica's own row is read too, to show that the lag is real and
that without the fence the count would have dropped to 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from service.cli.embedded import EmbeddedRedis
from service.cli.replication import DATABASE, Replication
from service.core import keys
from tests.conftest import LiveServers, outside_basetemp
from tests.support.api import account, publish
from tests.support.databases import migrate
from tests.support.view_flush import flush_once

READS = 3


@pytest.fixture
def replication() -> Iterator[Replication]:
    with outside_basetemp("newsdesk-views-replica-") as base:
        # Asynchronous: a paused replica would not hold commits up either way (it still
        # receives and flushes WAL), but nothing here needs to wait for it.
        pair = Replication(base, synchronous_commit=False, max_connections=30)
        pair.start()
        try:
            yield pair
        finally:
            pair.stop()


def replica_views(replication: Replication, article_id: int) -> int | None:
    found = replication.replica.psql(
        f"SELECT views FROM articles WHERE id = {article_id}", DATABASE
    )
    return int(found) if found else None


async def replicated(replication: Replication, article_id: int) -> None:
    """Wait (at most 30 s) until the replica has the article."""
    deadline = time.monotonic() + 30
    while replica_views(replication, article_id) is None:
        assert time.monotonic() < deadline, "the replica never received the article"
        await asyncio.sleep(0.1)


async def test_views_right_after_a_flush_never_go_back(
    replication: Replication, live_server: LiveServers, own_redis: EmbeddedRedis
) -> None:
    migrate(replication.primary_url)
    server = live_server(
        DATABASE_URL=replication.database_url,
        DATABASE_READ_URL=replication.read_url,
        REDIS_URL=own_redis.url(),
        DB_POOL_SIZE="2",
        DB_MAX_OVERFLOW="1",
        CACHE_ENABLED="false",  # every read is a view counted in Redis, none in a cache hit
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        author = await account(http)
        article = (await publish(http, author, title="Counted across a flush"))["id"]
        for _ in range(READS):
            assert (await http.get(f"/api/v1/articles/{article}")).status_code == 200
        before = await http.get(f"/api/v1/articles/{article}/views")
        assert before.json()["views"] == READS
        await replicated(replication, article)

        replication.replica.psql("SELECT pg_wal_replay_pause()")
        try:
            assert await flush_once(replication.primary_url, own_redis.url()) == READS
            assert replica_views(replication, article) == 0  # the replica lags behind
            redis = Redis.from_url(own_redis.url())
            try:
                assert await redis.hget(keys.VIEWS_PENDING, str(article)) is None
                assert int(await redis.get(keys.VIEWS_FLUSHED_LSN) or 0) > 0
            finally:
                await redis.aclose()

            during = await http.get(f"/api/v1/articles/{article}/views")
            assert during.status_code == 200
            assert during.json()["views"] == READS
            # A view after the flush: the count goes on from the full one.
            assert (await http.get(f"/api/v1/articles/{article}")).status_code == 200
            assert (await http.get(f"/api/v1/articles/{article}/views")).json()[
                "views"
            ] == READS + 1
        finally:
            replication.replica.psql("SELECT pg_wal_replay_resume()")

        after = await http.get(f"/api/v1/articles/{article}/views")
        assert after.json()["views"] == READS + 1
        missing = await http.get("/api/v1/articles/999999999/views")
        assert missing.status_code == 404

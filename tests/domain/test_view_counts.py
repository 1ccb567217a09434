"""service.domain.view_counts: views counted in Redis in the request path, flushed to PostgreSQL
exactly once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from service.core.settings import normalise_database_url
from service.domain import view_counts as views
from tests.conftest import Workers
from tests.support.api import account, publish
from tests.support.databases import ServerStack


@pytest.fixture
async def redis(stack: ServerStack) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def sessions(stack: ServerStack) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(normalise_database_url(stack.database_url))
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def pending(redis: Redis, article_id: int) -> int:
    return int(await redis.hget(views.PENDING, str(article_id)) or 0)  # type: ignore[misc]


async def stored_views(pg: asyncpg.Connection, article_id: int) -> int:
    return int(await pg.fetchval("SELECT views FROM articles WHERE id = $1", article_id))


async def test_every_200_read_counts_one_view_and_nothing_else_does(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    ann = await account(client)
    article = await publish(client, ann)
    url = f"/api/v1/articles/{article['id']}"
    before = await pending(redis, article["id"])
    miss = await client.get(url)
    hit = await client.get(url)
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert await pending(redis, article["id"]) == before + 2
    etag = hit.headers["etag"]
    assert (await client.get(url, headers={"If-None-Match": etag})).status_code == 304
    assert await pending(redis, article["id"]) == before + 2  # a 304 is not a view
    other = await client.get(url, headers={"If-None-Match": '"0-0-x"'})
    assert other.status_code == 200 and other.headers["x-cache"] == "HIT"
    through_flask = await client.get(url, headers={"Content-Length": "0"})  # not the fast path
    assert through_flask.headers["x-cache"] == "HIT"
    assert through_flask.status_code == 200
    assert await pending(redis, article["id"]) == before + 4
    await client.get("/api/v1/articles/popular")
    assert (await client.get("/api/v1/articles/999999999")).status_code == 404
    assert await pending(redis, article["id"]) == before + 4
    assert await redis.hget(views.PENDING, "999999999") is None  # type: ignore[misc]


async def test_a_replayed_or_left_over_batch_changes_nothing(
    client: httpx.AsyncClient,
    redis: Redis,
    sessions: async_sessionmaker[AsyncSession],
    pg: asyncpg.Connection,
) -> None:
    """Each flush step repeated, as after a worker killed between any two of them."""
    ann = await account(client)
    article = await publish(client, ann)
    article_id = article["id"]
    await redis.hincrby(views.PENDING, str(article_id), 7)  # type: ignore[misc]
    batch = await views.claim(redis)
    assert batch is not None and batch.counts[article_id] == 7
    await redis.hincrby(views.PENDING, str(article_id), 5)  # type: ignore[misc]  # arrives while the batch flushes
    assert await views.apply(sessions, batch, size=1) >= 7
    assert await stored_views(pg, article_id) == 7
    # Killed before release: the next flush claims the same batch and applies nothing again.
    again = await views.claim(redis)
    assert again is not None and again.id == batch.id and again.counts == batch.counts
    assert await views.apply(sessions, again, size=1) == 0
    assert await stored_views(pg, article_id) == 7
    await views.release(redis, again, [])
    await views.release(redis, again, [])  # released twice: harmless
    # The views that arrived meanwhile form the next batch.
    following = await views.claim(redis)
    assert following is not None and following.id != batch.id
    assert following.counts[article_id] == 5
    await views.apply(sessions, following, size=1000)
    await views.release(redis, following, [])
    assert await stored_views(pg, article_id) == 12
    assert await views.claim(redis) is None


async def test_chunks_are_the_same_for_the_same_batch() -> None:
    batch = views.Batch("b", {3: 1, 1: 2, 2: 5})
    assert batch.chunks(2) == [("b:0", [1, 2], [2, 5]), ("b:1", [3], [1])]
    assert batch.chunks(2) == views.Batch("b", {2: 5, 3: 1, 1: 2}).chunks(2)


async def test_no_view_is_lost_or_counted_twice_when_workers_are_killed(
    client: httpx.AsyncClient, worker: Workers, tmp_path: Path, pg: asyncpg.Connection
) -> None:
    """Views from concurrent clients while workers flush every second and are killed with
    SIGKILL at random moments; after the last flush the count is exact, and the cached
    article shows it."""
    ann = await account(client)
    article = await publish(client, ann)
    url = f"/api/v1/articles/{article['id']}"
    sent = 0

    async def reader(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            response = await client.get(url)
            assert response.status_code == 200
            sent += 1

    rng = random.Random(7)
    for _ in range(3):
        process = worker(VIEW_FLUSH_SECONDS="1")
        try:
            readers = asyncio.gather(*(reader(40) for _ in range(8)))
            await asyncio.sleep(1.5 + rng.random() * 2)  # the worker is up and flushing
            process.kill()
            await readers
        finally:
            process.stop()
    assert sent == 3 * 8 * 40
    process = worker(VIEW_FLUSH_SECONDS="1")
    try:
        for _ in range(150):
            if await stored_views(pg, article["id"]) >= sent:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.5)  # two more flushes: nothing is applied twice
        assert await stored_views(pg, article["id"]) == sent, process.log()
        shown = (await client.get(f"{url}/views")).json()["views"]
        assert shown == sent  # the count endpoint: PostgreSQL plus what is not flushed yet
    finally:
        process.stop()

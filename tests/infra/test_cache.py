"""service.infra.cache and service.web.http_cache over a real server and a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from service.cli.embedded import EmbeddedRedis
from service.infra.cache import Count, ResponseCache
from service.infra.guard import RedisGuard
from tests.conftest import server_env
from tests.support.api import account, publish
from tests.support.databases import ServerStack
from tests.support.live import LiveServer


async def test_a_second_read_is_a_hit_and_an_edit_is_seen_at_once(
    client: httpx.AsyncClient,
) -> None:
    ann = await account(client)
    article = await publish(client, ann)
    url = f"/api/v1/articles/{article['id']}"
    first, second = await client.get(url), await client.get(url)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert first.content == second.content
    assert second.headers["etag"] == '"1-pending"'
    edited = await client.patch(url, json={"title": "Edited"}, headers=ann.api_key)
    assert edited.status_code == 200
    after = await client.get(url)
    assert after.headers["x-cache"] == "MISS"
    assert after.json()["title"] == "Edited" and after.headers["etag"] == '"2-pending"'
    # Lists and the ranking move on with every write too.
    listed = await client.get("/api/v1/articles", params={"author_id": ann.id})
    assert listed.json()["articles"][0]["title"] == "Edited"


async def test_a_matching_if_none_match_gets_304(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    article = await publish(client, ann)
    for url in (f"/api/v1/articles/{article['id']}", f"/api/v1/articles?author_id={ann.id}"):
        first = await client.get(url)
        etag = first.headers["etag"]
        again = await client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
        other = await client.get(url, headers={"If-None-Match": '"nope"'})
        assert other.status_code == 200
        assert first.headers["cache-control"].startswith("public, max-age=")


async def test_readers_never_see_an_older_version_after_a_write_returns(
    client: httpx.AsyncClient,
) -> None:
    """8 readers hammer one article while its author updates it 50 times; every read that
    started after an update returned shows that version or a newer one."""
    ann = await account(client)
    article = await publish(client, ann)
    url = f"/api/v1/articles/{article['id']}"
    confirmed = 1  # the newest version whose update has returned
    done = False
    violations: list[tuple[int, int]] = []
    reads = 0

    async def reader() -> None:
        nonlocal reads
        while not done:
            floor = confirmed
            response = await client.get(url)
            reads += 1
            version = response.json()["version"]
            if version < floor:
                violations.append((floor, version))

    async def writer() -> None:
        nonlocal confirmed, done
        for i in range(50):
            response = await client.patch(url, json={"content": f"v{i}"}, headers=ann.api_key)
            assert response.status_code == 200
            confirmed = response.json()["version"]
            await asyncio.sleep(0)
        done = True

    await asyncio.gather(writer(), *(reader() for _ in range(8)))
    assert violations == []
    assert confirmed == 51 and reads > 50


async def test_200_cold_reads_of_one_article_cost_at_most_3_queries(
    client: httpx.AsyncClient,
) -> None:
    ann = await account(client)
    article = await publish(client, ann)
    url = f"/api/v1/articles/{article['id']}"
    limits = httpx.Limits(max_connections=250)
    async with httpx.AsyncClient(base_url=str(client.base_url), limits=limits, timeout=60) as http:
        responses = await asyncio.gather(*(http.get(url) for _ in range(200)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    reads = (await client.get(f"/_test/article-reads/{article['id']}")).json()["reads"]
    assert 1 <= reads <= 3
    outcomes = [r.headers["x-cache"] for r in responses]
    assert outcomes.count("MISS") == reads


async def test_hits_misses_and_bypasses_are_counted(client: httpx.AsyncClient) -> None:
    before = (await client.get("/_test/cache-stats")).json().get("popular", {"HIT": 0, "MISS": 0})
    for _ in range(3):
        await client.get("/api/v1/articles/popular")
    after = (await client.get("/_test/cache-stats")).json()["popular"]
    assert after["HIT"] + after["MISS"] == before["HIT"] + before["MISS"] + 3


@pytest.fixture
def server_on_durable_redis(
    stack: ServerStack, durable_redis: EmbeddedRedis, tmp_path: Path
) -> Iterator[LiveServer]:
    env = server_env(
        stack,
        REDIS_URL=durable_redis.url(),
        REDIS_SOCKET_TIMEOUT="0.5",
        CACHE_BREAKER_SECONDS="0.5",
    )
    server = LiveServer("tests.support.probe_app:app", env, tmp_path / "server.log").start()
    yield server
    server.stop()


async def test_a_redis_outage_bypasses_the_cache_and_loses_no_invalidation(
    durable_redis: EmbeddedRedis, server_on_durable_redis: LiveServer
) -> None:
    async with httpx.AsyncClient(base_url=server_on_durable_redis.url, timeout=30) as http:
        ann = await account(http)
        article = await publish(http, ann)
        url = f"/api/v1/articles/{article['id']}"
        await http.get(url)
        assert (await http.get(url)).headers["x-cache"] == "HIT"

        durable_redis.stop()
        during = [await http.get(url) for _ in range(20)]
        assert {r.status_code for r in during} == {200}
        assert {r.headers["x-cache"] for r in during} == {"BYPASS"}
        # A write while Redis is down: committed, its invalidation owed.
        edited = await http.patch(
            url, json={"title": "Written during the outage"}, headers=ann.api_key
        )
        assert edited.status_code == 200

        durable_redis.start()  # comes back with the old entry still stored
        seen = []
        for _ in range(50):
            response = await http.get(url)
            seen.append(response.headers["x-cache"])
            assert response.json()["title"] == "Written during the outage", seen
            if response.headers["x-cache"] == "HIT":
                break
            await asyncio.sleep(0.1)
        assert seen[-1] == "HIT"  # caching resumed by itself


@pytest.fixture
async def hanging_redis() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server on loopback that accepts connections and never answers: a Redis that
    hangs. Yields its port and a one-item list counting the connections it accepted."""
    accepted = [0]
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted[0] += 1
        held.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port, accepted
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_hanging_redis_costs_one_short_wait_not_one_per_request(
    stack: ServerStack, hanging_redis: tuple[int, list[int]], tmp_path: Path
) -> None:
    port, accepted = hanging_redis
    env = server_env(stack, REDIS_URL=f"redis://127.0.0.1:{port}/0", CACHE_BREAKER_SECONDS="30")
    server = await asyncio.to_thread(
        LiveServer("tests.support.probe_app:app", env, tmp_path / "server.log").start
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            responses = [await http.get("/api/v1/articles/popular") for _ in range(30)]
        assert {r.status_code for r in responses} == {200}
        assert {r.headers["x-cache"] for r in responses} == {"BYPASS"}
        # Every request that tried Redis would have opened a connection to it: the breaker
        # let only the first requests through, the rest went straight to PostgreSQL.
        assert accepted[0] <= 3
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_peek_that_misses_takes_no_lock_and_counts_nothing(stack: ServerStack) -> None:
    """The fast path's peek: a miss leaves Redis as it was, so the full path can follow."""
    redis = Redis.from_url(stack.redis_url)
    try:
        cache = ResponseCache(redis, guard=RedisGuard(timeout=1, breaker_seconds=5))
        name = uuid.uuid4().hex
        template = f"cache:{{e}}:peek:{name}:{{g1}}"
        count = Count(f"rl:peek:{name}:1", 60)

        async def peek() -> tuple[bytes, int] | None:
            return await cache.peek("peek", generations=[f"gen:{name}"], template=template,
                                    count=count)  # fmt: skip

        assert await peek() is None
        assert await redis.exists(count.key) == 0
        assert await redis.keys(f"lock:*{name}*") == []
        epoch = int(await redis.get("cache:epoch") or 0)
        await redis.set(f"cache:{epoch}:peek:{name}:0", b'"1"\nbody')
        assert await peek() == (b'"1"\nbody', 1)
        assert await peek() == (b'"1"\nbody', 2)
        await redis.incr(f"gen:{name}")  # a write moved the generation on
        assert await peek() is None
        assert int(await redis.get(count.key) or 0) == 2
        assert cache.stats.snapshot()["peek"]["HIT"] == 2
    finally:
        await redis.aclose()

"""service.infra.cache and service.web.http_cache over a real server and a real Redis."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from service.cli.embedded import EmbeddedRedis
from service.core import keys
from service.infra.cache import Count, Quota, ResponseCache, StaleIfError
from service.infra.guard import RedisGuard
from tests.conftest import PROBE_APP, LiveServers
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
def server_on_durable_redis(durable_redis: EmbeddedRedis, live_server: LiveServers) -> LiveServer:
    return live_server(
        PROBE_APP,
        REDIS_URL=durable_redis.url(),
        REDIS_SOCKET_TIMEOUT="0.5",
        CACHE_BREAKER_SECONDS="0.5",
    )


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
    hanging_redis: tuple[int, list[int]], live_server: LiveServers
) -> None:
    port, accepted = hanging_redis
    env: dict[str, Any] = {
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "CACHE_BREAKER_SECONDS": "30",
    }
    server = await asyncio.to_thread(live_server, PROBE_APP, **env)
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


async def test_an_entry_over_the_size_limit_is_served_and_not_stored(stack: ServerStack) -> None:
    """Bigger than ``max_entry_bytes``: answered every time, stored as a marker that lets the
    next readers compute at once (no lock), and its stale copy is not kept."""
    redis = Redis.from_url(stack.redis_url)
    try:
        cache = ResponseCache(
            redis, guard=RedisGuard(timeout=1, breaker_seconds=5), max_entry_bytes=1024
        )
        name = uuid.uuid4().hex
        template = f"cache:{{e}}:big:{name}:{{g1}}"
        stale_key = f"stale:big:{name}"
        await redis.set(stale_key, b"an older, smaller version")
        computed = 0

        async def compute() -> bytes:
            nonlocal computed
            computed += 1
            return b'"1"\n' + b"x" * 1025

        async def fetch() -> tuple[bytes | None, str]:
            return await cache.fetch(
                "big",
                generations=[f"gen:{name}"],
                template=template,
                ttl=60,
                compute=compute,
                stale=StaleIfError(stale_key, 3600, lambda _exc: True),
            )

        first = await fetch()
        assert first == (b'"1"\n' + b"x" * 1025, "MISS")
        epoch = int(await redis.get("cache:epoch") or 0)
        entry = f"cache:{epoch}:big:{name}:0"
        assert await redis.get(entry) == keys.UNCACHEABLE
        assert 0 < await redis.ttl(entry) <= 60
        assert await redis.exists(stale_key) == 0  # older than what was served: dropped
        assert await redis.keys(f"lock:*{name}*") == []
        # Every reader computes it, none waits on a lock (a marker is a miss without one).
        answers = await asyncio.gather(*(fetch() for _ in range(5)))
        assert answers == [first] * 5 and computed == 6
        assert await redis.keys(f"lock:*{name}*") == []
        assert await cache.peek("big", generations=[f"gen:{name}"], template=template,
                                count=None) is None  # fmt: skip
        # At the limit it is stored as usual.
        cache.max_entry_bytes = 4096
        await redis.incr(f"gen:{name}")
        assert (await fetch())[1] == "MISS"
        assert (await fetch())[1] == "HIT"
        assert await redis.get(stale_key) == first[0]
    finally:
        await redis.aclose()


async def test_a_quota_bounds_the_entries_stored_at_once_per_generation(
    stack: ServerStack,
) -> None:
    redis = Redis.from_url(stack.redis_url)
    try:
        cache = ResponseCache(redis, guard=RedisGuard(timeout=1, breaker_seconds=5))
        name = uuid.uuid4().hex
        generation = f"gen:{name}"
        quota = Quota(f"cache:{{e}}:quota:{name}:{{g1}}", 3)

        async def fetch(page: int, ttl: int = 60) -> str:
            async def compute() -> bytes:
                return f'"{page}"\npage {page}'.encode()

            body, outcome = await cache.fetch(
                "quota",
                generations=[generation],
                template=f"cache:{{e}}:page:{name}:{{g1}}:{page}",
                ttl=ttl,
                compute=compute,
                quota=quota,
            )
            assert body == f'"{page}"\npage {page}'.encode()
            return outcome

        assert [await fetch(page) for page in range(5)] == ["MISS"] * 5
        assert [await fetch(page) for page in range(5)] == ["HIT"] * 3 + ["MISS"] * 2
        epoch = int(await redis.get("cache:epoch") or 0)
        assert len(await redis.keys(f"cache:{epoch}:page:{name}:*")) == 3
        counted = f"cache:{epoch}:quota:{name}:0"
        assert await redis.zcard(counted) == 3
        assert 0 < await redis.ttl(counted) <= 60  # gone with its last entry
        assert await redis.keys(f"lock:*{name}*") == []
        # Past the quota a page is served and not even locked: nothing to wait for.
        assert await asyncio.gather(*(fetch(4) for _ in range(5))) == ["MISS"] * 5
        # A new generation has a quota of its own.
        await redis.incr(generation)
        assert [await fetch(page) for page in (3, 4, 3, 4)] == ["MISS", "MISS", "HIT", "HIT"]
        # Expired entries leave the quota: new ones take their places.
        await redis.incr(generation)
        assert [await fetch(page, ttl=1) for page in range(3)] == ["MISS"] * 3
        assert await fetch(3) == "MISS" and await fetch(3) == "MISS"  # full
        await asyncio.sleep(1.2)
        assert await fetch(3) == "MISS" and await fetch(3) == "HIT"
    finally:
        await redis.aclose()


async def test_every_spelling_of_a_list_query_shares_one_entry(client: httpx.AsyncClient) -> None:
    """Defaults given or not and parameters in any order: one page, one entry, one ETag."""
    ann = await account(client)
    for _ in range(2):
        await publish(client, ann, tags=["spelling"])
    spellings = [
        f"author_id={ann.id}",
        f"page=1&author_id={ann.id}",
        f"per_page=20&author_id={ann.id}",
        f"author_id={ann.id}&per_page=20&page=1",
        f"author_id={ann.id}&tag=Spelling",
        f"tag=spelling&page=1&author_id={ann.id}",
    ]
    answers = [await client.get(f"/api/v1/articles?{query}") for query in spellings]
    assert [a.status_code for a in answers] == [200] * len(answers)
    outcomes = [a.headers["x-cache"] for a in answers]
    assert outcomes == ["MISS", "HIT", "HIT", "HIT", "MISS", "HIT"]
    assert len({a.content for a in answers[:4]}) == 1
    assert len({a.headers["etag"] for a in answers[:4]}) == 1
    # A cursor is named by the position it points after, however it is spelled: here the
    # same instant written in another time zone.
    first = await client.get(f"/api/v1/articles?author_id={ann.id}&per_page=1")
    cursor = first.json()["next_cursor"]
    position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    moved = datetime.fromisoformat(position["t"]).astimezone(timezone(timedelta(hours=5)))
    respelt = {"t": moved.isoformat(), "i": position["i"]}
    other = base64.urlsafe_b64encode(json.dumps(respelt).encode()).decode().rstrip("=")
    assert other != cursor
    pages = [
        await client.get(f"/api/v1/articles?author_id={ann.id}&per_page=1&cursor={spelt}")
        for spelt in (cursor, other)
    ]
    assert [r.headers["x-cache"] for r in pages] == ["MISS", "HIT"]
    assert pages[0].json()["articles"][0]["id"] < first.json()["articles"][0]["id"]

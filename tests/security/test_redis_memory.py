"""Anonymous reads cannot grow Redis without bound (issue 22, item 7).

Each test runs a live server on a Redis of its own, so what it counts in Redis is its own:
10,000 distinct list queries leave at most ``CACHE_MAX_LIST_KEYS`` list pages stored, an
answer bigger than ``CACHE_MAX_ENTRY_BYTES`` is served right and not stored, and with
``CACHE_REDIS_URL`` the cache lives on a Redis of its own while sessions, rate limits, view
counts and queues stay on ``REDIS_URL``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from service.cli.embedded import EmbeddedRedis
from service.core import keys
from service.core.settings import Settings
from service.infra.resources import Resources
from service.jobs.tasks import flush_views
from tests.conftest import LiveServers
from tests.support.api import account, login, publish
from tests.support.databases import ServerStack

QUERIES = 10_000
CONCURRENCY = 32
LIST_KEYS = Settings.model_fields["cache_max_list_keys"].default
# What Redis may grow by besides the cache's keys: the read limit's counter, the keyspace's
# hash tables.
SLACK_BYTES = 256 * 1024


@pytest.fixture
async def redis(own_redis: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis.url())
    yield client
    await client.aclose()


@pytest.fixture
def cache_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "cache-redis", durable=False).start()
    yield server
    server.stop()


async def _keys(redis: Redis, pattern: str) -> list[bytes]:
    return [key async for key in redis.scan_iter(pattern, count=1000)]


async def _used_memory(redis: Redis) -> int:
    """Redis's memory once it has settled, less its clients' buffers (which follow how many
    connections the server's pool opened, not what is stored). Right after a burst, buffers
    Redis frees in its periodic tasks still count: wait until two readings agree."""
    settled = -1
    for _ in range(20):
        info = await redis.info("memory")
        used = int(info["used_memory"]) - int(info["mem_clients_normal"])
        if abs(used - settled) < 8 * 1024:
            return used
        settled = used
        await asyncio.sleep(0.5)
    return settled


async def _get_all(url: str, paths: list[str]) -> list[tuple[int, str]]:
    """``(status, X-Cache)`` of a GET of each path, ``CONCURRENCY`` at a time over as many
    keep-alive HTTP/1.1 connections. Written out rather than httpx, which spends about as much
    CPU per request as the server: 10,000 requests then measure the server, on 2 cores."""
    host, port = url.removeprefix("http://").split(":")
    answers: list[tuple[int, str]] = [(0, "")] * len(paths)
    todo = iter(enumerate(paths))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for index, path in todo:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                fields = dict(line.lower().split(": ", 1) for line in head[1:] if line)
                await reader.readexactly(int(fields["content-length"]))
                answers[index] = (int(head[0].split()[1]), fields.get("x-cache", "").upper())
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    return answers


async def test_ten_thousand_distinct_list_queries_leave_the_cache_within_its_bound(
    own_redis: EmbeddedRedis, redis: Redis, live_server: LiveServers
) -> None:
    # Entries outlive the test: what is counted is what the bound let in, none expired.
    env: dict[str, Any] = {"REDIS_URL": own_redis.url(), "CACHE_TTL_LIST": "600"}
    server = await asyncio.to_thread(live_server, **env)
    # Every query its own page (tags nobody uses: cheap to answer, all of one size).
    queries = [
        f"/api/v1/articles?tag=memory-{n // 100}&per_page={1 + n % 100}" for n in range(QUERIES)
    ]
    warm_up = CONCURRENCY * 2
    try:
        # Warm up (connections open, scripts loaded), then measure the rest.
        warm = await _get_all(server.url, queries[:warm_up])
        before = await _used_memory(redis)
        rest = await _get_all(server.url, queries[warm_up:])
        after = await _used_memory(redis)
        again = await _get_all(server.url, queries[:10])
    finally:
        await asyncio.to_thread(server.stop)
    answers = warm + rest
    assert {status for status, _ in answers} == {200}
    assert {outcome for _, outcome in answers} == {"MISS"}
    # The first pages were stored (within the bound) and are hits now.
    assert again == [(200, "HIT")] * 10

    entries = await _keys(redis, "cache:*:list:*")
    cache_keys = await _keys(redis, "cache:*")
    quota_sets = await _keys(redis, "cache:*:lists:*")
    assert len(entries) == LIST_KEYS
    assert len(quota_sets) == 1 and await redis.zcard(quota_sets[0]) == LIST_KEYS
    assert len(cache_keys) <= LIST_KEYS + 3, sorted(cache_keys)[:20]
    assert await _keys(redis, "lock:*") == []
    largest = max([await redis.memory_usage(key) or 0 for key in entries])
    quota_usage = await redis.memory_usage(quota_sets[0]) or 0
    bound = LIST_KEYS * largest + quota_usage + SLACK_BYTES
    # Storing every page would have taken (10,000 - 300) x an entry more than the bound.
    assert (QUERIES - LIST_KEYS) * largest > bound
    assert after - before <= bound, (after - before, bound, largest)


async def test_an_answer_over_the_size_limit_is_served_right_and_not_stored(
    own_redis: EmbeddedRedis, redis: Redis, live_server: LiveServers
) -> None:
    """An article of control characters grows about sixfold as escaped JSON: past
    ``CACHE_MAX_ENTRY_BYTES`` it is answered from PostgreSQL every time, byte for byte what
    the cache would have served, and neither it nor its stale copy is stored."""
    env: dict[str, Any] = {"REDIS_URL": own_redis.url(), "CACHE_MAX_ENTRY_BYTES": "1024"}
    server = await asyncio.to_thread(live_server, **env)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            ann = await account(http)
            content = "\x01\x02\x1f" * 100  # 300 characters, 1,800 bytes as JSON
            big = await publish(http, ann, content=content)
            small = await publish(http, ann, content="Short.")
            big_path, small_path = (f"/api/v1/articles/{a['id']}" for a in (big, small))
            reads = [await http.get(big_path) for _ in range(3)]
            small_reads = [await http.get(small_path) for _ in range(2)]
            etag = reads[0].headers["etag"]
            conditional = await http.get(big_path, headers={"If-None-Match": etag})
    finally:
        await asyncio.to_thread(server.stop)
    assert [r.status_code for r in reads] == [200] * 3
    assert [r.headers["x-cache"] for r in reads] == ["MISS"] * 3
    assert reads[0].json()["content"] == content
    assert len(reads[0].content) > 1024
    assert len({r.content for r in reads}) == 1
    same = ("etag", "content-type", "content-length", "cache-control", "x-cache")
    assert len({tuple(r.headers[name] for name in same) for r in reads}) == 1
    assert (conditional.status_code, conditional.content) == (304, b"")
    assert conditional.headers["etag"] == reads[0].headers["etag"]
    # The same server stores what fits.
    assert [r.headers["x-cache"] for r in small_reads] == ["MISS", "HIT"]

    (entry,) = await _keys(redis, f"cache:*:article:{big['id']}:*")
    assert await redis.get(entry) == keys.UNCACHEABLE
    assert await redis.exists(keys.article_stale(big["id"])) == 0
    assert await redis.exists(keys.article_stale(small["id"])) == 1


async def test_with_cache_redis_url_the_cache_lives_apart_from_sessions_and_rate_limits(
    own_redis: EmbeddedRedis,
    redis: Redis,
    cache_redis: EmbeddedRedis,
    live_server: LiveServers,
) -> None:
    env: dict[str, Any] = {
        "REDIS_URL": own_redis.url(),
        "CACHE_REDIS_URL": cache_redis.url(),
        "RATE_LIMIT_READ": "12/day",
        "CACHE_BREAKER_SECONDS": "30",
    }
    server = await asyncio.to_thread(live_server, **env)
    cache = Redis.from_url(cache_redis.url())
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            ann = await account(http)
            article = await publish(http, ann)
            path = f"/api/v1/articles/{article['id']}"
            lists = f"/api/v1/articles?author_id={ann.id}"
            popular = "/api/v1/articles/popular"
            reads = [await http.get(p) for p in (lists, lists, popular, popular, *[path] * 5)]
            ready = await http.get("/readyz")

            main_keys = {key.decode() for key in await redis.keys("*")}
            cache_keys = {key.decode() for key in await cache.keys("*")}
            views = await redis.hget(keys.VIEWS_PENDING, str(article["id"]))  # type: ignore[misc]

            cache_redis.stop()  # the cache goes away; sessions and rate limits do not
            during = await http.get(path)
            for _ in range(50):  # /readyz reuses a check for READINESS_CACHE_SECONDS
                ready_during = await http.get("/readyz")
                if ready_during.json()["checks"]["cache_redis"] != "ok":
                    break
                await asyncio.sleep(0.1)
            await login(http, ann.email)
            last = [await http.get(path) for _ in range(3)]
    finally:
        await cache.aclose()
        await asyncio.to_thread(server.stop)

    assert [r.status_code for r in reads] == [200] * 9
    outcomes = [r.headers["x-cache"] for r in reads]
    assert outcomes == ["MISS", "HIT", "MISS", "HIT", "MISS", "HIT", "HIT", "HIT", "HIT"]
    # Every read counted on REDIS_URL, fast-path hits (popular, the article) included.
    remaining = [int(r.headers["ratelimit-remaining"]) for r in reads]
    assert remaining == list(range(11, 2, -1))
    assert int(views or 0) == 5  # five reads answered 200, counted on REDIS_URL too
    assert ready.status_code == 200 and ready.json()["checks"]["cache_redis"] == "ok"

    def kinds(found: set[str]) -> set[str]:
        return {key.split(":", 1)[0] for key in found}

    assert {"cache", "gen", "stale"} <= kinds(cache_keys)
    assert not kinds(cache_keys) & {"rl", "session", "user-sessions-by-age", "views", "arq"}
    assert {"rl", "session", "views"} <= kinds(main_keys)
    assert not kinds(main_keys) & {"cache", "gen", "stale", "lock"}

    assert (during.status_code, during.headers["x-cache"]) == (200, "BYPASS")
    assert during.headers["ratelimit-remaining"] == "2"
    assert ready_during.status_code == 200
    assert ready_during.json()["checks"]["cache_redis"] != "ok"
    assert [r.status_code for r in last] == [200, 200, 429]


async def test_the_worker_moves_cache_generations_on_the_cache_redis(
    stack: ServerStack, own_redis: EmbeddedRedis, redis: Redis, cache_redis: EmbeddedRedis
) -> None:
    """A view flush claims and releases its batch on REDIS_URL and moves the popular ranking
    on where the cache is."""
    settings = Settings(
        _env_file=None,
        env="test",
        database_url=stack.database_url,
        redis_url=own_redis.url(),
        cache_redis_url=cache_redis.url(),
    )
    res = Resources(settings, application_name="newsdesk-test-worker")
    await res.start()
    cache = Redis.from_url(cache_redis.url())
    try:
        assert res.cache is not None and res.cache.redis is not res.hot_redis
        await redis.hset(keys.VIEWS_PENDING, "999999999", 2)  # type: ignore[misc, arg-type]  # no such article
        await flush_views({"resources": res, "job_id": "test-flush"})
        assert await cache.get(keys.POPULAR_GENERATION) == b"1"
        assert await redis.exists(keys.POPULAR_GENERATION) == 0
        assert await redis.exists(keys.VIEWS_PENDING, keys.VIEWS_FLUSHING) == 0
        assert await redis.exists(keys.VIEWS_FLUSHED_AT) == 1
    finally:
        await cache.aclose()
        await res.close()
    assert res.cache is None and res.hot_redis is None

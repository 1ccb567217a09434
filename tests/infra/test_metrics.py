"""service.infra.metrics: what a process records besides requests: the pool in use, Redis
failures and the breaker, cache bypasses; and the switch that turns it all off."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from service.cli.embedded import EmbeddedRedis
from tests.conftest import MAX_OVERFLOW, POOL_SIZE, LiveServers
from tests.support.live import LiveServer
from tests.support.metrics import Exposition, ascrape, scrape


async def test_a_connection_held_by_a_request_shows_in_the_pool_gauge(
    client: httpx.AsyncClient,
) -> None:
    idle = await ascrape(client)
    assert idle.total("db_pool_size", engine="primary") == POOL_SIZE
    assert idle.total("db_pool_max_overflow", engine="primary") == MAX_OVERFLOW
    base = idle.total("db_pool_checked_out", engine="primary")
    sleeping = asyncio.create_task(client.get("/_test/sleep", params={"seconds": "3"}))
    busy: Exposition | None = None
    for _ in range(50):  # until the request holds its connection (bounded)
        await asyncio.sleep(0.05)
        busy = await ascrape(client)
        if busy.total("db_pool_checked_out", engine="primary") > base:
            break
    assert busy is not None
    assert busy.total("db_pool_checked_out", engine="primary") == base + 1
    assert (await sleeping).status_code == 200
    after = await ascrape(client)
    assert after.total("db_pool_checked_out", engine="primary") == base


@pytest.fixture
def server_with_own_redis(own_redis: EmbeddedRedis, live_server: LiveServers) -> LiveServer:
    return live_server(REDIS_URL=own_redis.url(), CACHE_BREAKER_SECONDS="0.5")


def test_redis_failures_the_breaker_and_bypasses_are_counted(
    own_redis: EmbeddedRedis, server_with_own_redis: LiveServer
) -> None:
    base = server_with_own_redis.url
    metrics_url = base + "/metrics"
    start = scrape(metrics_url)
    assert start.total("redis_errors_total", error="ConnectionError") == 0  # there from the start
    assert start.total("redis_breaker_open") == 0

    own_redis.stop()
    assert httpx.get(base + "/api/v1/articles", timeout=10).headers["x-cache"] == "BYPASS"
    down = scrape(metrics_url)  # no Redis needed to scrape
    assert down.total("redis_errors_total") >= 1
    assert down.total("redis_breaker_opens_total") >= 1
    assert down.total("redis_breaker_open") == 1
    assert down.total("cache_lookups_total", endpoint="list", outcome="bypass") >= 1

    own_redis.start()
    closed = down
    for _ in range(100):  # past CACHE_BREAKER_SECONDS a request probes Redis again (bounded)
        httpx.get(base + "/api/v1/articles", timeout=10)
        closed = scrape(metrics_url)
        if closed.total("redis_breaker_open") == 0:
            break
    assert closed.total("redis_breaker_open") == 0


def test_metrics_off_means_no_endpoint(live_server: LiveServers) -> None:
    server = live_server(METRICS_ENABLED="false")
    try:
        response = httpx.get(server.url + "/metrics", timeout=10)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    finally:
        server.stop()

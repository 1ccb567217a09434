"""service.web.api.health: liveness without I/O, readiness that follows Redis going and coming."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from service.cli.embedded import EmbeddedRedis
from service.infra.schema import code_schema
from tests.conftest import PROBE_APP, LiveServers
from tests.support.databases import ServerStack, migrate
from tests.support.live import LiveServer
from tests.support.metrics import Exposition


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_when_everything_is_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    head = code_schema()
    assert head is not None
    assert {k: v for k, v in body.items() if k not in ("queues", "views")} == {
        "status": "ready",
        "checks": {"database": "ok", "database_read": "ok", "redis": "ok"},
        "migrations": {"state": "current", "database": head.head, "code": head.head},
    }
    # The backlog, for the operator (tests/web/api/test_backlog.py); never a reason to fail.
    assert set(body["queues"]) == {"interactive", "bulk", "periodic"}
    assert "oldest_pending_seconds" in body["views"]


CACHED_FOR = 2.0  # READINESS_CACHE_SECONDS of the server below


@pytest.fixture(scope="module")
def cached_readiness(module_live_server: LiveServers) -> LiveServer:
    """The app with its test probes (``/_test/select-ones`` counts the readiness check's
    ``SELECT 1`` statements), a readiness result reused for ``CACHED_FOR`` seconds."""
    return module_live_server(PROBE_APP, READINESS_CACHE_SECONDS=str(CACHED_FOR))


async def _select_ones(http: httpx.AsyncClient) -> int:
    count: int = (await http.get("/_test/select-ones")).json()["count"]
    return count


async def test_a_burst_of_readyz_runs_one_round_of_checks(cached_readiness: LiveServer) -> None:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=cached_readiness.url, limits=limits, timeout=60) as http:
        # One check is two SELECT 1, the primary and the read engine (here the same server).
        await asyncio.sleep(CACHED_FOR)  # whatever an earlier request kept has expired
        before = await _select_ones(http)
        burst = await asyncio.gather(*(http.get("/readyz") for _ in range(100)))
        after_burst = await _select_ones(http)
        assert [r.status_code for r in burst] == [200] * 100
        assert len({r.content for r in burst}) <= 2  # one body per check run
        # Two rounds at most: the burst may straddle the end of a result's lifetime.
        assert 2 <= after_burst - before <= 4, after_burst - before
        # Once the result is older than READINESS_CACHE_SECONDS, the next call checks again.
        await asyncio.sleep(CACHED_FOR)
        assert (await http.get("/readyz")).status_code == 200
        assert await _select_ones(http) == after_burst + 2


@pytest.fixture
def server_with_own_redis(own_redis: EmbeddedRedis, live_server: LiveServers) -> LiveServer:
    # A result kept for no time: each /readyz below must see Redis as it is at that moment.
    return live_server(
        REDIS_URL=own_redis.url(), REDIS_SOCKET_TIMEOUT="0.5", READINESS_CACHE_SECONDS="0"
    )


def test_readyz_stays_ready_and_reports_redis_while_it_is_down(
    own_redis: EmbeddedRedis, server_with_own_redis: LiveServer
) -> None:
    """Redis is shared by every instance: its outage is reported (body, dependency_up), never
    a reason to leave the load balancer, where reads from PostgreSQL still serve."""
    url = server_with_own_redis.url + "/readyz"
    assert httpx.get(url, timeout=10).json()["status"] == "ready"

    own_redis.stop()
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"] in ("down", "timeout")
    assert body["checks"]["database"] == "ok"
    metrics = Exposition.parse(httpx.get(server_with_own_redis.url + "/metrics", timeout=10).text)
    assert metrics.total("dependency_up", dependency="redis") == 0
    assert metrics.total("dependency_up", dependency="database") == 1

    own_redis.start()
    recovered = httpx.get(url, timeout=10).json()
    assert recovered["status"] == "ready", recovered
    assert server_with_own_redis.proc is not None
    assert server_with_own_redis.proc.poll() is None  # the same process throughout


def test_a_stopping_instance_is_not_ready(live_server: LiveServers) -> None:
    """Once its master begins the drain (SIGTERM), the instance leaves the load balancer."""
    server = live_server(PROBE_APP)
    assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
    assert httpx.post(server.url + "/_test/drain", timeout=10).status_code == 200
    response = httpx.get(server.url + "/readyz", timeout=10)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    assert error["details"] == [{"condition": "draining", "state": "stopping"}]
    assert response.headers["retry-after"] == "5"


@pytest.fixture
def old_database(stack: ServerStack) -> str:
    """A database whose migrations stopped at 0002: 0003's column and table are missing."""
    url = stack.new_database("newsdesk_health_old")
    migrate(url, "0002")
    return url


def test_code_ahead_of_its_database_is_not_ready_and_answers_503_until_migrated(
    live_server: LiveServers, old_database: str, own_redis: EmbeddedRedis
) -> None:
    """Code deployed before its migration ran: /readyz keeps it out of the load balancer
    (condition ``schema``), a request that meets a missing column is 503 with Retry-After,
    not a 500, and the log says to run the migrations. Once they have run it is ready."""
    server = live_server(
        DATABASE_URL=old_database,
        REDIS_URL=own_redis.url(),
        READINESS_CACHE_SECONDS="0",
        DB_POOL_SIZE="2",
        DB_MAX_OVERFLOW="0",
    )
    head = code_schema()
    assert head is not None
    response = httpx.get(server.url + "/readyz", timeout=10)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["details"] == [
        {
            "condition": "schema",
            "state": f"database schema behind the code (at 0002, needs {head.head}: "
            "run the migrations)",
        }
    ]
    read = httpx.get(server.url + "/api/v1/articles/1", timeout=10)  # reads processing_error
    assert read.status_code == 503, read.text
    assert read.json()["error"]["code"] == "service_unavailable"
    assert "retry-after" in read.headers
    assert "run the migrations (alembic upgrade head)" in server.log()
    assert "unhandled error" not in server.log()
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    assert "\ndatabase_schema_behind 1.0\n" in metrics  # the operator's alert

    migrate(old_database)
    ready = httpx.get(server.url + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["migrations"]["state"] == "current"
    assert "\ndatabase_schema_behind 0.0\n" in httpx.get(server.url + "/metrics", timeout=10).text
    assert httpx.get(server.url + "/api/v1/articles/1", timeout=10).status_code == 404


def test_an_instance_whose_event_loop_stalls_is_not_ready_until_it_runs_again(
    live_server: LiveServers,
) -> None:
    """A view holding the loop for 1.5 s, past READINESS_MAX_LOOP_LAG (0.5 here): /readyz
    answers 503 right after, and ready again once a second of normal running has passed."""
    server = live_server(PROBE_APP, READINESS_MAX_LOOP_LAG="0.5")
    assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
    assert httpx.post(server.url + "/_test/block?ms=1500", timeout=30).status_code == 200
    response = httpx.get(server.url + "/readyz", timeout=10)
    assert response.status_code == 503, response.text
    (detail,) = response.json()["error"]["details"]
    assert detail["condition"] == "event_loop"
    assert "event loop stalled" in detail["state"]
    deadline = time.monotonic() + 30
    while httpx.get(server.url + "/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "never ready again"
        time.sleep(0.2)


async def test_without_redis_sessions_and_security_limits_fail_closed_and_reads_fail_open(
    own_redis: EmbeddedRedis, server_with_own_redis: LiveServer
) -> None:
    from tests.support.api import PASSWORD, account, unique_email

    async with httpx.AsyncClient(base_url=server_with_own_redis.url, timeout=30) as http:
        ann = await account(http)
        own_redis.stop()
        # Session tokens live in Redis: without it they cannot be checked -> 503, never 500.
        me = await http.get("/api/v1/users/me", headers=ann.session)
        assert me.status_code == 503
        assert me.json()["error"]["code"] == "service_unavailable"
        # Limits guarding credentials cannot be counted: refused, not processed unlimited.
        newcomer = {"email": unique_email(), "password": PASSWORD, "name": "Bo"}
        refused = [
            await http.post("/api/v1/auth/login", json={"email": ann.email, "password": "x" * 12}),
            await http.post("/api/v1/users", json=newcomer),
            await http.post("/api/v1/auth/reset-password", json={"email": ann.email}),
        ]
        for response in refused:
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "service_unavailable"
            assert response.headers["retry-after"] == "5"
        # Reads are served uncounted; API keys (in PostgreSQL) still work.
        assert (await http.get("/api/v1/articles")).status_code == 200
        assert (await http.get("/api/v1/users/me", headers=ann.api_key)).status_code == 200
        own_redis.start()
        # A restarted Redis has lost the sessions (this one keeps nothing on disk).
        assert (await http.get("/api/v1/users/me", headers=ann.session)).status_code == 401
        # The refused registration was not processed: once the breaker lets Redis be tried
        # again (CACHE_BREAKER_SECONDS), the same e-mail registers.
        deadline = time.monotonic() + 30
        again = await http.post("/api/v1/users", json=newcomer)
        while again.status_code == 503 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            again = await http.post("/api/v1/users", json=newcomer)
        assert again.status_code == 201, again.text


async def test_metrics_speak_the_prometheus_text_format_or_openmetrics_on_request(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/healthz")).status_code == 200  # one request counted, at least
    text = await client.get("/metrics")
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    metrics = Exposition.parse(text.text)
    assert metrics.types["http_requests"] == "counter"
    assert metrics.types["http_request_duration_seconds"] == "histogram"
    openmetrics = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")

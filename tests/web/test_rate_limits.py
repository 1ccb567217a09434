"""service.domain.rate_limits: limits shared in Redis, 429 with Retry-After, trusted-proxy client
IPs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import LiveServers
from tests.support.api import PASSWORD, account, publish, unique_email
from tests.support.databases import ServerStack
from tests.support.live import LiveServer
from tests.support.metrics import ascrape


@pytest.fixture(scope="module")
def strict(stack: ServerStack, module_live_server: LiveServers) -> LiveServer:
    """A server with tight limits, behind a trusted proxy at 127.0.0.1, with CORS on."""
    return module_live_server(
        # Its own Redis database: its counters must not include the main test server's.
        REDIS_URL=other_database(stack.redis_url),
        RATE_LIMIT_REGISTER="3/hour",
        RATE_LIMIT_LOGIN_IP="1000/minute",
        # Hour windows: windows are aligned to the clock, and a test must not straddle two.
        RATE_LIMIT_LOGIN_EMAIL="3/hour",
        RATE_LIMIT_READ="5/hour",
        TRUSTED_PROXIES="127.0.0.1/32",
        CORS_ORIGINS="https://app.example",
    )


@pytest.fixture
async def http(strict: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=strict.url, timeout=30) as client:
        yield client


def other_database(redis_url: str) -> str:
    parts = urlsplit(redis_url)
    current = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(current + 1) % 16}"))


def from_ip() -> dict[str, str]:
    """A fresh client address, as a trusted proxy reports it."""
    return {"X-Forwarded-For": f"203.0.113.{uuid.uuid4().int % 250 + 1}, 127.0.0.1"}


async def test_reads_are_limited_per_client_ip(http: httpx.AsyncClient) -> None:
    client = {"X-Forwarded-For": "198.51.100.7"}
    statuses = [(await http.get("/api/v1/articles", headers=client)).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    refused = await http.get("/api/v1/articles", headers=client)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert refused.headers["ratelimit-limit"] == "5"
    assert refused.headers["ratelimit-remaining"] == "0"
    # Another client behind the same proxy is counted on its own.
    other = await http.get("/api/v1/articles", headers={"X-Forwarded-For": "198.51.100.8"})
    assert other.status_code == 200
    assert other.headers["ratelimit-remaining"] == "4"


async def test_login_failures_are_limited_per_address_and_client_not_per_address(
    http: httpx.AsyncClient,
) -> None:
    # Registered from a fresh address: the counters live in the Redis every test server shares.
    email = unique_email()
    registered = await http.post(
        "/api/v1/users",
        json={"email": email, "password": PASSWORD, "name": "Target"},
        headers=from_ip(),
    )
    assert registered.status_code == 201, registered.text
    attacker = {"X-Forwarded-For": "198.51.100.66, 127.0.0.1"}
    attempts = []
    for _ in range(4):
        response = await http.post(
            "/api/v1/auth/login", json={"email": email, "password": "guess guess"}, headers=attacker
        )
        attempts.append(response.status_code)
    assert attempts == [401, 401, 401, 429]
    # From the guessing client even the right password waits for the window now...
    response = await http.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=attacker
    )
    assert response.status_code == 429
    # ...but the owner, on another address, is never locked out by those failures.
    owner = {"X-Forwarded-For": "192.0.2.201, 127.0.0.1"}
    response = await http.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=owner
    )
    assert response.status_code == 200, response.text


async def test_registration_is_limited_per_ip(http: httpx.AsyncClient) -> None:
    client = {"X-Forwarded-For": "192.0.2.44"}
    statuses = []
    for _ in range(4):
        response = await http.post(
            "/api/v1/users",
            json={"email": unique_email(), "password": PASSWORD, "name": "N"},
            headers=client,
        )
        statuses.append(response.status_code)
    assert statuses == [201, 201, 201, 429]


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(live: LiveServer) -> None:
    """The main test server trusts no proxy: a forged header does not give a fresh bucket."""
    async with httpx.AsyncClient(base_url=live.url) as client:
        one = await client.get("/api/v1/articles", headers={"X-Forwarded-For": "192.0.2.1"})
        two = await client.get("/api/v1/articles", headers={"X-Forwarded-For": "192.0.2.2"})
    assert int(two.headers["ratelimit-remaining"]) == int(one.headers["ratelimit-remaining"]) - 1


async def test_cors_when_configured(http: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    allowed = await http.options(
        "/api/v1/articles",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    # The preflight is the plain OPTIONS answer (204, Allow, no body) plus CORS's headers.
    assert allowed.status_code == 204 and "content-type" not in allowed.headers
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "POST" in allowed.headers["allow"]
    plain = await http.options("/api/v1/articles")
    assert plain.status_code == 204 and "content-type" not in plain.headers
    assert "access-control-allow-methods" not in plain.headers  # not a preflight
    other = await http.get("/api/v1/articles/popular", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    # Off by default (the main test server has no CORS_ORIGINS).
    default = await client.get(
        "/api/v1/articles/popular", headers={"Origin": "https://app.example"}
    )
    assert "access-control-allow-origin" not in default.headers


def test_log_has_no_secrets(strict: LiveServer) -> None:
    assert PASSWORD not in Path(strict.log_path).read_text()


async def test_cached_article_reads_are_counted_and_refused_like_any_read(
    http: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    """Hits answered before Flask (service.edge.fastpath) count against the read limit too, per
    client behind the trusted proxy, and the read past the limit gets the 429 envelope."""
    ann = await account(client)
    article = await publish(client, ann)
    url = f"/api/v1/articles/{article['id']}"
    reader = {"X-Forwarded-For": "198.51.100.9, 127.0.0.1"}
    answers = [await http.get(url, headers=reader) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert [a.headers["x-cache"] for a in answers[:5]] == ["MISS"] + ["HIT"] * 4
    assert [a.headers["ratelimit-remaining"] for a in answers[:5]] == ["4", "3", "2", "1", "0"]
    assert answers[5].json()["error"]["code"] == "rate_limited"
    assert "retry-after" in answers[5].headers
    other = await http.get(url, headers={"X-Forwarded-For": "198.51.100.10, 127.0.0.1"})
    assert other.status_code == 200 and other.headers["x-cache"] == "HIT"
    assert other.headers["ratelimit-remaining"] == "4"


async def test_refusals_are_counted_in_the_metrics_by_limit_name(http: httpx.AsyncClient) -> None:
    before = (await ascrape(http)).total("rate_limit_refusals_total", limit="read")
    client = from_ip()
    statuses = [(await http.get("/api/v1/articles", headers=client)).status_code for _ in range(7)]
    assert statuses.count(429) == 2  # 5/hour
    after = (await ascrape(http)).total("rate_limit_refusals_total", limit="read")
    assert after == before + 2

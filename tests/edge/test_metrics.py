"""service.edge.metrics: every request counted and timed at the ASGI level, labelled by the
route template (cache hits answered before Flask included), never by the raw path."""

from __future__ import annotations

import asyncio
import socket
import uuid

import httpx

from tests.edge.test_fastpath import flask_requests
from tests.support.api import account, publish
from tests.support.live import LiveServer
from tests.support.metrics import Exposition, ascrape

ARTICLE = "/api/v1/articles/<id:article_id>"


async def test_a_hit_before_flask_and_a_miss_share_the_route_template(
    client: httpx.AsyncClient,
) -> None:
    ann = await account(client)
    article = await publish(client, ann)
    url = f"/api/v1/articles/{article['id']}"
    before = await ascrape(client)
    miss = await client.get(url)
    flask_before_hit = await flask_requests(client)
    hit = await client.get(url)
    assert await flask_requests(client) == flask_before_hit + 1  # the hit never reached Flask
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    after = await ascrape(client)

    def grew(name: str, **labels: str) -> float:
        return after.total(name, **labels) - before.total(name, **labels)

    assert grew("http_requests_total", method="GET", route=ARTICLE, status="200") == 2
    assert grew("http_request_duration_seconds_count", route=ARTICLE, status="200") == 2
    assert grew("cache_lookups_total", endpoint="article", outcome="miss") == 1
    assert grew("cache_lookups_total", endpoint="article", outcome="hit") == 1
    assert url not in after.label_values("http_requests_total", "route")


async def test_paths_no_route_matches_share_one_label(client: httpx.AsyncClient) -> None:
    before = await ascrape(client)
    for _ in range(3):
        assert (await client.get(f"/no/such/{uuid.uuid4().hex}")).status_code == 404
    after = await ascrape(client)
    grown = after.total("http_requests_total", route="unmatched", status="404") - before.total(
        "http_requests_total", route="unmatched", status="404"
    )
    assert grown == 3
    assert not any(
        "/no/such" in route for route in after.label_values("http_requests_total", "route")
    )


async def test_invented_methods_share_one_label(client: httpx.AsyncClient) -> None:
    before = await ascrape(client)
    for method in ("BREW", "WHEN", "PROPFIND"):
        assert (await client.request(method, "/healthz")).status_code == 405
    after = await ascrape(client)
    grown = after.total("http_requests_total", method="OTHER", status="405") - before.total(
        "http_requests_total", method="OTHER", status="405"
    )
    assert grown == 3
    assert after.label_values("http_requests_total", "method") <= {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "OPTIONS",
        "OTHER",
    }


async def test_a_failing_view_is_counted_as_a_500_of_its_route(client: httpx.AsyncClient) -> None:
    before = (await ascrape(client)).total("http_requests_total", route="/_test/boom", status="500")
    assert (await client.get("/_test/boom")).status_code == 500
    after = (await ascrape(client)).total("http_requests_total", route="/_test/boom", status="500")
    assert after == before + 1


async def test_a_client_that_leaves_before_the_answer_is_a_499(
    live: LiveServer, client: httpx.AsyncClient
) -> None:
    def labels(metrics: Exposition) -> float:
        return metrics.total("http_requests_total", route="/_test/sleep", status="499")

    before = labels(await ascrape(client))
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(b"GET /_test/sleep?seconds=5 HTTP/1.1\r\nHost: test\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(1)  # past the disconnect watcher's delay: the request is running
    writer.transport.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
    writer.close()
    for _ in range(100):  # the server notices, abandons the request and counts it (bounded)
        if labels(await ascrape(client)) == before + 1:
            break
        await asyncio.sleep(0.1)
    assert labels(await ascrape(client)) == before + 1
    del reader

"""service.edge.fastpath: cache hits answered before Flask, exactly as Flask would answer
them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.core import keys
from service.core.types import MAX_ID
from service.edge.fastpath import route
from tests.support.api import account, publish

# Headers that differ between any two responses, whoever sends them.
PER_RESPONSE = {"date", "x-request-id", "ratelimit-remaining", "ratelimit-reset"}
# A GET with a Content-Length (even 0) is never answered by the fast path: Flask answers it.
VIA_FLASK = {"Content-Length": "0"}


async def flask_requests(client: httpx.AsyncClient) -> int:
    """Requests Flask has seen so far, this probe request included."""
    count: int = (await client.get("/_test/flask-requests")).json()["requests"]
    return count


def comparable(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if k not in PER_RESPONSE}
    return response.status_code, headers, response.content


async def test_a_hit_is_answered_without_flask_and_a_miss_falls_through(
    client: httpx.AsyncClient,
) -> None:
    ann = await account(client)
    article = await publish(client, ann)
    url = f"/api/v1/articles/{article['id']}"
    start = await flask_requests(client)
    miss = await client.get(url)
    after_miss = await flask_requests(client)
    hit = await client.get(url)
    after_hit = await flask_requests(client)
    assert miss.headers["x-cache"] == "MISS" and hit.headers["x-cache"] == "HIT"
    assert after_miss == start + 2  # the miss went through Flask (plus the probe itself)
    assert after_hit == after_miss + 1  # the hit did not
    assert hit.content == miss.content


async def test_a_fast_hit_is_the_same_response_flask_sends(client: httpx.AsyncClient) -> None:
    """The same hit through the fast path and through Flask (a request with a
    ``Content-Length``, even 0, is sent there)."""
    ann = await account(client)
    article = await publish(client, ann, tags=["fastpath"])
    urls = (
        f"/api/v1/articles/{article['id']}",
        "/api/v1/articles/popular",
        "/api/v1/articles",  # the front page
        "/api/v1/articles?tag=fastpath",
        "/api/v1/articles?page=2&per_page=5",
    )
    for url in urls:
        await client.get(url)  # fill
        for headers in ({}, {"If-None-Match": (await client.get(url)).headers["etag"]}):
            before = await flask_requests(client)
            fast = await client.get(url, headers=headers)
            through_flask = await client.get(url, headers={**headers, **VIA_FLASK})
            assert await flask_requests(client) == before + 2  # only VIA_FLASK reached Flask
            assert fast.headers["x-cache"] == "HIT"
            assert comparable(fast) == comparable(through_flask)
            assert fast.status_code == (304 if headers else 200)
            assert int(fast.headers["ratelimit-remaining"]) >= 0
            assert fast.headers["x-request-id"] != through_flask.headers["x-request-id"]


async def test_a_client_request_id_is_echoed_on_a_fast_hit(client: httpx.AsyncClient) -> None:
    url = "/api/v1/articles/popular"
    await client.get(url)
    hit = await client.get(url, headers={"X-Request-ID": "trace-me-1"})
    assert hit.headers["x-cache"] == "HIT" and hit.headers["x-request-id"] == "trace-me-1"
    garbage = await client.get(url, headers={"X-Request-ID": "bad id!"})
    assert garbage.headers["x-request-id"] != "bad id!"


async def test_unknown_articles_and_other_methods_still_reach_flask(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get(f"/api/v1/articles/{MAX_ID}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    beyond = await client.get(f"/api/v1/articles/{MAX_ID + 1}")
    assert beyond.status_code == 404
    head = await client.head("/api/v1/articles/popular")
    assert head.status_code == 200 and head.content == b""


def scope(path: str, method: str = "GET", query: bytes = b"", root: str = "") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": query,
            "root_path": root, "headers": []}  # fmt: skip


@pytest.mark.parametrize(
    ("request_scope", "endpoint"),
    [
        (scope("/api/v1/articles/42"), "article"),
        (scope("/api/v1/articles/popular"), "popular"),
        (scope("/news/api/v1/articles/42", root="/news"), "article"),
        (scope(f"/api/v1/articles/{MAX_ID}"), "article"),
        (scope(f"/api/v1/articles/{MAX_ID + 1}"), None),
        (scope("/api/v1/articles/0"), None),
        (scope("/api/v1/articles/007"), None),
        (scope("/api/v1/articles/42/"), None),
        (scope("/api/v1/articles"), "list"),
        (scope("/api/v1/articles", query=b"page=2"), "list"),
        (scope("/api/v1/articles", query=b"tag=science&per_page=10"), "list"),
        (scope("/api/v1/articles", query=b"tag=caf%C3%A9"), "list"),
        (scope("/api/v1/articles", query=b"page=5"), "list"),
        (scope("/api/v1/articles", query=b"page=6"), None),  # beyond the front pages
        (scope("/api/v1/articles", query=b"page=02"), None),  # Flask reads it as page 2
        (scope("/api/v1/articles", query=b"page=0"), None),
        (scope("/api/v1/articles", query=b"page=1&page=2"), None),
        (scope("/api/v1/articles", query=b"cursor=abc"), None),
        (scope("/api/v1/articles", query=b"q=news"), None),
        (scope("/api/v1/articles", query=b"author_id=3"), None),
        (scope("/api/v1/articles", query=b"tag=%ff"), None),  # not UTF-8
        (scope("/api/v1/articles", query=b"page"), None),
        (scope("/api/v1/articles/"), None),
        (scope("/api/v1/articles/42", method="HEAD"), None),
        (scope("/api/v1/articles/42", method="PATCH"), None),
        (scope("/api/v1/articles/42", query=b"x=1"), None),
        (scope("/other/api/v1/articles/42", root="/news"), None),
    ],
)
def test_routes_taken_by_the_fast_path(request_scope: dict[str, Any], endpoint: str | None) -> None:
    found = route(request_scope)
    assert (found.endpoint if found else None) == endpoint
    if endpoint == "article":
        article_id = request_scope["path"].rsplit("/", 1)[1]
        assert found is not None and found.generations == [f"gen:article:{article_id}"]


def test_a_front_page_is_named_as_flasks_view_names_it() -> None:
    """Spellings of the same page share one entry; the defaults are Flask's (page 1, 20 per
    page), so the fast path finds what the view stored."""
    front = route(scope("/api/v1/articles"))
    spelled_out = route(scope("/api/v1/articles", query=b"per_page=20&page=1"))
    assert front is not None and spelled_out is not None
    assert front.template == spelled_out.template
    assert front.template.endswith(keys.list_digest(page=1, per_page=20))
    by_tag = route(scope("/api/v1/articles", query=b"tag=caf%C3%A9"))
    assert by_tag is not None
    assert by_tag.template.endswith(keys.list_digest(page=1, per_page=20, tag="café"))

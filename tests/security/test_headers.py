"""Request headers whose names hold ``_`` are ignored, as nginx ignores them: ``API_Key`` is
no credential and ``X_Forwarded_For`` never names the client, whether Flask answers or the
cache fast path does (service.greenlet_asgi.environ, service.edge.fastpath)."""

from __future__ import annotations

import httpx

from tests.security.conftest import StartServer
from tests.support.api import account, publish

READ_LIMIT = 100_000  # per day: a window that cannot roll over between two requests of a test
# The test client (127.0.0.1) stands for nginx: its X-Forwarded-For names the client.
BEHIND_PROXY = {"TRUSTED_PROXIES": "127.0.0.1/32", "RATE_LIMIT_READ": f"{READ_LIMIT}/day"}


async def test_an_api_key_header_spelt_with_an_underscore_is_no_credential(
    serve: StartServer,
) -> None:
    server = serve(**BEHIND_PROXY)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        ann = await account(http)
        body = {"title": "Underscored", "content": "Text."}
        refused = await http.post("/api/v1/articles", json=body, headers={"API_Key": ann.key})
        accepted = await http.post("/api/v1/articles", json=body, headers={"API-Key": ann.key})
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "unauthorized"
    assert accepted.status_code == 201, accepted.text


def _remaining(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    assert response.headers["RateLimit-Limit"] == str(READ_LIMIT)
    return int(response.headers["RateLimit-Remaining"])


async def test_an_underscored_forwarded_for_never_changes_the_client_address(
    serve: StartServer,
) -> None:
    server = serve(**BEHIND_PROXY)
    real = ("X-Forwarded-For", "198.51.100.1")
    forged = ("X_Forwarded_For", "198.51.100.2")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        article = await publish(http, await account(http))
        url = f"/api/v1/articles/{article['id']}"
        filled = await http.get(url, headers=[real])  # a miss: Flask answers, fills the cache
        # The forgery is neither taken alone nor joined to the real header (its right-most
        # hop would then name the client): still the real client, for the fast path and Flask.
        hit = await http.get(url, headers=[real, forged])
        listed = await http.get("/api/v1/articles", params={"per_page": 1}, headers=[real, forged])
        # Alone it is no header at all: the client is the peer, 127.0.0.1, as with none.
        unnamed = await http.get("/api/v1/articles", params={"per_page": 1})
        alone = await http.get("/api/v1/articles", params={"per_page": 1}, headers=[forged])
        # The forged address was never counted: its first read has a full allowance left.
        first = await http.get(url, headers=[("X-Forwarded-For", forged[1])])
    assert filled.headers["X-Cache"] == "MISS"
    assert hit.headers["X-Cache"] == "HIT"  # answered by the fast path
    assert [_remaining(r) for r in (filled, hit, listed)] == [READ_LIMIT - n for n in (1, 2, 3)]
    assert _remaining(alone) == _remaining(unnamed) - 1
    assert _remaining(first) == READ_LIMIT - 1

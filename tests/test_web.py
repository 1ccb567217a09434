"""service.web: security headers on every response."""

from __future__ import annotations

import httpx
import pytest

from tests.support.api import account


@pytest.mark.parametrize("path", ["/healthz", "/no/such/page", "/api/v1/articles/popular"])
async def test_security_headers_on_every_response(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "frame-ancestors 'none'"


async def test_authenticated_responses_are_never_cached(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    response = await client.get("/api/v1/users/me", headers=ann.api_key)
    assert response.headers["cache-control"] == "no-store"
    anonymous = await client.get("/api/v1/articles/popular")
    assert anonymous.headers.get("cache-control") != "no-store"

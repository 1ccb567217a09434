"""service.web.security: security headers on every response."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support.api import account
from tests.support.live import LiveServer


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


async def test_answers_made_outside_flask_carry_them_too(live: LiveServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(
        b"POST /api/v1/articles HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 999999999\r\n\r\n"
    )
    await writer.drain()
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).lower()
    writer.close()
    assert head.startswith(b"http/1.1 413")
    assert b"x-content-type-options: nosniff" in head
    assert b"content-security-policy: frame-ancestors 'none'" in head

"""service.core.request_id: ids echoed, generated or replaced, and present in log lines."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from service.core.request_id import choose_request_id
from tests.support.live import LiveServer


async def test_a_well_formed_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc.DEF_1:2-3"})
    assert response.headers["x-request-id"] == "abc.DEF_1:2-3"


async def test_a_missing_id_is_generated(client: httpx.AsyncClient) -> None:
    first = (await client.get("/healthz")).headers["x-request-id"]
    second = (await client.get("/healthz")).headers["x-request-id"]
    assert len(first) == 32 and first != second


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "ünï"])
def test_a_malformed_id_is_replaced(bad: str) -> None:
    chosen = choose_request_id(bad)
    assert chosen != bad and len(chosen) == 32


async def test_the_id_is_in_the_access_log(live: LiveServer, client: httpx.AsyncClient) -> None:
    await client.get("/healthz", headers={"X-Request-ID": "access-log-probe"})
    # Hypercorn writes the access line after the response has gone: wait for it (bounded).
    for _ in range(300):
        if "rid=access-log-probe" in live.log():
            break
        await asyncio.sleep(0.05)
    assert "rid=access-log-probe" in live.log()

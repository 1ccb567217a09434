"""A request body that arrives too slowly is cut (service.greenlet_asgi.body.BodyRate) on a real
Hypercorn: 408 in the envelope, the connection closed, ``request_bodies_cut_total`` counted,
while other clients keep being served and a streamed upload at a decent rate still passes.

The server runs with a short grace (1 s) and a minimum of 100 bytes/s; the slow clients send
one byte a second, so each is cut about a second after the app starts reading its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import PROBE_APP, LiveServers
from tests.support.live import LiveServer
from tests.support.metrics import ascrape

SLOW_CLIENTS = 30
NORMAL_REQUESTS = 40
DECLARED = 1000  # bytes each slow client announces and never finishes
BOUND = 60.0  # seconds any slow client may take in all, however loaded the machine


@pytest.fixture(scope="module")
def rated(module_live_server: LiveServers) -> LiveServer:
    return module_live_server(PROBE_APP, BODY_MIN_RATE="100", BODY_GRACE_SECONDS="1")


async def _trickle(port: int, request_id: str, started: asyncio.Event, count: list[int]) -> bytes:
    """POST a body of ``DECLARED`` bytes at one byte a second; everything the server sends
    back, up to its closing the connection. ``count`` counts the clients that have sent a
    first byte; ``started`` is set once all have."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /_test/body HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"X-Request-ID: %s\r\nContent-Length: %d\r\n\r\n" % (request_id.encode(), DECLARED)
        )
        answer = asyncio.create_task(reader.read())  # to the end of the stream
        async with asyncio.timeout(BOUND):
            for sent in range(DECLARED):
                with contextlib.suppress(OSError):  # the server may have closed already
                    writer.write(b"x")
                    await writer.drain()
                if sent == 0:
                    count[0] += 1
                    if count[0] == SLOW_CLIENTS:
                        started.set()
                done, _ = await asyncio.wait({answer}, timeout=1)
                if done:
                    break
            return await answer
    finally:
        writer.close()


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


async def _normal_requests(http: httpx.AsyncClient) -> list[httpx.Response]:
    async def one(i: int) -> httpx.Response:
        if i % 2:
            return await http.get("/_test/echo", params={"value": f"v{i}"})
        return await http.post("/_test/body", content=b"n" * 1024)

    return await asyncio.gather(*(one(i) for i in range(NORMAL_REQUESTS)))


async def test_slow_bodies_are_cut_with_408_while_other_clients_are_served(
    rated: LiveServer,
) -> None:
    async with httpx.AsyncClient(base_url=rated.url, timeout=60) as http:
        before = (await ascrape(http)).total("request_bodies_cut_total")
        started = asyncio.Event()
        begun = [0]
        slow = [
            asyncio.create_task(_trickle(rated.port, f"slow-{i}", started, begun))
            for i in range(SLOW_CLIENTS)
        ]
        # Every slow client has sent its headers and a first byte: their requests are open.
        await asyncio.wait_for(started.wait(), BOUND)
        for response in await _normal_requests(http):
            assert response.status_code == 200, response.text
        answers = await asyncio.wait_for(asyncio.gather(*slow), BOUND)
        after = (await ascrape(http)).total("request_bodies_cut_total")

    for i, raw in enumerate(answers):
        status, headers, body = _parse(raw)
        assert status == 408, raw
        assert headers["connection"] == "close"
        assert headers["x-request-id"] == f"slow-{i}"
        assert json.loads(body)["error"] == {
            "code": "request_timeout",
            "message": "The request body arrived too slowly.",
            "request_id": f"slow-{i}",
        }
    assert after - before == SLOW_CLIENTS


async def test_a_streamed_upload_at_a_decent_rate_passes(rated: LiveServer) -> None:
    chunk, chunks = b"u" * 2048, 8

    async def upload() -> AsyncIterator[bytes]:
        # 16 KiB over about 2 s, past the grace, far above 100 bytes/s (chunked encoding).
        for _ in range(chunks):
            yield chunk
            await asyncio.sleep(0.25)

    async with httpx.AsyncClient(base_url=rated.url, timeout=60) as http:
        before = (await ascrape(http)).total("request_bodies_cut_total")
        response = await http.post("/_test/body", content=upload())
        after = (await ascrape(http)).total("request_bodies_cut_total")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "length": len(chunk) * chunks,
        "sha256": hashlib.sha256(chunk * chunks).hexdigest(),
    }
    assert after == before

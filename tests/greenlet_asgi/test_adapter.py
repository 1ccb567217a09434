"""service.greenlet_asgi.adapter over real sockets: a real Hypercorn serving the app
(tests.support.probe_app).

Isolation under concurrency, body limits and streaming both ways, disconnects, errors,
keep-alive and HTTP/2, and the WSGI environ.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from service.greenlet_asgi.body import RequestBody
from service.greenlet_asgi.environ import build_environ
from tests.conftest import MAX_BODY
from tests.support.live import LiveServer


async def test_500_concurrent_requests_each_see_only_their_own_request_and_g(
    live: LiveServer,
) -> None:
    limits = httpx.Limits(max_connections=600, max_keepalive_connections=600)
    async with httpx.AsyncClient(base_url=live.url, limits=limits, timeout=60) as http:

        async def one(i: int) -> tuple[int, dict[str, str]]:
            value = f"value-{i}-{uuid.uuid4().hex}"
            response = await http.get(
                "/_test/echo",
                params={"value": value},
                headers={"X-Probe": value, "X-Request-ID": f"req-{i}"},
            )
            assert response.status_code == 200
            return i, response.json() | {"expected": value}

        results = await asyncio.gather(*(one(i) for i in range(500)))
    assert len(results) == 500
    for i, body in results:
        assert body["arg"] == body["g"] == body["header"] == body["expected"]
        assert body["request_id"] == f"req-{i}"


async def test_413_is_sent_before_an_oversized_body_is_read(live: LiveServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    # Headers only: the announced body is never sent, so an answer proves it was not awaited.
    writer.write(
        b"POST /_test/body HTTP/1.1\r\nHost: test\r\nContent-Type: application/octet-stream\r\n"
        b"X-Request-ID: too-big-1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY * 100)
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 413")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    body = json.loads(await reader.readexactly(length))
    assert body["error"]["code"] == "request_entity_too_large"
    assert body["error"]["request_id"] == "too-big-1"
    writer.close()


async def _chunks(total: int, size: int = 8192) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = bytes([sent % 251]) * min(size, total - sent)
        sent += len(chunk)
        yield chunk


async def test_a_streamed_body_within_the_limit_arrives_whole(client: httpx.AsyncClient) -> None:
    total = MAX_BODY - 10
    expected = hashlib.sha256(b"".join([c async for c in _chunks(total)])).hexdigest()
    response = await client.post("/_test/body", content=_chunks(total))  # chunked encoding
    assert response.status_code == 200
    assert response.json() == {"length": total, "sha256": expected}


async def test_a_streamed_body_over_the_limit_gets_413(client: httpx.AsyncClient) -> None:
    try:
        response = await client.post("/_test/body", content=_chunks(MAX_BODY * 4))
    except httpx.HTTPError:
        pytest.fail("the server should answer 413 rather than drop the connection")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_entity_too_large"


async def test_body_lines_can_be_iterated(client: httpx.AsyncClient) -> None:
    response = await client.post("/_test/lines", content=b"one\ntwo\nthree")
    assert response.json() == {"lines": ["one\n", "two\n", "three"]}


async def test_a_generator_response_arrives_chunk_by_chunk(client: httpx.AsyncClient) -> None:
    gate = uuid.uuid4().hex
    async with client.stream("GET", "/_test/stream", params={"gate": gate}) as response:
        chunks = response.aiter_raw()
        # The generator is blocked until the gate opens, so the first chunk can only be
        # here if it was sent on its own.
        first = await asyncio.wait_for(chunks.__anext__(), 10)
        assert first == b"first\n"
        opened = await client.post(f"/_test/open/{gate}")
        assert opened.status_code == 200
        rest = b"".join([chunk async for chunk in chunks])
    assert rest == b"second\n"


async def test_an_error_mid_stream_cuts_the_response_short(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream("GET", "/_test/stream-then-fail") as response:
            assert response.status_code == 200
            await response.aread()


async def test_a_client_disconnect_ends_the_request_and_returns_its_connection(
    live: LiveServer, client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    async def running_sleeps() -> int:
        return int(
            await pg.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'"
            )
        )

    with pytest.raises(httpx.ReadTimeout):
        await client.get("/_test/sleep", params={"seconds": "30"}, timeout=1.0)
    # The client has hung up; the view's query is cancelled and its connection returned.
    for _ in range(100):
        pool = (await client.get("/_test/pool")).json()
        if pool["checked_out"] == 0 and await running_sleeps() == 0:
            break
        await asyncio.sleep(0.1)
    assert pool["checked_out"] == 0
    assert await running_sleeps() == 0
    assert "client disconnected" in live.log()
    # And the pool still serves.
    assert (await client.get("/_test/query")).status_code == 200


async def test_an_exception_gives_the_500_envelope_and_a_logged_traceback(
    live: LiveServer, client: httpx.AsyncClient
) -> None:
    response = await client.get("/_test/boom", headers={"X-Request-ID": "boom-42"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "An unexpected error occurred.",
            "request_id": "boom-42",
        }
    }
    assert "secret detail" not in response.text
    log = live.log()
    assert "Traceback" in log
    assert "RuntimeError: secret detail that must not leak" in log
    assert "[rid=boom-42]" in log


async def test_keep_alive_reuses_one_connection(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url) as http:
        ports = {(await http.get("/_test/environ")).json()["REMOTE_PORT"] for _ in range(5)}
    assert len(ports) == 1


async def test_http2_is_served(live: LiveServer) -> None:
    if live.server == "uvicorn":
        pytest.skip("uvicorn serves HTTP/1.1 only (TEST_SERVER=uvicorn)")
    async with httpx.AsyncClient(base_url=live.url, http1=False, http2=True) as http:
        responses = await asyncio.gather(
            *(http.get("/_test/echo", params={"value": str(i)}) for i in range(20))
        )
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert [r.json()["arg"] for r in responses] == [str(i) for i in range(20)]
    assert {r.json()["request_id"] for r in responses} == {
        r.headers["x-request-id"] for r in responses
    }


async def test_environ_over_a_real_socket(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/_test/environ",
        params={"q": "café ünïcode", "tag": ["a", "b"]},
        headers=[("X-Multi", "one"), ("X-Multi", "two")],
    )
    found = response.json()
    assert found["REMOTE_ADDR"] == "127.0.0.1"
    assert found["HTTP_X_MULTI"] == "one,two"
    assert found["args"] == {"q": ["café ünïcode"], "tag": ["a", "b"]}
    assert found["SERVER_PROTOCOL"] == "HTTP/1.1"


def _scope(**overrides: object) -> dict[str, object]:
    scope: dict[str, object] = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("10.1.2.3", 5555),
        "server": ("api.test", 8000),
    }
    scope.update(overrides)
    return scope


def _body() -> RequestBody:
    async def receive() -> dict[str, object]:
        raise AssertionError("the environ builder must not read the body")

    return RequestBody(receive, 1024, expected=False)


def test_environ_strips_root_path_into_script_name() -> None:
    environ = build_environ(_scope(path="/news/api/v1/items", root_path="/news"), _body())
    assert environ["SCRIPT_NAME"] == "/news"
    assert environ["PATH_INFO"] == "/api/v1/items"
    assert environ["REMOTE_ADDR"] == "10.1.2.3"
    assert environ["SERVER_PORT"] == "8000"


def test_environ_keeps_non_ascii_path_and_raw_query_bytes() -> None:
    environ = build_environ(
        _scope(path="/articles/café", query_string="q=naïve&x=%C3%A9".encode()),
        _body(),
    )
    # PEP 3333: native strings carry the bytes as latin-1.
    assert environ["PATH_INFO"].encode("latin-1").decode() == "/articles/café"
    assert environ["QUERY_STRING"].encode("latin-1") == "q=naïve&x=%C3%A9".encode()


def test_environ_joins_repeated_headers_and_cookies() -> None:
    headers = [
        (b"accept", b"a"),
        (b"accept", b"b"),
        (b"cookie", b"x=1"),
        (b"cookie", b"y=2"),
        (b"content-type", b"application/json"),
        (b"content-length", b"3"),
    ]
    environ = build_environ(_scope(headers=headers), _body())
    assert environ["HTTP_ACCEPT"] == "a,b"
    assert environ["HTTP_COOKIE"] == "x=1; y=2"
    assert environ["CONTENT_TYPE"] == "application/json"
    assert environ["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in environ


def test_invalid_content_length_is_a_400(live: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(b"POST /_test/body HTTP/1.1\r\nHost: t\r\nContent-Length: 12abc\r\n\r\n")
        head = sock.recv(4096)
    # h11 itself rejects a malformed Content-Length before the app sees it.
    assert head.startswith(b"HTTP/1.1 400")

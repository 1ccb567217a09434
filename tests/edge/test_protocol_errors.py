"""What Hypercorn's HTTP/1.1 layer (h11) answers itself, before the application sees a request:
exactly the answers README.md documents ("Statuses from the protocol layer"), after which the
server goes on serving."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.support.live import LiveServer

# The request head is never finished: past hypercorn.toml's h11_max_incomplete_size (16 KiB)
# of it, h11 gives up.
OVERSIZED_HEAD = b"GET /healthz HTTP/1.1\r\nHost: test\r\n" + b"".join(
    b"X-Filler-%d: %s\r\n" % (i, b"f" * 100) for i in range(145)
)
MALFORMED_REQUEST_LINE = b"GET /healthz HTTP/1.1 trailing\r\nHost: test\r\n\r\n"
UNKNOWN_TRANSFER_ENCODING = (
    b"POST /_test/body HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip\r\n\r\n"
)


def _exchange(port: int, request: bytes) -> bytes:
    """Send ``request``; everything the server sends back until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [(OVERSIZED_HEAD, 431), (MALFORMED_REQUEST_LINE, 400), (UNKNOWN_TRANSFER_ENCODING, 501)],
    ids=["oversized-header-block", "malformed-request-line", "unknown-transfer-encoding"],
)
def test_the_protocol_layer_answers_bare_and_the_server_stays_up(
    live: LiveServer, request_bytes: bytes, status: int
) -> None:
    if live.server != "hypercorn":
        pytest.skip("pins Hypercorn's own answers")
    head, _, body = _exchange(live.port, request_bytes).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    # No reason phrase, no body, no X-Request-ID, no envelope; then the connection is closed.
    assert status_line == f"HTTP/1.1 {status} "
    headers = dict(line.lower().split(": ", 1) for line in lines)
    assert set(headers) == {"content-length", "connection", "date", "server"}
    assert headers["content-length"] == "0"
    assert headers["connection"] == "close"
    assert headers["server"] == "hypercorn-h11"
    assert body == b""

    response = httpx.get(live.url + "/healthz", headers={"X-Request-ID": "after"}, timeout=30)
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "after"

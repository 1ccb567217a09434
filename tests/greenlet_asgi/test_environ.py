"""service.greenlet_asgi.environ: request headers whose names hold ``_`` never reach the environ (as
nginx drops them), directly and through a real Hypercorn (tests.support.probe_app)."""

from __future__ import annotations

import httpx

from service.greenlet_asgi.body import RequestBody
from service.greenlet_asgi.environ import build_environ, expects_body


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, object]:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("10.1.2.3", 5555),
        "server": ("api.test", 8000),
    }


def _body() -> RequestBody:
    async def receive() -> dict[str, object]:
        raise AssertionError("the environ builder must not read the body")

    return RequestBody(receive, 1024, expected=False)


def test_underscored_header_names_are_dropped_and_dashed_ones_kept() -> None:
    headers = [
        (b"api_key", b"nd_forged"),
        (b"x_forwarded_for", b"203.0.113.9"),
        (b"content_length", b"7"),
        (b"content_type", b"text/plain"),
        (b"x-forwarded-for", b"198.51.100.1"),
        (b"x_request_id", b"mine"),
    ]
    environ = build_environ(_scope(headers), _body())
    assert environ["HTTP_X_FORWARDED_FOR"] == "198.51.100.1"  # not joined with the forgery
    for key in ("HTTP_API_KEY", "HTTP_X_REQUEST_ID", "CONTENT_LENGTH", "CONTENT_TYPE"):
        assert key not in environ, key
    assert not any(key.startswith(("HTTP_CONTENT", "HTTP_API")) for key in environ)
    assert not expects_body(environ)  # a Content_Length announces no body


async def test_over_a_real_socket_only_the_dashed_headers_arrive(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/_test/environ",
        headers=[
            ("API_Key", "nd_forged"),
            ("X_Forwarded_For", "203.0.113.9"),
            ("Content_Type", "text/plain"),
            ("X-Probe", "kept"),
            ("X_Probe", "dropped"),
        ],
    )
    assert response.status_code == 200, response.text
    headers = response.json()["headers"]
    assert headers["HTTP_X_PROBE"] == "kept"
    for key in ("HTTP_API_KEY", "HTTP_X_FORWARDED_FOR", "CONTENT_TYPE"):
        assert key not in headers, headers
    assert all("forged" not in value and "203.0.113.9" not in value for value in headers.values())

"""Request metrics at the ASGI level: ``http_requests_total`` and
``http_request_duration_seconds`` by method, route template and status.

``RequestMetrics`` wraps everything else (the cache fast path and the Flask adapter), so a
cache hit answered before Flask is counted like any other request. Labels stay bounded:

* ``route`` is the template whoever answered wrote into the scope (``ROUTE_SCOPE_KEY``):
  Flask's matched rule (``service.web.app``) or the fast path's (``service.edge.fastpath``),
  never the raw path; a request no route matched (a 404, a 405) is ``UNMATCHED``;
* ``method`` is one of the methods the API knows, anything else ``OTHER`` (HTTP lets a client
  invent methods);
* ``status`` is the status sent; ``500`` when the application failed before sending one, and
  ``499`` (nginx's "client closed request") when it ended without answering because the
  client went away.

The duration runs from the call to the end of the response. Series are looked up once per
label set and kept, so a request costs two increments and a bucket search.
"""

from __future__ import annotations

import time
from typing import Any

from service.core.types import ROUTE_SCOPE_KEY, ASGIApp, Message, Receive, Scope, Send
from service.infra.metrics import HTTP_DURATION, HTTP_REQUESTS

UNMATCHED = "unmatched"
OTHER = "OTHER"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
FAILED, GONE = 500, 499


class RequestMetrics:
    """ASGI middleware counting and timing every HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        except BaseException:
            status = status or FAILED
            raise
        finally:
            self.record(scope, status or GONE, time.perf_counter() - started)

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"]
        if method not in METHODS:
            method = OTHER
        key = (method, scope.get(ROUTE_SCOPE_KEY) or UNMATCHED, status)
        series = self._series.get(key)
        if series is None:
            labels = (key[0], key[1], str(status))
            series = self._series[key] = (
                HTTP_REQUESTS.labels(*labels),
                HTTP_DURATION.labels(*labels),
            )
        series[0].inc()
        series[1].observe(seconds)

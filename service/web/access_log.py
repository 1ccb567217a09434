"""Hypercorn's access and error logs in the application's format (``service.core.logs``).

Hypercorn writes one access line per request after the response, from its own task: the
request's context (request id, span) is gone by then, and its ``access_log_format`` knows
headers and the raw path but not the route template. ``AccessLogger`` (Hypercorn's
``logger_class``) reads what it needs from the request's ASGI scope and response instead:
``route`` (written by Flask or the cache fast path, ``ROUTE_SCOPE_KEY``), ``status``,
``duration_ms``, the request id the response carries in ``X-Request-ID``, the trace id the
tracing middleware left in the scope (``TRACE_SCOPE_KEY``), and logs them as record fields,
so a JSON line has the same schema as every other line. The path is logged without its
query string (query strings are the client's to fill), and cut to ``MAX_LOGGED_PATH``
characters (``service.core.logs.cut_path``).

In text format an access line reads as it always did (after the time, level and logger)::

    [rid=<id>] 127.0.0.1:51234 "GET /api/v1/articles/7 HTTP/1.1" 200 412 0.002310s

``install()`` makes this the class of every Hypercorn ``Config`` of the process that was not
given another one: ``service.asgi`` calls it while Hypercorn loads the app, before Hypercorn
creates its loggers, so ``hypercorn --config hypercorn.toml service.asgi:app`` gets these
lines too (a TOML file cannot name a class); ``python -m service serve`` also sets it
explicitly.
"""

from __future__ import annotations

from typing import Any

from hypercorn.config import Config
from hypercorn.logging import Logger

from service.core.logs import cut_path, handler
from service.core.types import ROUTE_SCOPE_KEY
from service.infra.tracing import TRACE_SCOPE_KEY

HANDLED = ("hypercorn.access", "hypercorn.error")


class AccessLogger(Logger):
    """Hypercorn's logger, with the process's log format and structured access lines."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        ours = handler()
        for logger in (self.access_logger, self.error_logger):
            # Loggers Hypercorn made for "-" or a file path: keep where their lines go, give
            # them the application's format. A logging.Logger passed in is left as it is.
            if logger is not None and logger.name in HANDLED:
                for target in logger.handlers:
                    target.setFormatter(ours.formatter)
                    for context_filter in ours.filters:
                        target.addFilter(context_filter)  # a no-op when already there
                logger.propagate = False

    async def access(self, request: Any, response: Any, request_time: float) -> None:
        if self.access_logger is None:
            return
        headers: dict[bytes, bytes] = {}
        if response is not None:
            for name, value in response.get("headers", ()):
                headers[bytes(name).lower()] = bytes(value)
        status = response["status"] if response is not None else None
        method = request.get("method", "GET")  # a websocket has none
        path = cut_path(request.get("path", ""))
        protocol = f"HTTP/{request['http_version']}" if "http_version" in request else "WS"
        client = request.get("client")
        remote = f"{client[0]}:{client[1]}" if client and len(client) == 2 else "-"
        size = headers.get(b"content-length")
        request_id = headers.get(b"x-request-id")
        self.access_logger.info(
            '%s "%s %s %s" %s %s %.6fs',
            remote,
            method,
            path,
            protocol,
            status if status is not None else "-",
            size.decode("latin-1") if size else "-",
            request_time,
            extra={
                "request_id": request_id.decode("latin-1") if request_id else "-",
                "job_id": None,
                "route": request.get(ROUTE_SCOPE_KEY),
                "status": status,
                "duration_ms": round(request_time * 1000, 3),
                "method": method,
                "path": path,
                "client": remote,
                "bytes": int(size) if size and size.isdigit() else None,
                "trace_id": request.get(TRACE_SCOPE_KEY),
                "span_id": None,
            },
        )


def install() -> None:
    """Make ``AccessLogger`` the default ``logger_class`` of Hypercorn's ``Config``."""
    if Config.logger_class is Logger:
        Config.logger_class = AccessLogger

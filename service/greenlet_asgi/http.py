"""One ASGI HTTP request served by the WSGI app, run in a greenlet on the serving loop.

``ASGIHTTPConnection`` handles one ``http`` scope:

* the request id is chosen (``Hooks.request_id``, which may also keep it for log lines) and
  added to the response as ``X-Request-ID``;
* a body announced larger than ``max_body`` is refused with 413 before a byte is read (an
  unreadable Content-Length with 400); a body that streams past the limit is refused by
  ``RequestBody`` (``body``), and so is one that arrives too slowly
  (``BodyRate``: 408, answered with ``Connection: close``);
* the WSGI app runs in a greenlet (``bridge``); its response is sent chunk by
  chunk as the iterable yields, so generators stream;
* a request still running after ``DISCONNECT_WATCH_DELAY`` gets a watcher for
  ``http.disconnect`` (``DisconnectWatch``); when the client goes away the request is
  abandoned, its greenlet ended;
* any exception that escapes the WSGI app is logged with its traceback and answered with
  the 500 error body (``Hooks.error_body``; if headers are already sent, the response is cut
  short).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from service.greenlet_asgi import drain
from service.greenlet_asgi.body import BodyRate, DisconnectWatch, RequestBody
from service.greenlet_asgi.bridge import await_, run_in_greenlet
from service.greenlet_asgi.environ import build_environ, expects_body
from service.greenlet_asgi.hooks import DEFAULT_HOOKS, REQUEST_ID_KEY, Hooks, json_error_body
from service.greenlet_asgi.types import Message, Receive, Scope, Send

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
Headers = tuple[tuple[bytes, bytes], ...]

# Requests still running after this long get a task that watches for a client disconnect
# (shorter ones finish anyway; under load most requests would otherwise pay for a watcher).
DISCONNECT_WATCH_DELAY = 0.5


class _Exchange:
    """One request/response: what has been sent, so errors know what can still be said."""

    def __init__(
        self,
        send: Send,
        request_id: str,
        defaults: Headers = (),
        body: RequestBody | None = None,
        error_body: Callable[[str, str, str], bytes] = json_error_body,
    ) -> None:
        self.send = send
        self.request_id = request_id
        self.error_body = error_body
        self.defaults = defaults
        self.body = body
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = False
        self.finished = False
        self.remaining: int | None = None  # body bytes still due per Content-Length

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and self.started:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status = int(status.split(" ", 1)[0])
        self.headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
        ]
        self.remaining = None
        present = set()
        for name, value in self.headers:
            present.add(name)
            if name == b"content-length":
                self.remaining = int(value)
        if b"x-request-id" not in present:  # every response echoes the request id
            self.headers.append((b"x-request-id", self.request_id.encode("latin-1")))
        if drain.active() and b"connection" not in present:
            # The worker is stopping: the client's next request goes elsewhere.
            present.add(b"connection")
            self.headers.append((b"connection", b"close"))
        for name, value in self.defaults:  # e.g. security headers, unless the app set them
            if name not in present:
                self.headers.append((name, value))
        body = self.body
        unread = body is not None and (not body.complete or body.too_slow or body.overflowed)
        if unread and b"connection" not in present:
            # Answered before the request body was read (a 404 from routing, a body cut for
            # its rate or its size): the server closes the connection after this answer; say
            # so, and the client does not send its next request on it.
            self.headers.append((b"connection", b"close"))
        return self.write

    def _begin(self) -> Message:
        """The ``http.response.start`` message, the response now counting as started."""
        if self.status is None:
            raise RuntimeError("the WSGI app sent a body before calling start_response")
        self.started = True
        return {"type": "http.response.start", "status": self.status, "headers": self.headers}

    def write(self, chunk: bytes) -> None:
        """Send ``chunk`` now; the last chunk of a sized body also ends the response."""
        more = True
        if self.remaining is not None:
            self.remaining -= len(chunk)
            more = self.remaining > 0
        body = {"type": "http.response.body", "body": chunk, "more_body": more}
        if self.started:
            await_(self.send(body))
        else:  # headers and first chunk in one trip to the loop
            await_(self._send_both(self._begin(), body))
        self.finished = not more

    async def _send_both(self, first: Message, second: Message) -> None:
        await self.send(first)
        await self.send(second)

    def finish(self) -> None:
        if not self.started:
            await_(self.send(self._begin()))
        if not self.finished:
            await_(self.send({"type": "http.response.body", "body": b"", "more_body": False}))
            self.finished = True

    async def answer_error(self, status: int, code: str, message: str, extra: Headers = ()) -> None:
        """Answer with the error body (nothing may have been sent yet)."""
        headers = (*extra, *self.defaults)
        body = self.error_body(code, message, self.request_id)
        await send_error(self.send, status, body, self.request_id, headers)


async def send_error(
    send: Send, status: int, body: bytes, request_id: str, defaults: Headers = ()
) -> None:
    """Answer with the JSON error ``body`` from outside the WSGI app."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode("latin-1")),
                (b"connection", b"close"),
                *defaults,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class ASGIHTTPConnection:
    """One HTTP request: the WSGI app called in a greenlet, its response sent (see the module
    docstring)."""

    def __init__(
        self,
        wsgi_app: WSGIApp,
        scope: Scope,
        *,
        max_body: int,
        body_rate: BodyRate | None = None,
        default_headers: Headers = (),
        hooks: Hooks = DEFAULT_HOOKS,
    ) -> None:
        self.wsgi_app = wsgi_app
        self.scope = scope
        self.max_body = max_body
        self.body_rate = body_rate
        # Added to every response that does not set them itself (lower-cased bytes).
        self.default_headers = default_headers
        self.hooks = hooks

    async def __call__(self, receive: Receive, send: Send) -> None:
        hooks = self.hooks
        body = RequestBody(
            receive, self.max_body, expected=True, rate=self.body_rate, on_cut=hooks.on_body_cut
        )
        environ = build_environ(self.scope, body)
        request_id = hooks.request_id(environ.get("HTTP_X_REQUEST_ID"))
        environ[REQUEST_ID_KEY] = request_id
        exchange = _Exchange(send, request_id, self.default_headers, body, hooks.error_body)
        if await self._refuse_oversized(environ.get("CONTENT_LENGTH"), exchange):
            return
        body.complete = not expects_body(environ)
        await self._serve(environ, body, receive, exchange)

    async def _refuse_oversized(self, declared: str | None, exchange: _Exchange) -> bool:
        """Answer 413 for a declared body over ``max_body`` (400 for an unreadable
        Content-Length) before a byte of it is read; True if answered."""
        if not declared:
            return False
        try:
            too_large = int(declared) > self.max_body
        except ValueError:
            await exchange.answer_error(400, "bad_request", "Invalid Content-Length.")
            return True
        if too_large:
            await exchange.answer_error(
                413,
                "request_entity_too_large",
                f"The request body is larger than {self.max_body} bytes.",
            )
        return too_large

    async def _serve(
        self, environ: dict[str, Any], body: RequestBody, receive: Receive, exchange: _Exchange
    ) -> None:
        """Run the WSGI app in a greenlet; a client disconnect abandons the request."""
        task = asyncio.current_task()
        assert task is not None
        watch = DisconnectWatch(task, body, receive, DISCONNECT_WATCH_DELAY)
        drain.running.add(task)
        try:
            await run_in_greenlet(self._run_wsgi, environ, exchange)
        except asyncio.CancelledError:
            if drain.was_cut(task):  # the worker is stopping and the grace is over
                task.uncancel()
                if not exchange.started:
                    await exchange.answer_error(
                        503,
                        "service_unavailable",
                        "The server is restarting; try again.",
                        ((b"retry-after", b"1"),),
                    )
            elif watch.disconnected:
                task.uncancel()
                log.info("client disconnected; request abandoned")
            else:
                raise  # the server itself cancels: let the cancellation through
        finally:
            drain.running.discard(task)
            watch.close()

    def _run_wsgi(self, environ: dict[str, Any], exchange: _Exchange) -> None:
        """The greenlet's body: call the WSGI app and send its response."""
        iterable: Iterable[bytes] | None = None
        try:
            iterable = self.wsgi_app(environ, exchange.start_response)
            for chunk in iterable:
                if chunk:
                    exchange.write(chunk)
            exchange.finish()
        except Exception:
            log.exception("unhandled error while serving the request")
            if not exchange.started:
                # Headers not sent yet: the client gets the error body, never the traceback.
                await_(
                    exchange.answer_error(500, "internal_error", "An unexpected error occurred.")
                )
            # Otherwise the response is cut short; the server closes the stream.
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()

"""ASGI to WSGI, loop-native: each HTTP request runs the WSGI app in a greenlet on the loop.

``GreenletASGI(wsgi_app, ...)`` is an ASGI 3 application. For each HTTP request:

* the request id is chosen (``service.request_id``), set for every log line and added to the
  response as ``X-Request-ID``;
* a body announced larger than ``max_body`` is refused with 413 before a byte is read; a
  chunked (or HTTP/2) body is counted as it streams and refused with 413 past the limit;
* ``wsgi.input`` reads await the next body message on demand (``RequestBody``);
* the WSGI app runs in a greenlet (``service.bridge``); its response is sent chunk by chunk
  as the iterable yields, so generators stream;
* a request still running after ``DISCONNECT_WATCH_DELAY`` gets a watcher for
  ``http.disconnect``; when the client goes away the request's task is cancelled, the
  cancellation is thrown into the greenlet where it waits, Flask's teardown runs (closing the
  database session, which returns its connection to the pool) and the greenlet's job ends;
* any exception that escapes the WSGI app is logged with its traceback and answered with
  the 500 envelope (or, if headers are already sent, the response is cut short).

A ``fast_path`` may answer a request before any of this (``service.fastpath``).

Lifespan events call ``on_startup``/``on_shutdown`` on the serving loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge

from service.bridge import await_, run_in_greenlet
from service.errors import envelope_bytes
from service.request_id import choose_request_id, current_request_id

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

# Requests still running after this long get a task that watches for a client disconnect
# (shorter ones finish anyway; under load most requests would otherwise pay for a watcher).
DISCONNECT_WATCH_DELAY = 0.5


def build_environ(scope: Scope, body: RequestBody) -> dict[str, Any]:
    """A PEP 3333 environ for an ASGI HTTP scope.

    Native strings are latin-1 per PEP 3333, so non-ASCII paths and raw query bytes survive
    the round trip; repeated headers are joined with ``,`` (cookies with ``;``).
    """
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :] or "/"
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "",
        "SERVER_PROTOCOL": "HTTP/" + scope.get("http_version", "1.1"),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "asgi.scope": scope,
    }
    client = scope.get("client")
    if client:
        environ["REMOTE_ADDR"] = str(client[0])
        environ["REMOTE_PORT"] = str(client[1])
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        key = name if name in ("CONTENT_LENGTH", "CONTENT_TYPE") else "HTTP_" + name
        value = raw_value.decode("latin-1")
        if key in environ:
            separator = "; " if key == "HTTP_COOKIE" else ","
            value = environ[key] + separator + value
        environ[key] = value
    return environ


def expects_body(environ: dict[str, Any]) -> bool:
    """Whether the request announces a body: a non-zero Content-Length, a Transfer-Encoding,
    or (HTTP/2, where neither is required) a method that usually carries one."""
    if environ.get("CONTENT_LENGTH", "0") not in ("", "0"):
        return True
    if "HTTP_TRANSFER_ENCODING" in environ:
        return True
    return environ["SERVER_PROTOCOL"] == "HTTP/2" and environ["REQUEST_METHOD"] in (
        "POST",
        "PUT",
        "PATCH",
    )


class RequestBody:
    """``wsgi.input``: a readable stream whose reads await the next ASGI message on the loop.

    It counts what arrives and raises 413 once the body passes ``limit``; a disconnect while
    reading cancels the request like a disconnect at any other point.
    """

    def __init__(self, receive: Receive, limit: int, *, expected: bool) -> None:
        self._receive = receive
        self._limit = limit
        self._buffer = bytearray()
        self._received = 0
        self.complete = not expected  # no more body messages to read
        self.disconnected = False
        self.overflowed = False

    def _fill(self) -> bool:
        """Append the next chunk to the buffer; False at the end of the body."""
        if self.complete:
            return False
        message = await_(self._receive())
        if message["type"] == "http.disconnect":
            self.complete = self.disconnected = True
            raise asyncio.CancelledError("client disconnected")
        chunk = message.get("body", b"")
        self._received += len(chunk)
        if self._received > self._limit:
            self.complete = self.overflowed = True
            if message.get("more_body", False):
                await_(self.discard_rest(max_bytes=16 * self._limit, max_seconds=10))
            raise RequestEntityTooLarge(f"The request body is larger than {self._limit} bytes.")
        self._buffer += chunk
        if not message.get("more_body", False):
            self.complete = True
        return True

    async def discard_rest(self, *, max_bytes: int, max_seconds: float) -> None:
        """Read and drop the rest of an oversized body before the 413 is sent, within bounds.

        A client sends its whole body before it reads the answer, and the server closes a
        connection whose request body is unread once the response ends: without this the
        client's upload is reset and it never sees the 413. Past the bounds the server answers
        (and closes) anyway.
        """
        dropped = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_seconds):
                while dropped <= max_bytes:
                    message = await self._receive()
                    if message["type"] != "http.request":
                        return
                    dropped += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        return

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                end = newline + 1
                break
            if (limit is not None and len(self._buffer) >= limit) or not self._fill():
                end = len(self._buffer)
                break
        return self._take(end if limit is None else min(end, limit))

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> RequestBody:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class DisconnectWatch:
    """Cancels a request's task when its client goes away.

    Watching costs a task that waits on ``receive()``, so it starts only for requests still
    running after ``delay`` seconds (a quick request finishes anyway), and only once the body
    has been read (before that, ``RequestBody`` sees a disconnect itself).
    """

    def __init__(
        self, task: asyncio.Task[Any], body: RequestBody, receive: Receive, delay: float
    ) -> None:
        self._task = task
        self._body = body
        self._receive = receive
        self._delay = delay
        self._loop = task.get_loop()
        self._watcher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(delay, self._start)
        self._disconnected = False

    @property
    def disconnected(self) -> bool:
        return self._disconnected or self._body.disconnected

    def _start(self) -> None:
        if not self._body.complete:
            self._timer = self._loop.call_later(self._delay, self._start)
            return
        self._timer = None
        self._watcher = self._loop.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._disconnected = True
                self._task.cancel()
                return

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


class _Exchange:
    """One request/response: what has been sent, so errors know what can still be said."""

    def __init__(
        self, send: Send, request_id: str, defaults: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        self.send = send
        self.request_id = request_id
        self.defaults = defaults
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
        for name, value in self.defaults:  # e.g. security headers, unless the app set them
            if name not in present:
                self.headers.append((name, value))
        return self.write

    def _start_message(self) -> Message:
        return {"type": "http.response.start", "status": self.status, "headers": self.headers}

    def _start(self) -> None:
        if self.status is None:
            raise RuntimeError("the WSGI app sent a body before calling start_response")
        self.started = True
        await_(self.send(self._start_message()))

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
            if self.status is None:
                raise RuntimeError("the WSGI app sent a body before calling start_response")
            self.started = True
            await_(self._send_both(self._start_message(), body))
        self.finished = not more

    async def _send_both(self, first: Message, second: Message) -> None:
        await self.send(first)
        await self.send(second)

    def finish(self) -> None:
        if not self.started:
            self._start()
        if not self.finished:
            await_(self.send({"type": "http.response.body", "body": b"", "more_body": False}))
            self.finished = True


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    request_id: str,
    defaults: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Answer with the error envelope from outside the WSGI app."""
    body = envelope_bytes(code, message, request_id)
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


class GreenletASGI:
    """Serve a WSGI app (Flask) on the ASGI server's own event loop; see the module docstring."""

    def __init__(
        self,
        wsgi_app: WSGIApp,
        *,
        max_body: int,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
        default_headers: dict[str, str] | None = None,
        fast_path: Callable[[Scope, Send], Awaitable[bool]] | None = None,
    ) -> None:
        self.wsgi_app = wsgi_app
        # Tried first for every HTTP request: answers it and returns True, or sends nothing
        # and returns False (e.g. cache hits served without Flask, ``service.fastpath``).
        self.fast_path = fast_path
        # Headers added to every response that does not set them itself (lower-cased bytes).
        self.default_headers = tuple(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (default_headers or {}).items()
        )
        self.max_body = max_body
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.handle_http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.handle_lifespan(receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def handle_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.on_startup is not None:
                        await self.on_startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if self.on_shutdown is not None:
                        await self.on_shutdown()
                except Exception as exc:
                    log.exception("shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is not None and await self.fast_path(scope, send):
            return
        body = RequestBody(receive, self.max_body, expected=True)
        environ = build_environ(scope, body)
        request_id = choose_request_id(environ.get("HTTP_X_REQUEST_ID"))
        environ["newsdesk.request_id"] = request_id
        current_request_id.set(request_id)

        declared = environ.get("CONTENT_LENGTH")
        if declared:
            try:
                too_large = int(declared) > self.max_body
            except ValueError:
                await send_error(
                    send,
                    400,
                    "bad_request",
                    "Invalid Content-Length.",
                    request_id,
                    self.default_headers,
                )
                return
            if too_large:
                await send_error(
                    send,
                    413,
                    "request_entity_too_large",
                    f"The request body is larger than {self.max_body} bytes.",
                    request_id,
                    self.default_headers,
                )
                return
        body.complete = not expects_body(environ)

        task = asyncio.current_task()
        assert task is not None
        watch = DisconnectWatch(task, body, receive, DISCONNECT_WATCH_DELAY)
        exchange = _Exchange(send, request_id, self.default_headers)
        try:
            await run_in_greenlet(self._run_wsgi, environ, exchange)
        except asyncio.CancelledError:
            if not watch.disconnected:
                raise  # the server is shutting down: let the cancellation through
            task.uncancel()
            log.info("client disconnected; request abandoned")
        finally:
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
                # Headers not sent yet: the client gets the envelope, never the traceback.
                await_(
                    send_error(
                        exchange.send,
                        500,
                        "internal_error",
                        "An unexpected error occurred.",
                        exchange.request_id,
                        exchange.defaults,
                    )
                )
            # Otherwise the response is cut short; the server closes the stream.
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()

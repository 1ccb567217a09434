"""``wsgi.input`` read from ASGI ``receive``, and the watch for a client that goes away.

* ``RequestBody``: reads await the next body message on demand, from inside the request's
  greenlet (``bridge.await_``), so a body is never buffered ahead of the app.
  A chunked (or HTTP/2) body is counted as it streams and refused with 413 past the limit
  (a body announced too large never gets this far: ``http``). A body that arrives too slowly
  (``BodyRate``) is refused with 408 and its connection closed (and ``on_cut`` called), so a
  client trickling bytes cannot hold a request open for long.
* ``DisconnectWatch``: when the client goes away the request's task is cancelled, the
  cancellation is thrown into the greenlet where it waits, Flask's teardown runs (closing the
  database session, which returns its connection to the pool) and the greenlet's job ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

from service.greenlet_asgi.bridge import await_
from service.greenlet_asgi.types import Message, Receive

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BodyRate:
    """The slowest a request body may arrive: on average ``min_rate`` bytes per second of
    reading once ``grace`` seconds of reading have passed (Kestrel's rule and defaults:
    240 bytes/s after 5 s). Only time spent waiting for the client counts, so an app busy
    before it reads (the server holds the client back meanwhile) is not held against it."""

    min_rate: float
    grace: float

    def budget(self, received: int, waited: float) -> float | None:
        """Seconds the next wait for body bytes may last, having waited ``waited`` seconds for
        the ``received`` bytes so far; None without a minimum rate."""
        if self.min_rate <= 0:
            return None
        return max(self.grace, received / self.min_rate) - waited


class BodyTooSlow(RequestTimeout):
    """The request body arrived slower than its ``BodyRate``: 408, the connection closed."""

    description = "The request body arrived too slowly."


class RequestBody:
    """``wsgi.input``: a readable stream whose reads await the next ASGI message on the loop.

    It counts what arrives and raises 413 once the body passes ``limit``, ``BodyTooSlow``
    (408, after calling ``on_cut``) once it falls behind ``rate``; a disconnect while reading
    cancels the request like a disconnect at any other point.
    """

    def __init__(
        self,
        receive: Receive,
        limit: int,
        *,
        expected: bool,
        rate: BodyRate | None = None,
        on_cut: Callable[[], None] | None = None,
    ) -> None:
        self._receive = receive
        self._limit = limit
        self._rate = rate
        self._on_cut = on_cut
        self._buffer = bytearray()
        self._received = 0
        self._waited = 0.0  # seconds spent waiting for body messages
        self.complete = not expected  # no more body messages to read
        self.disconnected = False
        self.overflowed = False
        self.too_slow = False

    def _fill(self) -> bool:
        """Append the next chunk to the buffer; False at the end of the body."""
        if self.complete:
            return False
        message = await_(self._next_message())
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

    async def _next_message(self) -> Message:
        """The next ASGI message, awaited no longer than the body's rate allows."""
        budget = None if self._rate is None else self._rate.budget(self._received, self._waited)
        if budget is None:
            return await self._receive()
        started = time.monotonic()
        try:
            async with asyncio.timeout(budget):
                return await self._receive()
        except TimeoutError:
            self.complete = self.too_slow = True
            if self._on_cut is not None:
                self._on_cut()
            waited = self._waited + time.monotonic() - started
            log.info("request body too slow: %d bytes in %.1f s", self._received, waited)
            raise BodyTooSlow() from None
        finally:
            self._waited += time.monotonic() - started

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

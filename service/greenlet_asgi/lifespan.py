"""The ASGI lifespan protocol: start-up and shutdown hooks run on the serving loop.

The server sends ``lifespan.startup`` before the first request and ``lifespan.shutdown`` after
the last, on the event loop that serves the requests; the hooks create and close what every
request shares there (engines, the Redis pool), so those are bound to the right loop. A hook
that raises is logged with its traceback and reported as ``lifespan.<event>.failed``: a
failed start-up stops the server before it takes requests.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from service.greenlet_asgi.types import Receive, Send

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


class ASGILifespan:
    """One lifespan scope: calls ``on_startup`` and ``on_shutdown`` when the server asks."""

    def __init__(self, on_startup: Hook | None = None, on_shutdown: Hook | None = None) -> None:
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown

    async def __call__(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if not await self._run(self.on_startup, "startup", "start-up", send):
                    return
            elif message["type"] == "lifespan.shutdown":
                await self._run(self.on_shutdown, "shutdown", "shutdown", send)
                return

    @staticmethod
    async def _run(hook: Hook | None, event: str, what: str, send: Send) -> bool:
        """Await ``hook`` and report ``lifespan.<event>.complete``, or ``.failed``; False if
        it failed."""
        try:
            if hook is not None:
                await hook()
        except Exception as exc:
            log.exception("%s failed", what)
            await send({"type": f"lifespan.{event}.failed", "message": str(exc)})
            return False
        await send({"type": f"lifespan.{event}.complete"})
        return True

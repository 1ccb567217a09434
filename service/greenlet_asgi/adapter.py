"""ASGI to WSGI, loop-native: each HTTP request runs the WSGI app in a greenlet on the loop.

``GreenletASGI(wsgi_app, ...)`` is an ASGI 3 application, split the way Quart's ``asgi.py``
splits its own: it only dispatches each scope by type.

* ``http``: ``ASGIHTTPConnection`` (``http``) serves the request with the WSGI app run in a
  greenlet (``bridge``) on the server's event loop: request id, body limits and minimum rate
  (``body``), streaming both ways, client disconnects, and the 500 error body for errors that
  escape the app.
* ``lifespan``: ``ASGILifespan`` (``lifespan``) calls ``on_startup`` and
  ``on_shutdown`` on that same loop, so the pools they create serve every request.
* ``websocket``: not served; the connection is closed.

What the application decides (request ids, error bodies, counting bodies cut for their rate)
comes in as ``hooks`` (``hooks.Hooks``). Anything answered before the WSGI app (Newsdesk's
cache fast path, ``service.edge.fastpath``) is an ASGI middleware wrapping this application,
not part of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from service.greenlet_asgi.body import BodyRate
from service.greenlet_asgi.hooks import DEFAULT_HOOKS, Hooks
from service.greenlet_asgi.http import ASGIHTTPConnection, WSGIApp
from service.greenlet_asgi.lifespan import ASGILifespan
from service.greenlet_asgi.types import Receive, Scope, Send


class GreenletASGI:
    """Serve a WSGI app (Flask) on the ASGI server's own event loop; see the module docstring."""

    def __init__(
        self,
        wsgi_app: WSGIApp,
        *,
        max_body: int,
        body_rate: BodyRate | None = None,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
        default_headers: dict[str, str] | None = None,
        hooks: Hooks = DEFAULT_HOOKS,
    ) -> None:
        self.wsgi_app = wsgi_app
        # Headers added to every response that does not set them itself (lower-cased bytes).
        self.default_headers = tuple(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (default_headers or {}).items()
        )
        self.max_body = max_body
        # The slowest a request body may arrive (None: no minimum).
        self.body_rate = body_rate
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.hooks = hooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            connection = ASGIHTTPConnection(
                self.wsgi_app,
                scope,
                max_body=self.max_body,
                body_rate=self.body_rate,
                default_headers=self.default_headers,
                hooks=self.hooks,
            )
            await connection(receive, send)
        elif scope["type"] == "lifespan":
            await ASGILifespan(self.on_startup, self.on_shutdown)(receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})

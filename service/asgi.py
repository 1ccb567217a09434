"""The ASGI application Hypercorn serves: ``hypercorn --config hypercorn.toml service.asgi:app``.

Importing this module reads the settings and builds the Flask app; it does no I/O. The
lifespan start-up creates the engines and the Redis client on the worker's event loop, and
shutdown closes them.
"""

from __future__ import annotations

import gc

from flask import Flask

from service.core.logs import configure_logging
from service.core.settings import Settings
from service.core.types import SECURITY_HEADERS, ASGIApp
from service.serving.adapter import GreenletASGI
from service.serving.fastpath import CachedReads
from service.web import context
from service.web.app import create_app


def asgi_app(flask_app: Flask) -> ASGIApp:
    """Wrap ``flask_app`` for an ASGI server, its resources tied to the lifespan: the cache
    fast path (``CachedReads``) in front of the loop-native adapter (``GreenletASGI``)."""
    state = context.app_state(flask_app)
    res = state.resources

    async def startup() -> None:
        await res.start()
        # Everything alive now (modules, the app, pools) lives as long as the process: keep it
        # out of the cyclic collector's scans, which otherwise grow with the heap.
        gc.collect()
        gc.freeze()

    adapter = GreenletASGI(
        flask_app.wsgi_app,
        max_body=res.settings.max_content_length,
        on_startup=startup,
        on_shutdown=res.close,
        default_headers=SECURITY_HEADERS,
    )
    return CachedReads(adapter, res, state.views)


def build(settings: Settings | None = None) -> ASGIApp:
    """Settings from the environment, logging, the Flask app and its ASGI wrapper."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    return asgi_app(create_app(settings))


app = build()

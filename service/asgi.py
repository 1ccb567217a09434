"""The ASGI application Hypercorn serves: ``hypercorn --config hypercorn.toml service.asgi:app``.

Importing this module reads the settings and builds the Flask app; it does no I/O. The
lifespan start-up creates the engines and the Redis client on the worker's event loop, and
shutdown closes them.
"""

from __future__ import annotations

import gc

from flask import Flask

from service.adapter import GreenletASGI
from service.app import app_resources, create_app
from service.fastpath import CachedReads
from service.logs import configure_logging
from service.settings import Settings
from service.web import SECURITY_HEADERS


def asgi_app(flask_app: Flask) -> GreenletASGI:
    """Wrap ``flask_app`` for an ASGI server, its resources tied to the lifespan."""
    res = app_resources(flask_app)

    async def startup() -> None:
        await res.start()
        # Everything alive now (modules, the app, pools) lives as long as the process: keep it
        # out of the cyclic collector's scans, which otherwise grow with the heap.
        gc.collect()
        gc.freeze()

    return GreenletASGI(
        flask_app.wsgi_app,
        max_body=res.settings.max_content_length,
        on_startup=startup,
        on_shutdown=res.close,
        default_headers=SECURITY_HEADERS,
        fast_path=CachedReads(res),
    )


def build(settings: Settings | None = None) -> GreenletASGI:
    """Settings from the environment, logging, the Flask app and its ASGI wrapper."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    return asgi_app(create_app(settings))


app = build()

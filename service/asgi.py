"""The ASGI application Hypercorn serves: ``hypercorn --config hypercorn.toml service.asgi:app``.

Importing this module reads nothing and builds nothing: ``app`` builds the application
(``build``: settings, logging, tracing, the Flask app) the first time it is called or its
``built()`` is asked for, which Hypercorn does with the lifespan start-up. That start-up
starts the process's ``Runtime`` (``service.infra.runtime``: engines and Redis clients on the
worker's event loop, loop lag, the view counter's retries, the metrics sampler), and shutdown
closes it.
"""

from __future__ import annotations

import asyncio
import gc

from flask import Flask

from service.core.errors import envelope_bytes
from service.core.logs import configure_logging
from service.core.request_id import bind_request_id
from service.core.settings import Settings
from service.core.types import SECURITY_HEADERS, ASGIApp, Receive, Scope, Send
from service.domain.view_counts import ViewCounter
from service.edge.fastpath import CachedReads
from service.edge.metrics import RequestMetrics
from service.greenlet_asgi.adapter import GreenletASGI
from service.greenlet_asgi.body import BodyRate
from service.greenlet_asgi.hooks import Hooks
from service.infra import schema
from service.infra.exposition import mark_this_process_dead
from service.infra.metrics import REQUEST_BODIES_CUT
from service.infra.resources import Resources
from service.infra.tracing import Tracing
from service.web import access_log, context
from service.web.app import create_app


def asgi_app(flask_app: Flask) -> ASGIApp:
    """Wrap ``flask_app`` for an ASGI server, its runtime tied to the lifespan: request
    metrics (``RequestMetrics``, unless ``METRICS_ENABLED`` is off) around the cache fast path
    (``CachedReads``) in front of the loop-native adapter (``GreenletASGI``, with ``HOOKS``)."""
    state = context.app_state(flask_app)
    runtime, res = state.runtime, state.resources
    runtime.add(_ViewRetries(state.views, res))

    async def startup() -> None:
        await runtime.start()
        # The code's migrations, read now rather than by the first readiness check (Alembic
        # loads every revision file): that round then takes as long as the others.
        await asyncio.to_thread(schema.code_schema)
        # Everything alive now (modules, the app, pools) lives as long as the process: keep it
        # out of the cyclic collector's scans, which otherwise grow with the heap.
        gc.collect()
        gc.freeze()

    async def shutdown() -> None:
        await runtime.close()
        mark_this_process_dead()  # its pool and breaker gauges leave the instance's sums

    adapter = GreenletASGI(
        flask_app.wsgi_app,
        max_body=res.settings.max_content_length,
        body_rate=BodyRate(res.settings.body_min_rate, res.settings.body_grace_seconds),
        on_startup=startup,
        on_shutdown=shutdown,
        default_headers=SECURITY_HEADERS,
        hooks=HOOKS,
    )
    # The fast path labels its hits with the templates Flask matches for the same requests.
    rules = {rule.endpoint: rule.rule for rule in flask_app.url_map.iter_rules()}
    routes = {
        "article": rules["articles.read"],
        "popular": rules["articles.popular"],
        "list": rules["articles.list_articles"],
    }
    app: ASGIApp = CachedReads(adapter, res, state.views, routes=routes)
    return RequestMetrics(app) if res.settings.metrics_enabled else app


# What the adapter leaves to the application: request ids as Newsdesk chooses them, kept for
# every log line of the request; the error envelope; bodies cut for their rate counted.
HOOKS = Hooks(
    request_id=bind_request_id, error_body=envelope_bytes, on_body_cut=REQUEST_BODIES_CUT.inc
)


class _ViewRetries:
    """The view counter's retries of buffered views, as a part of the runtime."""

    def __init__(self, views: ViewCounter, res: Resources) -> None:
        self.views, self.res = views, res

    async def start(self) -> None:
        self.views.start(self.res)

    async def close(self) -> None:
        await self.views.stop(self.res)


def build(settings: Settings | None = None, *, tracing: Tracing | None = None) -> ASGIApp:
    """Settings from the environment, logging (Hypercorn's access lines included, see
    ``service.web.access_log``), tracing when ``OTEL_*`` asks for it (its middleware
    outermost, ``service.infra.tracing``; ``tracing`` given instead, by tests), the Flask app
    and its ASGI wrapper."""
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.resolved_log_format)
    access_log.install()
    flask_app = create_app(settings)
    traced = context.app_state(flask_app).runtime.trace(tracing)
    return traced.middleware(asgi_app(flask_app))


class LazyApp:
    """An ASGI application built by ``build()`` when first called (or ``built()``)."""

    def __init__(self) -> None:
        self._app: ASGIApp | None = None

    def built(self) -> ASGIApp:
        if self._app is None:
            self._app = build()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.built()(scope, receive, send)


# Hypercorn's worker loads it before it creates its logger: the access line's class is set
# now (a class attribute of Hypercorn's, read from nothing).
access_log.install()
app = LazyApp()

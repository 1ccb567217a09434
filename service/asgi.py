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
from service.infra import metrics, tracing
from service.infra.exposition import mark_this_process_dead
from service.serving.adapter import GreenletASGI
from service.serving.body import BodyRate
from service.serving.fastpath import CachedReads
from service.serving.metrics import RequestMetrics
from service.web import access_log, context
from service.web.app import create_app


def asgi_app(flask_app: Flask) -> ASGIApp:
    """Wrap ``flask_app`` for an ASGI server, its resources tied to the lifespan: request
    metrics (``RequestMetrics``, unless ``METRICS_ENABLED`` is off) around the cache fast path
    (``CachedReads``) in front of the loop-native adapter (``GreenletASGI``)."""
    state = context.app_state(flask_app)
    res = state.resources
    enabled = res.settings.metrics_enabled
    sampler = metrics.Sampler(res, res.settings.metrics_sample_seconds)

    async def startup() -> None:
        await res.start()
        res.guard.lag.start()  # Redis timeouts discount this loop's own lag
        state.views.start(res)
        if enabled:
            metrics.instrument(res)
            sampler.start()
        # Everything alive now (modules, the app, pools) lives as long as the process: keep it
        # out of the cyclic collector's scans, which otherwise grow with the heap.
        gc.collect()
        gc.freeze()

    async def shutdown() -> None:
        await sampler.stop()
        await state.views.stop(res)
        await res.guard.lag.stop()
        await res.close()
        mark_this_process_dead()  # its pool and breaker gauges leave the instance's sums

    adapter = GreenletASGI(
        flask_app.wsgi_app,
        max_body=res.settings.max_content_length,
        body_rate=BodyRate(res.settings.body_min_rate, res.settings.body_grace_seconds),
        on_startup=startup,
        on_shutdown=shutdown,
        default_headers=SECURITY_HEADERS,
    )
    # The fast path labels its hits with the templates Flask matches for the same requests.
    rules = {rule.endpoint: rule.rule for rule in flask_app.url_map.iter_rules()}
    routes = {"article": rules["articles.read"], "popular": rules["articles.popular"]}
    app: ASGIApp = CachedReads(adapter, res, state.views, routes=routes)
    return RequestMetrics(app) if enabled else app


def build(settings: Settings | None = None) -> ASGIApp:
    """Settings from the environment, logging (Hypercorn's access lines included, see
    ``service.web.access_log``), tracing when ``OTEL_*`` asks for it (its middleware
    outermost, ``service.infra.tracing``), the Flask app and its ASGI wrapper."""
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.resolved_log_format)
    access_log.install()
    tracing.setup(tracing.API_SERVICE)
    return tracing.asgi_middleware(asgi_app(create_app(settings)))


app = build()

"""Newsdesk: a news API on async Flask, served loop-native by Hypercorn.

Eight layers; each imports only the layers below it, and no import circle anywhere
(import-linter contracts in ``pyproject.toml``, checked by ``make test``; picture in
docs/ARCHITECTURE.md). Nothing is configured at import (``tests/test_imports.py``):

- ``greenlet_asgi``, at the bottom, importing nothing else of ours: the WSGI-on-ASGI adapter
  (``adapter``, ``http``, ``lifespan``, ``body``, ``environ``, ``drain``), ``bridge``
  (awaiting from a greenlet on the loop), ``hooks`` (what the app passes in), ``types``;
- ``core``: ``settings`` (typed configuration), ``errors`` (domain exceptions and the JSON
  envelope), ``keys`` (every Redis key and stored format), ``types`` (the ASGI aliases, ``MAX_ID``,
  ``ArticleStatus``, security headers), ``request_id``, ``logs`` (text or JSON, redacted);
- ``infra``: ``runtime`` (everything one process holds, built from ``Settings``, started and
  closed by the API's lifespan and the worker's start-up), ``resources`` (engines and Redis
  clients of one process), ``guard`` (one timeout and breaker for per-request Redis calls),
  ``loop_lag`` (how late the event loop runs), ``periodic`` (a background task's start and
  stop), ``cache`` (the generation-versioned response cache), ``queue`` (enqueueing, queue
  figures), ``health``, ``mail``, ``metrics`` (every Prometheus metric of the API, importing
  nothing of ours), ``sampler`` (pool, process and GC figures), ``exposition`` (``/metrics``
  summed over the workers), ``tracing`` (OpenTelemetry, off unless ``OTEL_*`` asks);
- ``domain`` (no HTTP; raises ``core.errors``): ``models``, ``schemas``, ``users``, ``api_keys``,
  ``credentials``, ``passwords``, ``login_sessions``, ``callers``, ``articles``, ``processing``,
  ``text_analysis`` (YAKE, loaded by the worker only), ``view_counts``, ``rate_limits``,
  ``password_reset``;
- ``web``: ``app`` (``create_app``), ``context`` (what a request can get), ``endpoint``,
  ``auth``, ``rate_limits``, ``transactions``, ``http_cache``, ``errors``, ``security``,
  ``openapi``, ``converters``, ``jsonio``, ``access_log`` (Hypercorn's access lines),
  ``api/`` (one blueprint per resource);
- ``jobs``: ``tasks`` (every arq job), ``runner``, ``worker`` (a settings class per queue,
  built from ``Settings``),
  ``supervisor``, ``metrics`` (job metrics and the worker's own ``/metrics`` port);
- ``edge``: ``fastpath`` (cache hits before Flask), ``metrics`` (request counts and durations,
  around everything), ``servers`` (how to run Hypercorn, uvicorn and granian), ``serve``,
  ``master``, ``metrics_dir``;
- ``cli`` and ``asgi``: ``python -m service ...`` and the app Hypercorn serves.

Contracts: every error is ``{"error": {"code", "message", "details"?, "request_id"}}``;
credentials are ``API-Key: <key>`` or ``Authorization: Bearer <key or session token>``;
lists page by ``page``/``per_page`` or by ``cursor``. Settings: see ``service.core.settings``
and the README's configuration table.
"""


def __getattr__(name: str) -> object:
    """``create_app``, loaded on first use: ``flask --app service routes`` finds the factory
    (and ``flask --app service run`` is told how Newsdesk is served, ``service.web.flask_cli``)."""
    if name == "create_app":
        from service.web.app import create_app

        return create_app
    raise AttributeError(f"module 'service' has no attribute {name!r}")

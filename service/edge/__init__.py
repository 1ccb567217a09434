"""Newsdesk's edge: what stands between the ASGI server and the Flask app, and what runs the
server.

* ``fastpath``: cache hits answered before Flask (``CachedReads``);
* ``metrics``: request counts and durations at the ASGI level (``RequestMetrics``);
* ``servers``: the one table of how to run Hypercorn, uvicorn and granian;
* ``serve``: ``python -m service serve``; ``master``: Hypercorn's workers under a master that
  lets each finish; ``metrics_dir``: the instance's ``PROMETHEUS_MULTIPROC_DIR``.

The WSGI-on-ASGI adapter these wrap is ``service.greenlet_asgi``, which knows nothing of
Newsdesk. (The tracing middleware stays with the tracing state, ``service.infra.tracing``.)
"""

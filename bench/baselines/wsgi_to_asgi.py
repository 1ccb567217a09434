"""Baseline: the same Flask app wrapped in asgiref's ``WsgiToAsgi`` on Hypercorn.

``WsgiToAsgi`` runs the WSGI app through ``sync_to_async(thread_sensitive=True)``: one thread
per process, so requests are served one at a time; inside it, Flask's ``async_to_sync`` sends
each async view back to the server's loop, so one pooled engine and Redis client serve every
request. ``hypercorn bench.baselines.wsgi_to_asgi:app``.
"""

from __future__ import annotations

import os

from asgiref.wsgi import WsgiToAsgi

from bench.baselines.flask_async import build

app = WsgiToAsgi(build(shared_pool=True, redis_url=os.environ["REDIS_URL"]))  # type: ignore[no-untyped-call]

"""Baseline: Flask's default async path, served by Hypercorn as a plain WSGI app.

Hypercorn runs a WSGI app in a thread pool; Flask's ``async_to_sync`` (asgiref) then runs each
async view in a new event loop. A pooled engine would hand a connection made on one loop to
another ("attached to a different loop"), so this mode needs ``NullPool`` and a Redis client
per request: a new PostgreSQL and Redis connection per request.
``hypercorn bench.baselines.flask_wsgi:app``.
"""

from __future__ import annotations

import os

from bench.baselines.flask_async import build

app = build(shared_pool=False, redis_url=os.environ["REDIS_URL"])

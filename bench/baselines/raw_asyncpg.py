"""The driver's ceiling: a bare ASGI app on an asyncpg pool, no framework and no SQLAlchemy.

``GET /bench/items/<id>`` is one ``fetchrow`` on a pooled connection (asyncpg prepares the
statement once per connection), the same primary-key read the other apps make; any other path
answers the hello. The pool has the probes' size. ``hypercorn bench.baselines.raw_asyncpg:app``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bench.baselines.bare_asgi import BODY, HEADERS, Message, Scope
from bench.probes import ITEM_SQL, database_url, pool_size

ITEMS = "/bench/items/"
NOT_FOUND = b'{"detail":"Not Found"}'
state: dict[str, Any] = {}


async def _item(path: str) -> tuple[int, bytes]:
    try:
        item_id = int(path[len(ITEMS) :])
    except ValueError:
        return 404, NOT_FOUND
    pool: asyncpg.Pool = state["pool"]
    row = await pool.fetchrow(ITEM_SQL, item_id)
    if row is None:
        return 404, NOT_FOUND
    return 200, json.dumps({"id": row["id"], "name": row["name"]}).encode()


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                url = database_url().replace("postgresql+asyncpg://", "postgresql://", 1)
                size = pool_size()
                state["pool"] = await asyncpg.create_pool(url, min_size=size, max_size=size)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await state["pool"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    status, body, headers = 200, BODY, HEADERS
    if scope["path"].startswith(ITEMS):
        status, body = await _item(scope["path"])
        length = str(len(body)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", length)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

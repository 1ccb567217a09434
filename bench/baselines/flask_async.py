"""The Flask app (async views) behind two baselines: ``flask_wsgi`` (Flask's default path,
Hypercorn serving WSGI) and ``wsgi_to_asgi`` (asgiref's ``WsgiToAsgi``).

``build(shared_pool=...)``: with ``shared_pool=False`` every request gets a ``NullPool``
engine and a Redis client of its own, closed after it (each async view runs in an event loop
of its own, and pooled connections cannot cross loops); with ``True`` the app keeps one pooled
engine and one Redis client, made on first use on the loop every view runs on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from flask import Flask, Response, abort, jsonify
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bench.probes import AsyncProbes, database_url, pool_size

T = TypeVar("T")


def build(*, shared_pool: bool, redis_url: str) -> Flask:
    app = Flask(__name__)
    shared: dict[str, Any] = {}

    @asynccontextmanager
    async def probes() -> AsyncIterator[tuple[AsyncProbes, Callable[[], Redis]]]:
        if shared_pool:
            if "engine" not in shared:
                shared["engine"] = create_async_engine(
                    database_url(), pool_size=pool_size(), max_overflow=5
                )
                shared["redis"] = Redis.from_url(redis_url)
            yield AsyncProbes(shared["engine"]), lambda: shared["redis"]
            return
        engine: AsyncEngine = create_async_engine(database_url(), poolclass=NullPool)
        clients: list[Redis] = []

        def redis() -> Redis:
            clients.append(Redis.from_url(redis_url))
            return clients[-1]

        try:
            yield AsyncProbes(engine), redis
        finally:
            for client in clients:
                await client.aclose()
            await engine.dispose()

    async def with_probes(fn: Callable[[AsyncProbes, Callable[[], Redis]], Awaitable[T]]) -> T:
        async with probes() as (p, redis):
            return await fn(p, redis)

    @app.get("/bench/hello")
    async def hello() -> Response:
        return jsonify(message="hello")

    @app.get("/bench/items/<int:item_id>")
    async def item(item_id: int) -> Response:
        found = await with_probes(lambda p, _r: p.item(item_id))
        if found is None:
            abort(404)
        return jsonify(found)

    @app.get("/bench/slow")
    async def slow() -> Response:
        return jsonify(await with_probes(lambda p, _r: p.slow()))

    @app.get("/bench/fanout/seq")
    async def fanout_seq() -> Response:
        return jsonify(await with_probes(lambda p, _r: p.fanout_seq()))

    @app.get("/bench/fanout/gather")
    async def fanout_gather() -> Response:
        return jsonify(await with_probes(lambda p, _r: p.fanout_gather()))

    @app.get("/bench/cached/<int:item_id>")
    async def cached(item_id: int) -> Response:
        body = await with_probes(lambda p, redis: p.cached(redis(), item_id))
        if body is None:
            abort(404)
        return Response(body, mimetype="application/json")

    return app

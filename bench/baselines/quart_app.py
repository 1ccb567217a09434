"""Baseline: Quart (async-native Flask) doing the same work on the same Hypercorn.

The engine and the Redis client are created on the serving loop (``before_serving``) with
the same pool size as Newsdesk. ``hypercorn bench.baselines.quart_app:app``.
"""

from __future__ import annotations

import os
from typing import Any

from quart import Quart, Response, abort, jsonify
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from bench.probes import AsyncProbes, database_url, pool_size

app = Quart(__name__)
state: dict[str, Any] = {}


@app.before_serving
async def start() -> None:
    engine = create_async_engine(database_url(), pool_size=pool_size(), max_overflow=5)
    state["probes"] = AsyncProbes(engine)
    state["redis"] = Redis.from_url(os.environ["REDIS_URL"])


@app.after_serving
async def stop() -> None:
    await state["probes"].engine.dispose()
    await state["redis"].aclose()


def probes() -> AsyncProbes:
    found: AsyncProbes = state["probes"]
    return found


@app.get("/bench/hello")
async def hello() -> Any:
    return jsonify(message="hello")


@app.get("/bench/items/<int:item_id>")
async def item(item_id: int) -> Any:
    found = await probes().item(item_id)
    if found is None:
        abort(404)
    return jsonify(found)


@app.get("/bench/slow")
async def slow() -> Any:
    return jsonify(await probes().slow())


@app.get("/bench/fanout/seq")
async def fanout_seq() -> Any:
    return jsonify(await probes().fanout_seq())


@app.get("/bench/fanout/gather")
async def fanout_gather() -> Any:
    return jsonify(await probes().fanout_gather())


@app.get("/bench/cached/<int:item_id>")
async def cached(item_id: int) -> Any:
    body = await probes().cached(state["redis"], item_id)
    if body is None:
        abort(404)
    return Response(body, mimetype="application/json")

"""Baseline: the floor of Flask on Newsdesk's serving model, nothing of the product around it.

A plain ``LoopNativeFlask`` (async views awaited on the server's loop) served by the same
greenlet adapter (``GreenletASGI``) as Newsdesk, with the same ``AsyncProbes`` and pool as the
FastAPI and Quart baselines, but none of the product's hooks, middleware or extensions: no
request id, security headers, metrics, access log, CORS, request session or error envelope.
What Flask + werkzeug + the adapter cost per request on their own; the gap between this and
Newsdesk is the product's per-request work, the gap between this and FastAPI is the
framework's. ``hypercorn bench.baselines.flask_floor:app``.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Response, abort, jsonify
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from bench.probes import AsyncProbes, database_url, pool_size
from service.greenlet_asgi.adapter import GreenletASGI
from service.web.app import LoopNativeFlask

flask_app = LoopNativeFlask(__name__)
state: dict[str, Any] = {}


async def start() -> None:
    engine = create_async_engine(database_url(), pool_size=pool_size(), max_overflow=5)
    state["probes"] = AsyncProbes(engine)
    state["redis"] = Redis.from_url(os.environ["REDIS_URL"])


async def stop() -> None:
    await state["probes"].engine.dispose()
    await state["redis"].aclose()


def probes() -> AsyncProbes:
    found: AsyncProbes = state["probes"]
    return found


@flask_app.get("/bench/hello")
async def hello() -> Any:
    return jsonify(message="hello")


@flask_app.get("/bench/items/<int:item_id>")
async def item(item_id: int) -> Any:
    found = await probes().item(item_id)
    if found is None:
        abort(404)
    return jsonify(found)


@flask_app.get("/bench/cached/<int:item_id>")
async def cached(item_id: int) -> Any:
    body = await probes().cached(state["redis"], item_id)
    if body is None:
        abort(404)
    return Response(body, mimetype="application/json")


app = GreenletASGI(flask_app, max_body=1 << 20, on_startup=start, on_shutdown=stop)

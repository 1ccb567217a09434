"""Baseline for the cache hit path: a bare Quart handler doing one Redis GET and returning the
bytes. ``REDIS_URL`` and ``BENCH_KEY`` from the environment. ``hypercorn
bench.baselines.quart_redis:app``."""

from __future__ import annotations

import os
from typing import Any

from quart import Quart, Response
from redis.asyncio import Redis

app = Quart(__name__)
state: dict[str, Redis] = {}


@app.before_serving
async def start() -> None:
    state["redis"] = Redis.from_url(os.environ["REDIS_URL"])


@app.after_serving
async def stop() -> None:
    await state["redis"].aclose()


@app.get("/bench/hello")
async def hello() -> Any:
    return {"message": "hello"}


@app.get("/bench/cached")
async def cached() -> Response:
    body = await state["redis"].get(os.environ["BENCH_KEY"])
    return Response(body, mimetype="application/json")

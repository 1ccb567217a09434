"""Baseline: FastAPI doing the same work (``AsyncProbes``, same pool size, same Redis client).

The engine and the Redis client are created on the serving loop (the lifespan) with the same
pool size as Newsdesk. ``hypercorn bench.baselines.fastapi_app:app`` or
``uvicorn --loop uvloop --http httptools bench.baselines.fastapi_app:app``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from bench.probes import AsyncProbes, database_url, pool_size

state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    engine = create_async_engine(database_url(), pool_size=pool_size(), max_overflow=5)
    state["probes"] = AsyncProbes(engine)
    state["redis"] = Redis.from_url(os.environ["REDIS_URL"])
    try:
        yield
    finally:
        await engine.dispose()
        await state["redis"].aclose()


app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)


def probes() -> AsyncProbes:
    found: AsyncProbes = state["probes"]
    return found


@app.get("/bench/hello")
async def hello() -> dict[str, str]:
    return {"message": "hello"}


@app.get("/bench/items/{item_id}")
async def item(item_id: int) -> dict[str, Any]:
    found = await probes().item(item_id)
    if found is None:
        raise HTTPException(404)
    return found


@app.get("/bench/slow")
async def slow() -> dict[str, Any]:
    return await probes().slow()


@app.get("/bench/fanout/seq")
async def fanout_seq() -> dict[str, Any]:
    return await probes().fanout_seq()


@app.get("/bench/fanout/gather")
async def fanout_gather() -> dict[str, Any]:
    return await probes().fanout_gather()


@app.get("/bench/cached/{item_id}")
async def cached(item_id: int) -> Response:
    body = await probes().cached(state["redis"], item_id)
    if body is None:
        raise HTTPException(404)
    return Response(body, media_type="application/json")

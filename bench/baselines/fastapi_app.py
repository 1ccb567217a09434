"""Baseline: FastAPI doing the same work (``AsyncProbes``, same pool size, same Redis client).

The engine and the Redis client are created on the serving loop (the lifespan) with the same
pool size as Newsdesk. ``hypercorn bench.baselines.fastapi_app:app`` or
``uvicorn --loop uvloop --http httptools bench.baselines.fastapi_app:app``.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, HTTPException, Response

from bench.probes import AsyncProbes, probe_clients

state: dict[str, Any] = {}


def lifespan(_: FastAPI) -> AbstractAsyncContextManager[None]:
    return probe_clients(state)


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

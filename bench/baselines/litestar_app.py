"""Baseline: Litestar doing the same work (``AsyncProbes``, same pool size, same Redis client).

Litestar is the lightest of the typed ASGI frameworks users pick beside FastAPI. The engine and
the Redis client are created on the serving loop (the lifespan) with the same pool size as
Newsdesk. ``hypercorn bench.baselines.litestar_app:app``, ``uvicorn ...`` or ``granian ...``.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from litestar import Litestar, Response, get
from litestar.exceptions import NotFoundException

from bench.probes import AsyncProbes, probe_clients

state: dict[str, Any] = {}


def lifespan(_: Litestar) -> AbstractAsyncContextManager[None]:
    return probe_clients(state)


def probes() -> AsyncProbes:
    found: AsyncProbes = state["probes"]
    return found


@get("/bench/hello")
async def hello() -> dict[str, str]:
    return {"message": "hello"}


@get("/bench/items/{item_id:int}")
async def item(item_id: int) -> dict[str, Any]:
    found = await probes().item(item_id)
    if found is None:
        raise NotFoundException()
    return found


@get("/bench/slow")
async def slow() -> dict[str, Any]:
    return await probes().slow()


@get("/bench/fanout/seq")
async def fanout_seq() -> dict[str, Any]:
    return await probes().fanout_seq()


@get("/bench/fanout/gather")
async def fanout_gather() -> dict[str, Any]:
    return await probes().fanout_gather()


@get("/bench/cached/{item_id:int}")
async def cached(item_id: int) -> Response[bytes]:
    body = await probes().cached(state["redis"], item_id)
    if body is None:
        raise NotFoundException()
    return Response(body, media_type="application/json")


app = Litestar(
    route_handlers=[hello, item, slow, fanout_seq, fanout_gather, cached],
    lifespan=[lifespan],
    openapi_config=None,
)

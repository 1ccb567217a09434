"""What every benchmarked app serves: the same probes, the same queries, the same table.

- ``GET /bench/hello``: a small JSON body, no I/O.
- ``GET /bench/items/<id>``: one primary-key lookup.
- ``GET /bench/slow``: one query that waits 50 ms in PostgreSQL (``pg_sleep``): I/O wait.
- ``GET /bench/fanout/seq`` and ``/bench/fanout/gather``: three independent queries of 20 ms
  each (``FANOUT``), one after another, or at once on three connections (``asyncio.gather``;
  the sync app uses a thread pool, its only way to overlap them).
- ``GET /bench/cached/<id>``: the item from Redis (``item:<id>``, filled by the lab before the
  run), read from PostgreSQL and stored on a miss.

The async apps share ``AsyncProbes``; the sync app has its own twin in
``bench.baselines.gunicorn_sync``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from redis.asyncio import Redis
from sqlalchemy import Column, Integer, MetaData, Table, Text, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

metadata = MetaData()
items = Table(
    "bench_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("body", Text, nullable=False),
)
ROWS = 10_000
FANOUT_IDS = (11, 22, 33)
CACHE_TTL = 3600

item_by_id = select(items.c.id, items.c.name).where(items.c.id == bindparam("id"))
ITEM_SQL = "SELECT id, name FROM bench_items WHERE id = $1"  # the same, for a driver
SLOW = text("SELECT pg_sleep(0.05)")
FANOUT = text("SELECT id, name, pg_sleep(0.02) AS waited FROM bench_items WHERE id = :id")


def database_url() -> str:
    return os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://", 1)


def pool_size() -> int:
    return int(os.environ.get("DB_POOL_SIZE", "10"))


def cache_key(item_id: int) -> str:
    return f"item:{item_id}"


def item_json(item_id: int, name: str) -> bytes:
    return orjson.dumps({"id": item_id, "name": name})


@asynccontextmanager
async def probe_clients(state: dict[str, Any]) -> AsyncIterator[None]:
    """A baseline app's lifespan: an engine with the probes' pool size and a Redis client,
    made on the serving loop, in ``state`` (``probes``, ``redis``) until the app stops."""
    engine = create_async_engine(database_url(), pool_size=pool_size(), max_overflow=5)
    state["probes"] = AsyncProbes(engine)
    state["redis"] = Redis.from_url(os.environ["REDIS_URL"])
    try:
        yield
    finally:
        await engine.dispose()
        await state["redis"].aclose()


class AsyncProbes:
    """The I/O of every probe, for apps that await: an engine and a Redis client per call
    site, so each app decides how they are pooled."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def item(self, item_id: int) -> dict[str, Any] | None:
        async with AsyncSession(self.engine) as session:  # the work of a request session
            row = (await session.execute(item_by_id, {"id": item_id})).first()
        return None if row is None else {"id": row.id, "name": row.name}

    async def slow(self) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            await conn.execute(SLOW)
        return {"slept_ms": 50}

    async def _fanout_one(self, item_id: int) -> str:
        async with self.engine.connect() as conn:
            return str((await conn.execute(FANOUT, {"id": item_id})).one().name)

    async def fanout_seq(self) -> dict[str, Any]:
        return {"names": [await self._fanout_one(i) for i in FANOUT_IDS]}

    async def fanout_gather(self) -> dict[str, Any]:
        names = await asyncio.gather(*(self._fanout_one(i) for i in FANOUT_IDS))
        return {"names": list(names)}

    async def cached(self, redis: Redis, item_id: int) -> bytes | None:
        body: bytes | None = await redis.get(cache_key(item_id))
        if body is not None:
            return body
        found = await self.item(item_id)
        if found is None:
            return None
        body = item_json(found["id"], found["name"])
        await redis.set(cache_key(item_id), body, ex=CACHE_TTL)
        return body

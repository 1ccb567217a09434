"""Baseline: Quart (async-native Flask) doing the same work on the same Hypercorn.

The engine is created on the serving loop (``before_serving``) with the same pool size as
Newsdesk, and each request reads through an ``AsyncSession`` as Newsdesk's views do.
``hypercorn bench.baselines.quart_app:app``.
"""

from __future__ import annotations

from typing import Any

from quart import Quart, abort, jsonify
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from bench.probes import database_url, item_by_id, pool_size

app = Quart(__name__)
state: dict[str, async_sessionmaker[AsyncSession]] = {}


@app.before_serving
async def start() -> None:
    engine = create_async_engine(
        database_url(), pool_size=pool_size(), max_overflow=5, pool_pre_ping=True
    )
    state["sessions"] = async_sessionmaker(engine, expire_on_commit=False)


@app.after_serving
async def stop() -> None:
    await state["sessions"].kw["bind"].dispose()


@app.get("/bench/hello")
async def hello() -> Any:
    return jsonify(message="hello")


@app.get("/bench/items/<int:item_id>")
async def item(item_id: int) -> Any:
    async with state["sessions"]() as session:  # the same work as Newsdesk's request session
        row = (await session.execute(item_by_id, {"id": item_id})).first()
    if row is None:
        abort(404)
    return jsonify(id=row.id, name=row.name)

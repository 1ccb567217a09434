"""Baseline: Quart (async-native Flask) doing the same work on the same Hypercorn.

The engine is created on the serving loop (``before_serving``) with the same pool size as
Newsdesk. ``hypercorn bench.baselines.quart_app:app``.
"""

from __future__ import annotations

from typing import Any

from quart import Quart, abort, jsonify
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.probes import database_url, item_by_id, pool_size

app = Quart(__name__)
state: dict[str, AsyncEngine] = {}


@app.before_serving
async def start() -> None:
    state["engine"] = create_async_engine(
        database_url(), pool_size=pool_size(), max_overflow=5, pool_pre_ping=True
    )


@app.after_serving
async def stop() -> None:
    await state["engine"].dispose()


@app.get("/bench/hello")
async def hello() -> Any:
    return jsonify(message="hello")


@app.get("/bench/items/<int:item_id>")
async def item(item_id: int) -> Any:
    async with state["engine"].connect() as conn:
        row = (await conn.execute(item_by_id, {"id": item_id})).first()
    if row is None:
        abort(404)
    return jsonify(id=row.id, name=row.name)

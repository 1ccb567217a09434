"""arq job functions. Jobs may be called more than once (arq delivers at least once), so
every job must be idempotent.

``ctx`` is arq's per-worker context: ``ctx["resources"]`` holds the engines and the Redis
client that ``worker.startup`` created on the worker's own loop.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from service.resources import Resources


async def ping(ctx: dict[str, Any]) -> str:
    """Round-trip through PostgreSQL: proves a worker is up and can reach the database."""
    res: Resources = ctx["resources"]
    assert res.engine is not None
    async with res.engine.connect() as conn:
        value = (await conn.execute(text("SELECT 'pong'"))).scalar_one()
    return str(value)

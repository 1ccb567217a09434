"""Dependency checks for readiness: each one bounded by a timeout, all run concurrently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.infra.resources import Resources

log = logging.getLogger(__name__)


async def _select_one(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _bounded(check: Awaitable[object], limit: float, name: str) -> str:
    try:
        await asyncio.wait_for(check, limit)
    except TimeoutError:
        log.warning("readiness: %s timed out after %.1fs", name, limit)
        return "timeout"
    except Exception as exc:
        log.warning("readiness: %s failed: %s", name, exc)
        return "down"
    return "ok"


async def check_dependencies(res: Resources) -> dict[str, str]:
    """``{"database": "ok", "database_read": "ok", "redis": "down"}``-style states."""
    assert res.engine is not None and res.read_engine is not None and res.redis is not None
    timeout = res.settings.readiness_timeout
    names = ["database", "database_read", "redis"]
    states = await asyncio.gather(
        _bounded(_select_one(res.engine), timeout, "database"),
        _bounded(_select_one(res.read_engine), timeout, "database_read"),
        _bounded(res.redis.ping(), timeout, "redis"),
    )
    return dict(zip(names, states, strict=True))

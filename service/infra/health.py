"""Dependency checks for readiness: each one bounded by a timeout, all run concurrently, and
a result reused for a short while (``RecentResult``), so that probes cannot make every
``/readyz`` cost a round trip to each dependency. The states are reported (``/readyz``'s body,
``dependency_up``), never a reason for an instance to be unready (``service.web.api.health``).
The schema comparison (``service.infra.schema``) runs in the same round: a database behind the
code's migrations is the one database state that makes an instance unready."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import text

from service.infra.reads import Reads
from service.infra.resources import Resources
from service.infra.schema import SchemaCheck, check_schema

log = logging.getLogger(__name__)


_SELECT_ONE = text("SELECT 1")


async def _select_one(reads: Reads) -> None:
    await reads.execute(_SELECT_ONE)


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
    """``{"database": "ok", "database_read": "ok", "redis": "down"}``-style states, and
    ``cache_redis`` when the cache has a Redis of its own (CACHE_REDIS_URL)."""
    clients = res.clients
    timeout = res.settings.readiness_timeout
    checks = {
        "database": _select_one(clients.reads),
        "database_read": _select_one(clients.replica_reads),
        "redis": clients.redis.ping(),
    }
    if clients.cache.redis is not clients.hot_redis:
        checks["cache_redis"] = clients.cache.redis.ping()
    states = await asyncio.gather(
        *(_bounded(check, timeout, name) for name, check in checks.items())
    )
    return dict(zip(checks, states, strict=True))


async def schema_state(res: Resources) -> SchemaCheck:
    """The database's schema against the code's (``service.infra.schema``), bounded like the
    other checks; ``unknown`` when the database did not answer (its own check says so)."""
    try:
        return await asyncio.wait_for(
            check_schema(res.clients.reads), res.settings.readiness_timeout
        )
    except Exception as exc:
        log.warning("readiness: the schema check failed: %s", type(exc).__name__)
        return SchemaCheck("unknown")


@dataclass(frozen=True)
class ReadinessRound:
    """One round of readiness checks, reused by ``/readyz`` for READINESS_CACHE_SECONDS: the
    dependency states, the backlog figures, the schema comparison."""

    checks: dict[str, str]
    backlog: dict[str, Any]
    schema: SchemaCheck


T = TypeVar("T")


class RecentResult(Generic[T]):
    """The result of an async check, reused while it is younger than ``max_age`` seconds
    (counted from when the check started, so a result is never older than it says).

    Callers arriving while a check runs await that same run: a burst of calls runs one check,
    never one each. The run is shielded, so a caller that gives up (a client that
    disconnects) does not cancel it for the others. A check that raises is not kept. One per
    process and event loop (``service.web.context.AppState``)."""

    def __init__(self) -> None:
        self._kept: tuple[float, T] | None = None
        self._running: asyncio.Task[T] | None = None

    async def get(self, check: Callable[[], Awaitable[T]], max_age: float) -> T:
        """The kept result if it is young enough, else the result of the check in flight,
        else of a new one."""
        kept = self._kept
        if kept is not None and time.monotonic() - kept[0] < max_age:
            return kept[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._run(check))
        return await asyncio.shield(self._running)

    async def _run(self, check: Callable[[], Awaitable[T]]) -> T:
        started = time.monotonic()
        try:
            result = await check()
        finally:
            self._running = None
        self._kept = (started, result)
        return result

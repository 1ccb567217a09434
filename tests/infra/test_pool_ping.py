"""service.infra.resources.ping_idle_connections: the pool pings a connection that sat idle
before handing it out and replaces it when the server has dropped it; a connection reused
within the window is handed out without a ping (the round trips a hot pool no longer pays)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.ext.asyncio import AsyncEngine

from service.core.settings import Settings
from service.infra import resources
from service.infra.resources import make_engine
from tests.support.databases import ServerStack


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_an_idle_connection_the_server_dropped_is_replaced(
    stack: ServerStack, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "PING_AFTER_IDLE_SECONDS", 0.0)  # every reuse counts as idle
    settings = Settings(_env_file=None, database_url=stack.database_url, db_pool_size=1)
    engine = make_engine(settings.database_url, settings, application_name="ping-test")
    try:
        first = await _backend_pid(engine)
        assert await pg.fetchval("SELECT pg_terminate_backend($1)", first)
        # The pooled connection is dead; the ping at checkout finds it and the pool reconnects,
        # so the request that follows does not fail.
        second = await _backend_pid(engine)
        assert second != first
    finally:
        await engine.dispose()


async def test_a_connection_reused_within_the_window_is_not_pinged(
    stack: ServerStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "PING_AFTER_IDLE_SECONDS", 3600.0)
    settings = Settings(_env_file=None, database_url=stack.database_url, db_pool_size=1)
    engine = make_engine(settings.database_url, settings, application_name="ping-test")
    pings = 0
    original = AsyncAdapt_asyncpg_connection.ping

    def counting_ping(self: AsyncAdapt_asyncpg_connection) -> None:
        nonlocal pings
        pings += 1
        original(self)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counting_ping)
    try:
        first = await _backend_pid(engine)
        assert await _backend_pid(engine) == first  # the same pooled connection, reused
        assert pings == 0
        monkeypatch.setattr(resources, "PING_AFTER_IDLE_SECONDS", 0.0)
        assert await _backend_pid(engine) == first
        assert pings == 1  # idle past the window: pinged once, and still alive
    finally:
        await engine.dispose()

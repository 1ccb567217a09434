"""service.infra.db_cleanup: a rollback or close on a connection PostgreSQL has dropped is
discarded, the connection leaves the pool, and the caller's own outcome stands (the worker's
jobs, the view flush and stale-if-error go through these)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service.core.settings import normalise_database_url
from service.infra import db_cleanup
from tests.support.databases import ServerStack


@pytest.fixture
async def engine(stack: ServerStack) -> AsyncIterator[AsyncEngine]:
    created = create_async_engine(normalise_database_url(stack.database_url), pool_size=2)
    yield created
    await created.dispose()


async def _kill(engine: AsyncEngine, session: AsyncSession, *, wait: bool) -> None:
    """Terminate ``session``'s backend; with ``wait``, until asyncpg has seen it close."""
    pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    raw = (await (await session.connection()).get_raw_connection()).driver_connection
    async with engine.connect() as other:
        await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    for _ in range(500):
        if not wait or raw.is_closed():  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("wait", [True, False], ids=["closed", "in-flight"])
async def test_a_rollback_on_a_dead_connection_is_discarded(
    engine: AsyncEngine, wait: bool
) -> None:
    session = async_sessionmaker(engine)()
    await _kill(engine, session, wait=wait)
    with pytest.raises(Exception):  # noqa: B017 - what the bare call does, for contrast
        await session.rollback()
    await session.close()

    session = async_sessionmaker(engine)()
    await _kill(engine, session, wait=wait)
    await db_cleanup.roll_back(session)  # does not raise
    await db_cleanup.close(session)
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with engine.connect() as conn:  # the pool hands out a live connection again
        assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1


async def test_a_session_scope_keeps_the_body_error_not_the_close_error(
    engine: AsyncEngine,
) -> None:
    maker = async_sessionmaker(engine)
    with pytest.raises(KeyError, match="the job's own error"):
        async with db_cleanup.session_scope(maker) as session:
            await _kill(engine, session, wait=True)
            raise KeyError("the job's own error")
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_session_scope_returns_what_its_body_finished(engine: AsyncEngine) -> None:
    maker = async_sessionmaker(engine)
    async with db_cleanup.session_scope(maker) as session:
        await _kill(engine, session, wait=True)
        finished = "done"
    assert finished == "done"
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_connection_scope_discards_a_failed_close(engine: AsyncEngine) -> None:
    async with db_cleanup.connection_scope(engine) as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.sleep(0.2)
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]

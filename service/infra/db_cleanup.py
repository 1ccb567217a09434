"""Rolling back and closing on a connection that may already be dead.

A rollback or a close is clean-up: whatever the request or the job answered was decided
before it. When PostgreSQL goes away (a failover, a restart, ``pg_terminate_backend``), the
connection under a session can die between the last query and that clean-up, and asyncpg then
refuses the rollback (``cannot call Transaction.rollback(): the underlying connection is
closed``). That error must not replace the answer: a request that was going to answer 503 or
200 would answer 500, and a job's own error would be hidden by the clean-up's.

``roll_back(session)`` and ``close(session)`` therefore discard such a failure: SQLAlchemy has
already invalidated the connection (the pool opens a new one on the next checkout), the loss is
logged once per outage by ``db_errors.OUTAGE``, and the caller carries on. ``session_scope`` is
``async with sessionmaker() as session`` with that close; ``connection_scope`` the same for
``engine.connect()``. A clean-up that fails for any other reason is logged as an error with its
traceback and discarded too: the connection is invalidated, never reused in an unknown state.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from service.infra import db_errors

log = logging.getLogger(__name__)


def _discarded(exc: Exception, step: str) -> None:
    if db_errors.unreachable(exc):
        db_errors.OUTAGE.lost(exc, step)
    else:
        log.error("%s failed; its connection is discarded", step, exc_info=exc)


async def roll_back(session: AsyncSession) -> None:
    """Roll ``session`` back; a dead connection is discarded instead of raising."""
    await _quietly(session, session.rollback, "rollback")


async def close(session: AsyncSession) -> None:
    """Close ``session`` (its connection back to the pool, or discarded when dead)."""
    await _quietly(session, session.close, "closing a session")


async def _quietly(session: AsyncSession, step: Callable[[], Awaitable[None]], name: str) -> None:
    try:
        await step()
    except Exception as exc:
        _discarded(exc, name)
        await _invalidate(session)


async def _invalidate(session: AsyncSession) -> None:
    try:
        await session.invalidate()
    except Exception as exc:  # nothing left to do: the pool has already dropped it
        log.debug("invalidating a session failed: %r", exc)


@asynccontextmanager
async def session_scope(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session from ``maker``, closed by ``close`` at the end: the body's own outcome (its
    return value or its exception) is never replaced by a failed clean-up."""
    session = maker()
    try:
        yield session
    finally:
        await close(session)


@asynccontextmanager
async def connection_scope(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """``engine.connect()`` whose close on a dead connection is discarded like ``close``."""
    conn = await engine.connect()
    try:
        yield conn
    finally:
        try:
            await conn.close()
        except Exception as exc:
            _discarded(exc, "closing a connection")
            try:
                await conn.invalidate()
            except Exception as error:
                log.debug("invalidating a connection failed: %r", error)

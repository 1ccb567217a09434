"""service.infra.reads: a read is one statement without a transaction, on the engine's own pool,
errors mapped as any other; and the pool keeps its connections under load.

What the driver sends is seen through asyncpg's query logger on every pooled connection: it
logs the simple-protocol statements (BEGIN, ROLLBACK, SELECT 1 pings), not the prepared
SELECTs themselves, so a read that logs nothing sent its statement alone.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.settings import Settings, normalise_database_url
from service.domain import articles
from service.domain.models import Article
from service.infra import db_errors
from service.infra.reads import Reads
from tests.support.databases import ServerStack
from tests.support.watched_pool import Watched, watched_engine

CONCURRENCY = 4  # readers per pooled connection: far more requests than connections


async def test_a_read_sends_no_begin_and_no_rollback(watched: Watched) -> None:
    reads = Reads(watched.engine)
    statement = select(Article.id).order_by(Article.id).limit(1)
    await reads.execute(statement)  # the connection opened, the statement prepared
    watched.sent.clear()
    for _ in range(5):
        await reads.execute(statement)
    assert watched.sent == []
    # The same read in a session, for contrast: a transaction around it.
    async with AsyncSession(watched.engine) as session:
        await session.execute(statement)
    assert watched.sent == ["BEGIN ISOLATION LEVEL READ COMMITTED;", "ROLLBACK;"]


async def test_rows_are_read_after_the_connection_is_back_in_the_pool(watched: Watched) -> None:
    result = await Reads(watched.engine).execute(text("SELECT n FROM generate_series(1, 3) n"))
    assert watched.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert result.scalars().all() == [1, 2, 3]


async def test_the_list_functions_take_reads_or_a_session(watched: Watched) -> None:
    reads = Reads(watched.engine)
    async with AsyncSession(watched.engine) as session:
        first = await articles.list_after(
            session, filters=articles.Filters(), cursor=None, per_page=5
        )
        assert (
            await articles.list_after(reads, filters=articles.Filters(), cursor=None, per_page=5)
            == first
        )
        assert await articles.count_articles(reads, articles.Filters()) == (
            await articles.count_articles(session, articles.Filters())
        )


async def test_an_unreachable_database_is_an_error_db_errors_calls_unreachable() -> None:
    from service.cli.embedded import free_port

    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    gone = watched_engine(url, db_pool_size=1, db_connect_timeout=2)
    try:
        with pytest.raises(Exception) as raised:
            await Reads(gone.engine).execute(text("SELECT 1"))
        assert db_errors.unreachable(raised.value), repr(raised.value)
    finally:
        await gone.engine.dispose()


async def test_the_pool_keeps_its_connections_under_load(stack: ServerStack) -> None:
    """Far more concurrent reads than connections, for two seconds, on the default pool
    settings: the pool opens its connections once and keeps them (no overflow connection
    closed on return and opened again), and every read waits for one of them."""
    defaults = Settings(_env_file=None)
    made = watched_engine(normalise_database_url(stack.database_url), db_pool_timeout=30)
    reads = Reads(made.engine)
    statement = text("SELECT 1")
    busiest = 0
    done = 0
    until = time.monotonic() + 2.0

    async def reader() -> None:
        nonlocal busiest, done
        while time.monotonic() < until:
            await reads.execute(statement)
            done += 1
            busiest = max(busiest, made.engine.pool.checkedout())  # type: ignore[attr-defined]

    try:
        await asyncio.gather(*(reader() for _ in range(CONCURRENCY * defaults.db_pool_size)))
    finally:
        await made.engine.dispose()
    print(
        f"\n{done} reads by {CONCURRENCY * defaults.db_pool_size} readers: {made.opened} "
        f"connections opened, at most {busiest} checked out at once"
    )
    assert done > 0
    assert made.opened <= defaults.db_pool_size + defaults.db_max_overflow
    assert made.opened >= 2  # the load did need more than one connection

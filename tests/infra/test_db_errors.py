"""service.infra.db_errors: real driver errors sorted into "unreachable" and "bad value"."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from service.cli.embedded import free_port
from service.core.settings import normalise_database_url
from service.infra.db_errors import invalid_value, unreachable
from tests.support.databases import ServerStack


def _url(stack: ServerStack) -> str:
    return normalise_database_url(stack.database_url)


async def test_a_refused_connection_is_unreachable() -> None:
    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
    with pytest.raises(Exception) as caught:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    await engine.dispose()
    assert unreachable(caught.value)
    assert not invalid_value(caught.value)


async def test_a_terminated_backend_is_unreachable(stack: ServerStack) -> None:
    engine = create_async_engine(_url(stack))
    async with engine.connect() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with engine.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(Exception) as caught:
            await conn.execute(text("SELECT 1"))
    await engine.dispose()
    assert unreachable(caught.value)


async def test_a_pool_checkout_timeout_is_unreachable(stack: ServerStack) -> None:
    engine = create_async_engine(_url(stack), pool_size=1, max_overflow=0, pool_timeout=0.2)
    async with engine.connect():
        with pytest.raises(Exception) as caught:
            async with engine.connect():
                pass
    await engine.dispose()
    assert unreachable(caught.value)


@pytest.mark.parametrize(
    "sql",
    ["SELECT CAST(:v AS smallint)", "SELECT CAST(:v AS integer) + 2147483647"],
)
async def test_a_value_out_of_range_is_invalid_not_unreachable(
    stack: ServerStack, sql: str
) -> None:
    engine = create_async_engine(_url(stack))
    async with engine.connect() as conn:
        with pytest.raises(Exception) as caught:
            await conn.execute(text(sql), {"v": "40000"})
    await engine.dispose()
    assert invalid_value(caught.value)
    assert not unreachable(caught.value)


async def test_a_syntax_error_is_neither(stack: ServerStack) -> None:
    engine = create_async_engine(_url(stack))
    async with engine.connect() as conn:
        with pytest.raises(Exception) as caught:
            await conn.execute(text("SELEC 1"))
    await engine.dispose()
    assert not unreachable(caught.value)
    assert not invalid_value(caught.value)


def test_a_plain_bug_is_neither() -> None:
    assert not unreachable(ValueError("x"))
    assert not invalid_value(asyncio.CancelledError())

"""service.web.context: one shared pool per process, commit on success, rollback on error."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from service.core.settings import Settings
from service.domain.view_counts import ViewCounter
from service.web import context
from service.web.app import create_app
from tests.conftest import MAX_OVERFLOW, POOL_SIZE


async def app_connections(pg: asyncpg.Connection) -> int:
    return int(
        await pg.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'newsdesk-api' AND datname = current_database()"
        )
    )


async def test_200_querying_requests_stay_within_the_pool(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    async def one() -> int:
        response = await client.get("/_test/query")
        assert response.status_code == 200
        return int(response.json()["pid"])

    peak = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, await app_connections(pg))
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    pids: list[int] = []
    for _ in range(4):  # 200 requests, 50 at a time
        pids.extend(await asyncio.gather(*(one() for _ in range(50))))
    done.set()
    await watcher
    limit = POOL_SIZE + MAX_OVERFLOW
    assert len(pids) == 200
    assert 0 < peak <= limit
    assert await app_connections(pg) <= limit
    # Connections are reused: a connection per request would show 200 backends. (Overflow
    # connections are closed on return, so a few more than the limit may appear over time.)
    assert len(set(pids)) < 50


@pytest.fixture
async def probe_table(pg: asyncpg.Connection) -> asyncpg.Connection:
    await pg.execute(
        "CREATE TABLE IF NOT EXISTS probe_items (id serial PRIMARY KEY, name text, count int)"
    )
    await pg.execute("TRUNCATE probe_items")
    return pg


async def test_a_successful_request_commits(
    client: httpx.AsyncClient, probe_table: asyncpg.Connection
) -> None:
    response = await client.post("/_test/items", json={"name": "kept", "count": 1})
    assert response.status_code == 201
    assert await probe_table.fetchval("SELECT count(*) FROM probe_items WHERE name='kept'") == 1


async def test_a_failing_request_rolls_back(
    client: httpx.AsyncClient, probe_table: asyncpg.Connection
) -> None:
    response = await client.post("/_test/items?fail=1", json={"name": "lost", "count": 1})
    assert response.status_code == 500
    assert await probe_table.fetchval("SELECT count(*) FROM probe_items WHERE name='lost'") == 0


def test_use_views_replaces_the_view_counter_before_the_app_is_served() -> None:
    app = create_app(Settings(_env_file=None, env="test"))
    default = context.app_state(app).views
    counter = ViewCounter()
    context.use_views(app, counter)
    assert context.app_state(app).views is counter
    assert counter is not default

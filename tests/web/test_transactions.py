"""service.web.transactions: what a request answers when its connection dies after the view's
last query, before the after-request hook commits or rolls back.

The probe ``/_test/lose-connection`` runs its query, has its own backend terminated with
``pg_terminate_backend`` and waits until asyncpg has seen the connection close, then answers;
``at=commit`` makes the backend end itself while the COMMIT is in flight. Before the hook
discarded a failed rollback, the first two cases answered 500.
"""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from tests.support.live import LiveServer


@pytest.fixture
async def probe_table(pg: asyncpg.Connection) -> asyncpg.Connection:
    await pg.execute(
        "CREATE TABLE IF NOT EXISTS probe_items (id serial PRIMARY KEY, name text, count int)"
    )
    return pg


async def _still_serves(client: httpx.AsyncClient) -> None:
    """The dead connection left the pool: the next requests get working ones."""
    for _ in range(8):
        assert (await client.get("/_test/query")).status_code == 200


async def test_an_error_answer_survives_a_rollback_on_a_dead_connection(
    client: httpx.AsyncClient, live: LiveServer
) -> None:
    response = await client.get("/_test/lose-connection", params={"status": "404"})
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"
    assert "cannot call Transaction.rollback()" not in live.log()
    await _still_serves(client)


async def test_a_finished_read_answers_normally_when_its_connection_then_dies(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/_test/lose-connection")
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["pid"], int)
    await _still_serves(client)


async def test_a_write_whose_connection_died_before_commit_is_503_and_not_written(
    client: httpx.AsyncClient, probe_table: asyncpg.Connection
) -> None:
    name = f"lost-{uuid.uuid4().hex}"
    response = await client.post("/_test/lose-connection", params={"name": name, "status": "201"})
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "service_unavailable"
    assert await probe_table.fetchval("SELECT count(*) FROM probe_items WHERE name=$1", name) == 0
    await _still_serves(client)


async def test_a_commit_cut_in_flight_says_its_outcome_is_unknown(
    client: httpx.AsyncClient, probe_table: asyncpg.Connection
) -> None:
    name = f"unknown-{uuid.uuid4().hex}"
    response = await client.post(
        "/_test/lose-connection", params={"name": name, "status": "201", "at": "commit"}
    )
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    error = response.json()["error"]
    assert error["code"] == "commit_outcome_unknown"
    assert "may or may not" in error["message"]
    # Here the backend ended before its commit record: the write is not there, which the client
    # could only learn by reading.
    assert await probe_table.fetchval("SELECT count(*) FROM probe_items WHERE name=$1", name) == 0
    await _still_serves(client)

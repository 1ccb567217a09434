"""service.jobs.tasks through a real worker: processing after writes, the sweeper after a Redis
outage, log lines that name their job and request, the cache's lookups in /metrics (the job
metrics are tested with the worker's own port in tests/jobs/test_metrics.py)."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from service.cli.embedded import EmbeddedRedis
from tests.conftest import LiveServers, Workers
from tests.support.api import account, publish
from tests.support.live import LiveServer
from tests.support.metrics import ascrape
from tests.support.worker import WorkerProcess


async def wait_for_status(
    pg: asyncpg.Connection, ids: list[int], status: str, seconds: float = 60
) -> dict[int, str]:
    found: dict[int, str] = {}
    for _ in range(int(seconds * 5)):
        rows = await pg.fetch("SELECT id, status FROM articles WHERE id = ANY($1::bigint[])", ids)
        found = {row["id"]: row["status"] for row in rows}
        if all(found.get(i) == status for i in ids):
            break
        await asyncio.sleep(0.2)
    return found


@pytest.fixture
def processor(worker: Workers) -> WorkerProcess:
    return worker()


async def test_an_update_during_processing_ends_with_the_final_summary(
    client: httpx.AsyncClient, processor: WorkerProcess, pg: asyncpg.Connection
) -> None:
    ann = await account(client)
    article = await publish(
        client, ann, content="First draft about trams. Trams are slow.", title="Trams"
    )
    url = f"/api/v1/articles/{article['id']}"
    final = "Final text about ferries. Ferries run every ten minutes. Tickets cost less."
    # Edited at once: the first version's job is queued or running meanwhile.
    edited = await client.patch(
        url, json={"content": final}, headers={**ann.api_key, "X-Request-ID": "edit-ferries-1"}
    )
    assert edited.status_code == 200 and edited.json()["status"] == "pending"
    found = await wait_for_status(pg, [article["id"]], "processed")
    assert found == {article["id"]: "processed"}, processor.log()
    shown = (await client.get(url)).json()
    assert shown["summary"] == final and shown["version"] == 2
    assert "ferries" in shown["keywords"] or "ferries run" in shown["keywords"]
    # The job's log lines carry its job id and the id of the request that enqueued it.
    job_line = f"[rid=edit-ferries-1 job=process:{article['id']}:2]"
    assert job_line in processor.log()
    metrics = await ascrape(client)
    assert metrics.total("cache_lookups_total", endpoint="article") >= 1


@pytest.fixture
def api_on_own_redis(durable_redis: EmbeddedRedis, live_server: LiveServers) -> LiveServer:
    return live_server(
        REDIS_URL=durable_redis.url(), REDIS_SOCKET_TIMEOUT="0.5", CACHE_BREAKER_SECONDS="0.5"
    )


async def test_articles_written_while_redis_is_down_are_processed_when_it_returns(
    worker: Workers,
    durable_redis: EmbeddedRedis,
    api_on_own_redis: LiveServer,
    pg: asyncpg.Connection,
) -> None:
    """The writes succeed without Redis; the worker rides out the outage (same process)
    and its sweeper enqueues the articles whose jobs could not be queued."""
    process = worker(
        REDIS_URL=durable_redis.url(), PROCESS_STALE_SECONDS="1", PROCESS_SWEEP_SECONDS="1"
    )
    async with httpx.AsyncClient(base_url=api_on_own_redis.url, timeout=30) as http:
        ann = await account(http)  # logging in needs Redis; API keys do not
        await process.wait_for_log("Starting worker")
        durable_redis.stop()
        created = [await publish(http, ann, title=f"Outage {i}") for i in range(3)]
        assert {a["status"] for a in created} == {"pending"}
        await asyncio.sleep(2)  # the worker notices and keeps trying
        assert process.proc is not None and process.proc.poll() is None
        durable_redis.start()
        ids = [a["id"] for a in created]
        found = await wait_for_status(pg, ids, "processed")
        assert found == dict.fromkeys(ids, "processed"), process.log()
        assert process.proc.poll() is None  # the same worker process throughout
        assert "worker lost Redis" in process.log()
        assert "enqueued again" in process.log()

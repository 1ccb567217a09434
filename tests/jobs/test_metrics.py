"""service.jobs.metrics: the worker serves its own /metrics port: job runs and durations after
real jobs, the view flush, the queue, and its pool and process figures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest

from service.cli.embedded import free_port
from service.core.settings import Settings
from tests.conftest import Workers
from tests.jobs.test_tasks import wait_for_status
from tests.support.api import account, publish
from tests.support.metrics import Exposition, ascrape
from tests.support.worker import WorkerProcess


@pytest.fixture
def scraped(worker: Workers, tmp_path: Path) -> WorkerProcess:
    return worker(
        WORKER_METRICS_HOST="127.0.0.1",
        WORKER_METRICS_PORT=str(free_port()),
        VIEW_FLUSH_SECONDS="1",
        # Set for the API, not for the worker: it keeps its own registry whatever this says.
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "not-for-the-worker"),
    )


def metrics_url(worker: WorkerProcess) -> str:
    return f"http://127.0.0.1:{worker.env['WORKER_METRICS_PORT']}/metrics"


async def scrape_when(worker: WorkerProcess, done: str, seconds: float = 60) -> Exposition:
    """Scrape the worker until sample ``done`` is there (bounded; fails with the log)."""
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(int(seconds * 10)):
            try:
                metrics = await ascrape(http, metrics_url(worker))
            except httpx.HTTPError:
                metrics = None
            if metrics is not None and metrics.total(done) > 0:
                return metrics
            await asyncio.sleep(0.1)
    raise AssertionError(f"{done} never appeared:\n{worker.log()}")


async def test_a_processed_article_and_a_flushed_view_show_in_the_worker_metrics(
    scraped: WorkerProcess, client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    ann = await account(client)
    article = await publish(client, ann)
    found = await wait_for_status(pg, [article["id"]], "processed")
    assert found == {article["id"]: "processed"}, scraped.log()
    assert (await client.get(f"/api/v1/articles/{article['id']}")).status_code == 200  # a view

    metrics = await scrape_when(scraped, "view_flush_views_total")
    runs = metrics.total("job_runs_total", function="process_article", outcome="completed")
    assert runs >= 1
    assert metrics.total("job_duration_seconds_count", function="process_article") >= runs
    assert metrics.total("job_runs_total", function="flush_views", outcome="completed") >= 1
    assert metrics.types["job_duration_seconds"] == "histogram"
    assert metrics.total("view_flush_batch_size_count") >= 1
    assert metrics.has("job_queue_depth", state="ready")
    assert metrics.has("job_queue_depth", state="deferred")
    assert metrics.has("views_pending_articles")
    assert 0 <= metrics.total("view_flush_lag_seconds") < 60
    # Its own pool, Redis and process figures (the standard collectors: one process).
    default_pool = Settings.model_fields["db_pool_size"].default
    assert metrics.total("db_pool_size", engine="primary") == default_pool
    assert metrics.has("redis_breaker_open")
    assert metrics.total("process_resident_memory_bytes") > 0
    assert metrics.has("python_gc_collections_total")
    # No multiprocess files: the variable was dropped before prometheus_client loaded.
    assert not await asyncio.to_thread(Path(scraped.env["PROMETHEUS_MULTIPROC_DIR"]).exists)


async def test_the_worker_port_serves_only_metrics(scraped: WorkerProcess) -> None:
    await scrape_when(scraped, "job_runs_total")
    async with httpx.AsyncClient(timeout=10) as http:
        other = await http.get(metrics_url(scraped).replace("/metrics", "/other"))
    assert other.status_code == 404
    assert scraped.terminate() == 0  # the metrics server stops with the worker

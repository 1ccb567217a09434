"""service.jobs.metrics with service.infra.backlog: a real worker's /metrics shows each
queue's depth, the age of its oldest job and whether a worker runs it, job runs by queue, and
the view-flush lag, against a Redis of the test's own holding a backlog no worker serves."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from service.cli.embedded import EmbeddedRedis, free_port
from service.core import keys
from tests.conftest import Workers
from tests.jobs.test_metrics import scrape_when
from tests.support.backlog import enqueue_backlog
from tests.support.worker import WorkerProcess

WAITING = 300.0  # seconds the oldest bulk job has waited


@pytest.fixture
async def queue(own_redis: EmbeddedRedis) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(own_redis.url()))
    yield pool
    await pool.aclose()


@pytest.fixture
def interactive(worker: Workers, own_redis: EmbeddedRedis) -> WorkerProcess:
    """Interactive and periodic workers; nobody serves the bulk queue, so its backlog stays."""
    return worker(
        REDIS_URL=own_redis.url(),
        WORKER_ROLES="interactive,periodic",
        WORKER_METRICS_HOST="127.0.0.1",
        WORKER_METRICS_PORT=str(free_port()),
        VIEW_FLUSH_SECONDS="1",
        # The sweeper must not add the suite's other pending articles (the database is shared)
        # to the backlog this test counts.
        PROCESS_STALE_SECONDS="86400",
    )


async def test_queue_age_running_runs_by_queue_and_flush_lag_in_the_worker_metrics(
    queue: ArqRedis, interactive: WorkerProcess
) -> None:
    await enqueue_backlog(queue, 40, waiting_since=WAITING)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    await queue.enqueue_job(
        "process_article", 1, 1, _queue_name=keys.QUEUE_BULK, _defer_until=later
    )
    before = time.time()

    # The periodic worker flushes at start-up: its run is counted under its queue.
    metrics = await scrape_when(interactive, "job_runs_total")
    for _ in range(100):  # both live workers have written their health record
        if metrics.total("job_queue_running", queue="interactive") and metrics.total(
            "job_queue_running", queue="periodic"
        ):
            break
        metrics = await scrape_when(interactive, "job_runs_total")
    runs = metrics.total("job_runs_total", function="flush_views", queue="periodic")
    assert runs >= 1, interactive.log()
    assert metrics.total("job_runs_total", outcome="completed", queue="periodic") >= 1
    assert metrics.total("job_runs_total", queue="bulk") == 0

    assert metrics.total("job_queue_depth", queue="bulk", state="ready") == 40
    assert metrics.total("job_queue_depth", queue="bulk", state="deferred") == 1
    age = metrics.total("job_queue_oldest_job_age_seconds", queue="bulk")
    assert WAITING <= age < WAITING + (time.time() - before) + 60
    assert metrics.total("job_queue_oldest_job_age_seconds", queue="interactive") == 0
    assert metrics.total("job_queue_running", queue="bulk") == 0
    assert metrics.total("job_queue_running", queue="interactive") == 1
    assert metrics.total("job_queue_running", queue="periodic") == 1
    assert metrics.types["job_queue_oldest_job_age_seconds"] == "gauge"

    # Views wait since the last flush: the lag is bounded by the time since it, and the
    # flushes (every second) bring it back down.
    await queue.hset(keys.VIEWS_PENDING, "910000001", 3)  # type: ignore[misc, arg-type]
    lags = []
    for _ in range(100):
        metrics = await scrape_when(interactive, "job_runs_total")
        lag = metrics.samples.get("view_flush_oldest_pending_seconds", [({}, -1.0)])[0][1]
        lags.append(lag)
        if lag == 0 and not await queue.exists(keys.VIEWS_PENDING):
            break
    assert 0 in lags, (lags, interactive.log()[-3000:])
    assert all(-1 <= lag < 60 for lag in lags), lags

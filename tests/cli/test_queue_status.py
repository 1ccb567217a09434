"""service.cli.queue_status: ``python -m service queue [--json]`` against a real Redis holding
a backlog no worker serves, and views waiting since a flush long ago."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from service.cli.embedded import EmbeddedRedis, free_port
from service.core import keys
from tests.support.backlog import enqueue_backlog
from tests.support.databases import ROOT

WAITING = 120.0  # seconds the oldest bulk job has waited: over the default 60 s threshold
FLUSHED_AGO = 300.0


@pytest.fixture
async def queue(own_redis: EmbeddedRedis) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(own_redis.url()))
    yield pool
    await pool.aclose()


def queue_command(redis_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "queue", *args],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": redis_url, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_queue_json_shows_depth_age_workers_and_flush_lag(
    queue: ArqRedis, own_redis: EmbeddedRedis
) -> None:
    await enqueue_backlog(queue, 25, waiting_since=WAITING)
    await enqueue_backlog(queue, 2, queue_name=keys.QUEUE_INTERACTIVE, first_id=920_000_000)
    await queue.set(keys.VIEWS_FLUSHED_AT, time.time() - FLUSHED_AGO)
    await queue.hset(keys.VIEWS_PENDING, "7", 2)  # type: ignore[misc, arg-type]
    before = time.time()

    done = queue_command(own_redis.url(), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    took = time.time() - before + 60

    bulk = report["queues"]["bulk"]
    assert bulk["depth"] == bulk["ready"] == 25
    assert WAITING <= bulk["oldest_job_age_seconds"] < WAITING + took
    assert bulk["running"] is False  # no worker in this test
    assert bulk["backlog"] is True
    interactive = report["queues"]["interactive"]
    assert interactive["depth"] == 2
    assert 0 <= interactive["oldest_job_age_seconds"] < took
    assert interactive["backlog"] is False
    assert report["queues"]["periodic"]["depth"] == 0
    assert report["backlog_warn_seconds"] == 60
    views = report["views"]
    assert views["pending_articles"] == 1
    assert FLUSHED_AGO <= views["oldest_pending_seconds"] < FLUSHED_AGO + took
    assert views["backlog"] is True

    # A higher threshold: nothing is marked.
    relaxed = json.loads(
        queue_command(own_redis.url(), "--json", QUEUE_BACKLOG_WARN_SECONDS="3600").stdout
    )
    assert relaxed["queues"]["bulk"]["backlog"] is False
    assert relaxed["views"]["backlog"] is False


async def test_queue_table_marks_the_backlog(queue: ArqRedis, own_redis: EmbeddedRedis) -> None:
    await enqueue_backlog(queue, 3, waiting_since=WAITING)
    done = queue_command(own_redis.url())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["queue", "depth", "ready", "deferred", "oldest", "job", "running"]
    bulk = next(line for line in lines if line.startswith("bulk"))
    assert bulk.split()[1:4] == ["3", "3", "0"]
    assert bulk.split()[5:] == ["no", "BACKLOG"]
    periodic = next(line for line in lines if line.startswith("periodic"))
    assert "BACKLOG" not in periodic
    assert any("view flush lag: 0.0s" in line for line in lines), done.stdout
    assert any("QUEUE_BACKLOG_WARN_SECONDS=60s on bulk" in line for line in lines), done.stdout


def test_queue_without_redis_is_one_line_and_status_1() -> None:
    done = queue_command(f"redis://127.0.0.1:{free_port()}/0", REDIS_SOCKET_TIMEOUT="2")
    assert done.returncode == 1
    assert done.stderr.startswith("Redis unavailable"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""

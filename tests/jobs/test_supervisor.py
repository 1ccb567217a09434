"""service.jobs.supervisor: SIGTERM lets running jobs finish, or puts them back on the queue."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import JobStatus

from tests.support.databases import ServerStack
from tests.support.worker import WorkerProcess

SETTINGS = "tests.support.jobs:WorkerSettings"  # Newsdesk's jobs plus `nap`


@pytest.fixture
async def queue(stack: ServerStack) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(stack.redis_url))
    yield pool
    await pool.aclose()


async def started(queue: ArqRedis, marker: str, seconds: float = 60) -> None:
    for _ in range(int(seconds * 10)):
        if await queue.get(f"{marker}:started"):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the job never started")


async def test_sigterm_lets_a_running_job_finish_then_exits_cleanly(
    stack: ServerStack, queue: ArqRedis, tmp_path: Path
) -> None:
    worker = WorkerProcess(stack, tmp_path / "worker.log", settings=SETTINGS).start()
    try:
        marker = f"nap-{uuid.uuid4().hex}"
        job = await queue.enqueue_job("nap", 2, marker)
        assert job is not None
        await started(queue, marker)
        assert worker.terminate(60) == 0
        assert await queue.get(f"{marker}:finished") == b"1"
        assert await job.result(timeout=5) == "rested"
        assert "worker stopped" in worker.log()
    finally:
        worker.stop()


async def test_sigterm_past_the_wait_puts_the_job_back_on_the_queue(
    stack: ServerStack, queue: ArqRedis, tmp_path: Path
) -> None:
    worker = WorkerProcess(
        stack, tmp_path / "worker.log", settings=SETTINGS, WORKER_SHUTDOWN_WAIT_SECONDS="1"
    ).start()
    marker = f"nap-{uuid.uuid4().hex}"
    job = await queue.enqueue_job("nap", 600, marker)
    assert job is not None
    try:
        await started(queue, marker)
        began = time.monotonic()
        assert worker.terminate(60) == 0
        assert time.monotonic() - began < 30  # it did not wait for the 600 s nap
        assert await queue.get(f"{marker}:finished") is None
        assert await job.status() == JobStatus.queued  # cancelled and queued to run again
    finally:
        worker.stop()
        await queue.zrem(default_queue_name, job.job_id)  # not for any later worker
        await queue.delete(job_key_prefix + job.job_id)

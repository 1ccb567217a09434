"""service.jobs.supervisor: SIGTERM lets running jobs finish, or puts them back on the queue."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import JobStatus

from tests.conftest import Workers
from tests.support.databases import ServerStack

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
    worker: Workers, queue: ArqRedis
) -> None:
    process = worker(settings=SETTINGS)
    marker = f"nap-{uuid.uuid4().hex}"
    job = await queue.enqueue_job("nap", 2, marker)
    assert job is not None
    await started(queue, marker)
    assert process.terminate(60) == 0
    assert await queue.get(f"{marker}:finished") == b"1"
    assert await job.result(timeout=5) == "rested"
    assert "worker stopped" in process.log()


async def test_sigterm_past_the_wait_puts_the_job_back_on_the_queue(
    worker: Workers, queue: ArqRedis
) -> None:
    process = worker(settings=SETTINGS, WORKER_SHUTDOWN_WAIT_SECONDS="1")
    marker = f"nap-{uuid.uuid4().hex}"
    job = await queue.enqueue_job("nap", 600, marker)
    assert job is not None
    try:
        await started(queue, marker)
        began = time.monotonic()
        assert process.terminate(60) == 0
        assert time.monotonic() - began < 30  # it did not wait for the 600 s nap
        assert await queue.get(f"{marker}:finished") is None
        assert await job.status() == JobStatus.queued  # cancelled and queued to run again
    finally:
        process.stop()
        await queue.zrem(default_queue_name, job.job_id)  # not for any later worker
        await queue.delete(job_key_prefix + job.job_id)

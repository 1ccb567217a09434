"""service.jobs.queue_worker: arq's rules for taking a job, checked in one round trip.

Real Redis, real arq workers on this test's loop (their jobs are functions of this module, so
what ran, and how many at once, is seen directly)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq import func
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix

from service.jobs.queue_worker import QueueWorker
from tests.support.databases import ServerStack

# arq's Worker.close() calls redis-py's deprecated close() on its pool.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")

ran: Counter[str] = Counter()
running = 0
most_at_once = 0


async def step(ctx: dict[str, Any], key: str, seconds: float = 0.0) -> str:
    global running, most_at_once
    running += 1
    most_at_once = max(most_at_once, running)
    try:
        await asyncio.sleep(seconds)
        ran[key] += 1
        return str(ctx["job_id"])
    finally:
        running -= 1


@pytest.fixture
async def queue(stack: ServerStack) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(stack.redis_url))
    ran.clear()
    global most_at_once
    most_at_once = 0
    yield pool
    await pool.aclose()


@contextlib.asynccontextmanager
async def workers(
    stack: ServerStack, name: str, count: int = 1, max_jobs: int = 10
) -> AsyncIterator[list[QueueWorker]]:
    made = [
        QueueWorker(
            functions=[func(step, name="step")],
            redis_settings=RedisSettings.from_dsn(stack.redis_url),
            queue_name=name,
            max_jobs=max_jobs,
            poll_delay=0.02,
            handle_signals=False,
            keep_result=5,
        )
        for _ in range(count)
    ]
    tasks = [asyncio.create_task(w.async_run()) for w in made]
    try:
        yield made
    finally:
        # Let the last jobs finish their bookkeeping (arq writes their results after the
        # function returns): cancelled midway, a loaded machine left connections open.
        await until(lambda: all(t.done() for w in made for t in w.tasks.values()))
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for w in made:
            await w.close()


async def until(predicate: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_two_workers_on_one_queue_run_every_job_once(
    stack: ServerStack, queue: ArqRedis
) -> None:
    name = f"q-{uuid.uuid4().hex}"
    keys = [f"job-{n}" for n in range(300)]
    for n, key in enumerate(keys):
        await queue.enqueue_job("step", key, (n % 4) / 1000, _queue_name=name)
    async with workers(stack, name, count=2, max_jobs=8) as both:
        await until(lambda: len(ran) == len(keys))
        await asyncio.sleep(0.3)  # a job run twice would show by now
    assert set(ran) == set(keys)
    assert set(ran.values()) == {1}
    assert all(w.jobs_complete > 0 for w in both), [w.jobs_complete for w in both]
    assert sum(w.jobs_complete for w in both) == len(keys)
    assert await queue.zcard(name) == 0


async def test_a_worker_runs_at_most_max_jobs_at_once(stack: ServerStack, queue: ArqRedis) -> None:
    name = f"q-{uuid.uuid4().hex}"
    for n in range(9):
        await queue.enqueue_job("step", f"slow-{n}", 1.0, _queue_name=name)
    async with workers(stack, name, max_jobs=3):
        await until(lambda: len(ran) == 9)
    # Never more than max_jobs; more than one at once (a loaded machine may not start all
    # three within a job's second, so exactly 3 is not asked for).
    assert 1 < most_at_once <= 3


async def test_a_deferred_job_waits_for_its_time(stack: ServerStack, queue: ArqRedis) -> None:
    name = f"q-{uuid.uuid4().hex}"
    await queue.enqueue_job("step", "later", _queue_name=name, _defer_by=1.5)
    await queue.enqueue_job("step", "now", _queue_name=name)
    async with workers(stack, name):
        await until(lambda: "now" in ran)
        enqueued = time.monotonic()
        await asyncio.sleep(0.5)
        assert "later" not in ran
        await until(lambda: "later" in ran)
    assert ran == {"now": 1, "later": 1}
    assert time.monotonic() - enqueued < 30


async def test_a_job_in_progress_elsewhere_is_left_alone(
    stack: ServerStack, queue: ArqRedis
) -> None:
    name = f"q-{uuid.uuid4().hex}"
    job = await queue.enqueue_job("step", "taken", _queue_name=name, _job_id=f"taken-{name}")
    assert job is not None
    # What another worker's start leaves behind while it runs the job.
    await queue.psetex(in_progress_key_prefix + job.job_id, 60_000, b"1")
    async with workers(stack, name):
        await queue.enqueue_job("step", "free", _queue_name=name)
        await until(lambda: "free" in ran)
        await asyncio.sleep(0.3)
        assert "taken" not in ran
        await queue.delete(in_progress_key_prefix + job.job_id)  # the other worker is gone
        await until(lambda: "taken" in ran)
    assert ran == {"free": 1, "taken": 1}

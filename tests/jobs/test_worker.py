"""worker.py: a real arq worker runs jobs enqueued through Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from tests.conftest import Workers
from tests.support.databases import ROOT, ServerStack

ARQ = str(Path(sys.executable).parent / "arq")


@pytest.fixture
def arq_worker(worker: Workers) -> subprocess.Popen[bytes]:
    """arq's own command line on the top-level worker.py, as its documentation runs it."""
    process = worker(command=[ARQ, "worker.WorkerSettings"])
    assert process.proc is not None
    return process.proc


@pytest.fixture
async def queue(stack: ServerStack) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(stack.redis_url))
    yield pool
    await pool.aclose()


async def test_the_worker_runs_a_job_against_the_database(
    arq_worker: subprocess.Popen[bytes], queue: ArqRedis
) -> None:
    job = await queue.enqueue_job("ping")
    assert job is not None
    assert await job.result(timeout=60) == "pong"
    assert arq_worker.poll() is None


def test_the_worker_health_check_passes_while_it_runs(
    arq_worker: subprocess.Popen[bytes], stack: ServerStack
) -> None:
    env = {**os.environ, "DATABASE_URL": stack.database_url, "REDIS_URL": stack.redis_url}
    for _ in range(60):
        check = subprocess.run(
            [ARQ, "--check", "worker.WorkerSettings"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=False,
            timeout=30,
        )
        if check.returncode == 0:
            break
        subprocess.run(["sleep", "0.5"], check=True)
    assert check.returncode == 0, check.stdout + check.stderr

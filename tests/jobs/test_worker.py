"""worker.py: a real arq worker runs jobs enqueued through Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from service.cli.harness import spawn
from tests.support.databases import ROOT, ServerStack


@pytest.fixture
def worker(stack: ServerStack, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = spawn(
        [str(Path(sys.executable).parent / "arq"), "worker.WorkerSettings"],
        {"DATABASE_URL": stack.database_url, "REDIS_URL": stack.redis_url},
        tmp_path / "worker.log",
        cwd=ROOT,
    )
    yield process.proc
    process.stop(30)


@pytest.fixture
async def queue(stack: ServerStack) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(stack.redis_url))
    yield pool
    await pool.aclose()


async def test_the_worker_runs_a_job_against_the_database(
    worker: subprocess.Popen[bytes], queue: ArqRedis
) -> None:
    job = await queue.enqueue_job("ping")
    assert job is not None
    assert await job.result(timeout=60) == "pong"
    assert worker.poll() is None


def test_the_worker_health_check_passes_while_it_runs(
    worker: subprocess.Popen[bytes], stack: ServerStack
) -> None:
    env = {**os.environ, "DATABASE_URL": stack.database_url, "REDIS_URL": stack.redis_url}
    arq = str(Path(sys.executable).parent / "arq")
    for _ in range(60):
        check = subprocess.run(
            [arq, "--check", "worker.WorkerSettings"],
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

"""service.jobs.cpu_pool: where the CPU step runs, and at what priority; a worker's niceness."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from service.jobs.cpu_pool import CpuPool, CpuThread
from tests.support.databases import ServerStack
from tests.support.worker import WorkerProcess

linux_only = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")


def _priority() -> tuple[int, int]:
    return os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)


@linux_only
async def test_cpu_processes_run_under_sched_idle_by_choice() -> None:
    pool = CpuPool(1, nice=7, idle=True)
    try:
        policy, _nice = await pool.run(_priority)
    finally:
        await pool.close()
    assert policy == os.SCHED_IDLE


async def test_without_idle_cpu_processes_run_at_their_niceness() -> None:
    pool = CpuPool(2, nice=7, idle=False)
    own = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        found = await asyncio.gather(*(pool.run(_priority) for _ in range(4)))
    finally:
        await pool.close()
    assert {policy for policy, _ in found} == {os.SCHED_OTHER}
    assert {nice for _, nice in found} == {min(own + 7, 19)}


async def test_the_thread_step_runs_one_call_at_a_time_off_the_loop() -> None:
    step = CpuThread()
    inside = 0
    most = 0

    def work() -> int:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        time.sleep(0.02)
        inside -= 1
        return threading.get_ident()

    try:
        idents = await asyncio.gather(*(step.run(work) for _ in range(8)))
    finally:
        await step.close()
    assert len(set(idents)) == 1 and idents[0] != threading.get_ident()
    assert most == 1


async def test_a_worker_process_runs_at_worker_nice(stack: ServerStack, tmp_path: Path) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    worker = WorkerProcess(
        stack, tmp_path / "worker.log", WORKER_ROLES="interactive", WORKER_NICE="6"
    ).start()
    try:
        assert worker.proc is not None
        deadline = time.monotonic() + 60
        while "Starting worker" not in worker.log():  # arq's line, once the worker runs
            assert time.monotonic() < deadline, worker.log()
            assert worker.proc.poll() is None, worker.log()
            await asyncio.sleep(0.1)
        assert os.getpriority(os.PRIO_PROCESS, worker.proc.pid) == min(own + 6, 19)
    finally:
        worker.stop()

"""service.jobs.cpu_pool: where the CPU step runs, and at what priority; a worker's niceness."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from typing import Any

import psutil
import pytest

from service.jobs.cpu_pool import CpuPool, CpuThread
from tests.conftest import Workers

linux_only = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")


def _priority() -> tuple[int, int]:
    return os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)


async def _until(check: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@linux_only
async def test_cpu_processes_start_at_normal_priority_and_drop_to_sched_idle_for_work() -> None:
    pool = CpuPool(1, nice=7, idle=True)
    try:
        [pid] = await pool.start()
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER  # started: answers at once
        work = asyncio.ensure_future(pool.run(time.sleep, 0.5))
        # Seen from outside: the drop needs no CPU at idle priority (a busy machine has none).
        await _until(lambda: os.sched_getscheduler(pid) == os.SCHED_IDLE)
    finally:
        await pool.close()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await work


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


async def test_a_worker_process_runs_at_worker_nice(worker: Workers) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    # arq's line, once the worker runs
    process = worker(WORKER_ROLES="interactive", WORKER_NICE="6", ready="Starting worker")
    assert process.proc is not None
    assert os.getpriority(os.PRIO_PROCESS, process.proc.pid) == min(own + 6, 19)


@linux_only
async def test_closing_does_not_wait_for_idle_processes_on_a_busy_machine() -> None:
    pool = CpuPool(2, idle=True)
    pids = await pool.start()
    # Both take a call (it sleeps: no CPU needed) and drop to SCHED_IDLE for it.
    calls = [asyncio.ensure_future(pool.run(time.sleep, 2)) for _ in pids]
    await _until(lambda: all(os.sched_getscheduler(p) == os.SCHED_IDLE for p in pids))
    # Every core busy at normal priority: an idle-priority process gets next to no CPU.
    hogs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass")
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        started = time.monotonic()
        await pool.close()
        took = time.monotonic() - started
    finally:
        for hog in hogs:
            hog.kill()
            await hog.wait()
    for call in calls:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await call
    gone = [not psutil.pid_exists(p) or psutil.Process(p).status() == "zombie" for p in pids]
    assert all(gone)
    assert took < 30  # a hang bound: left to exit by themselves they took minutes

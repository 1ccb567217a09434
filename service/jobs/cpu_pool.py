"""The bulk worker's CPU step (summary and keywords) in processes of its own.

One arq worker process runs ``process_article``'s I/O (arq, PostgreSQL, Redis) on its event
loop; the analysis is pure Python CPU work. In a thread of that process (``asyncio.to_thread``)
it holds the GIL: the whole worker then uses one core at most, and the loop's own work waits
behind it. ``CpuPool`` runs it in ``WORKER_CPU_PROCESSES`` processes instead (a
``ProcessPoolExecutor``, one core each), sized by default from the container's CPU quota.

The processes are started with ``spawn`` (no fork of a process that runs an event loop and
threads), load the analyser once, run under ``SCHED_IDLE`` (``WORKER_CPU_IDLE``; else at
``WORKER_CPU_NICE``: a shared machine gives the API, and the worker's own loop, the CPU
first) and die with the worker (``PR_SET_PDEATHSIG``: a SIGKILLed worker leaves no
orphans). A process that dies (OOM killer, SIGKILL) breaks the executor: the jobs it held
fail and are retried by arq, and the next job gets a new pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


def lower_priority(nice: int, *, idle: bool) -> None:
    """Lower this process's CPU priority: ``SCHED_IDLE`` when ``idle`` (it runs only when no
    ordinary process wants the core; Linux), else (or if refused) ``nice``."""
    if idle and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)


def _init_process(nice: int, idle: bool, worker_pid: int) -> None:
    """In each pool process: die with the worker, lower the priority, load the analyser."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != worker_pid:
        # The worker died while this process was starting, before the death signal was
        # asked for (it is only sent for a death after the prctl): nobody will stop us.
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the worker, which stops us
    import service.domain.text_analysis  # noqa: F401  (YAKE, numpy: once, not per job)

    # Lowered by the first real call, not here: the worker waits for its CPU processes to
    # answer (``CpuPool.start``) before it takes jobs, and at idle priority on a busy machine
    # that answer could take minutes.
    global _lower_to
    _lower_to = (nice, idle)


# The priority this pool process drops to before its first call, once (``_init_process``).
_lower_to: tuple[int, bool] | None = None


def _call(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a pool process, at the pool's lowered priority."""
    global _lower_to
    if _lower_to is not None:
        nice, idle = _lower_to
        _lower_to = None
        lower_priority(nice, idle=idle)
    return fn(*args)


class CpuPool:
    """``processes`` processes for CPU-bound calls, started on first use; ``run`` awaits one."""

    def __init__(self, processes: int, *, nice: int = 0, idle: bool = False) -> None:
        self.processes = processes
        self.nice = nice
        self.idle = idle
        self._executor: ProcessPoolExecutor | None = None

    def _get(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_process,
                initargs=(self.nice, self.idle, os.getpid()),
            )
        return self._executor

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._submit(_call, fn, *args)

    async def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        executor = self._get()
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except BrokenProcessPool:
            if self._executor is executor:  # the first job to notice replaces it
                log.warning("a CPU process died; starting a new pool of %d", self.processes)
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
            raise

    async def start(self) -> list[int]:
        """Start the processes now (a job never waits for YAKE to load); their pids."""
        return await asyncio.gather(*(self._submit(os.getpid) for _ in range(self.processes)))

    async def close(self) -> None:
        """Stop the processes. They hold nothing (the worker has finished its jobs, or put them
        back, before it closes the pool), and under SCHED_IDLE on a busy machine they could
        take minutes to read a request to exit: they are killed."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        processes = list(getattr(executor, "_processes", {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(OSError, ValueError):
                process.kill()
        await asyncio.to_thread(lambda: [p.join(10) for p in processes])


class CpuThread:
    """The CPU step in one thread of the worker (``WORKER_CPU_PROCESSES=0``): the same ``run``.

    One thread, not asyncio's default executor (up to 32 threads): with ``WORKER_MAX_JOBS``
    jobs running, several threads doing pure Python work would only take the GIL from each
    other and from the event loop, every switch a futex call (measured: 22 articles/s with
    the default executor, half the machine's CPU time in the kernel)."""

    processes = 0

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cpu-step")

    async def start(self) -> list[int]:
        """Nothing to start (``CpuPool.start``'s counterpart): no process of its own."""
        return []

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)

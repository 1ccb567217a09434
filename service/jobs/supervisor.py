"""Keeps arq workers alive across Redis restarts, and stops them gently on SIGTERM.

``supervise`` runs one arq worker per settings class (one per queue, ``service.jobs.worker``)
side by side on the running loop, each kept alive on its own as below.

arq's worker exits when its Redis connection drops. ``supervise`` runs it, and when it ends
with a connection error, closes what is left and starts a new one after a back-off (0.5 s
doubling to 10 s, with jitter): a Redis restart costs a pause, not the worker. Jobs that were
running keep their in-progress marker until it expires and then run again (arq delivers at
least once; every job here is idempotent).

SIGTERM or SIGINT: the worker logs the signal, stops taking jobs, lets the running ones
finish for up to ``WORKER_SHUTDOWN_WAIT_SECONDS``, then cancels what is left (arq puts
cancelled jobs back on the queue) and closes its connections; the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Sequence
from typing import Any

from arq.constants import default_queue_name
from arq.worker import Worker
from redis.exceptions import RedisError

from service.core.errors import REDIS_FAILURES
from service.jobs.queue_worker import create_worker

log = logging.getLogger(__name__)

# A worker that ran this long before failing had been healthy: start over from the shortest
# back-off.
HEALTHY_AFTER = 30.0


async def _gentle_stop(worker: Worker, run: asyncio.Task[None], wait: float) -> None:
    """Stop taking jobs, give running ones ``wait`` seconds, then cancel and close.

    Running ones include jobs a poll in flight had claimed when the signal came: they start
    a moment later, already marked in progress, and are waited for like the others (else they
    were cancelled at once, to run again elsewhere once their marker expired)."""
    worker.allow_pick_jobs = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    announced = False
    while loop.time() < deadline:
        running = [task for task in worker.tasks.values() if not task.done()]
        if running and not announced:
            log.info("stopping: waiting up to %.0fs for %d running job(s)", wait, len(running))
            announced = True
        if running:
            remaining = deadline - loop.time()
            await asyncio.wait(running, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        elif getattr(worker, "taking", False):
            await asyncio.sleep(0.01)  # a poll in flight: its jobs are about to start
        else:
            break
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    await _close(worker)


async def _close(worker: Worker) -> None:
    """Cancel leftover jobs, then ``Worker.close`` (runs on_shutdown, closes the Redis pool),
    bounded and never raising.

    arq's ``close`` on a worker without its own signal handlers calls its handler as if
    SIGUSR1 had arrived, to cancel the leftovers, and logs "shutdown on SIGUSR1", a signal
    nobody sent: the leftovers are cancelled here, the outcome logged, and ``close`` told
    that signals are handled (the supervisor handles them)."""
    leftovers = [task for task in worker.tasks.values() if not task.done()]
    for task in leftovers:
        task.cancel()
    if worker.main_task is not None:
        worker.main_task.cancel()
    worker._handle_signals = True  # close() skips its handle_sig(SIGUSR1)
    log.info(
        "worker closing: %d job(s) complete, %d failed, %d retried, %d cancelled",
        worker.jobs_complete,
        worker.jobs_failed,
        worker.jobs_retried,
        len(leftovers),
    )
    try:
        async with asyncio.timeout(30):
            await worker.close()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the supervisor itself is being cancelled
        # A leftover job cancelled above re-raised its cancellation out of close()'s gather of
        # the jobs (arq's run_job awaits a shielded step in its finally): not ours to die of.
        log.warning("worker closed with cancelled jobs")
        await _shut_down(worker)
    except REDIS_FAILURES as exc:
        log.warning("worker closed with errors: %s", exc)
        await _shut_down(worker)


async def _shut_down(worker: Worker) -> None:
    """``on_shutdown``, which a ``close()`` that stopped early never reached: the worker's
    resources are still open."""
    if worker.on_shutdown is not None:
        with contextlib.suppress(Exception):
            await worker.on_shutdown(worker.ctx)


async def supervise(settings_classes: Sequence[Any], *, shutdown_wait: float) -> int:
    """Run a worker of each of ``settings_classes`` until SIGTERM/SIGINT; see the module
    docstring. 1 when one failed for another reason than Redis (the others are stopped)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        if not stopping.is_set():
            log.info("%s received: the worker stops taking jobs", signum.name)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        codes = await asyncio.gather(
            *(_keep_alive(cls, stopping, shutdown_wait) for cls in settings_classes)
        )
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("worker stopped")
    return max(codes, default=0)


async def _keep_alive(settings_cls: Any, stopping: asyncio.Event, shutdown_wait: float) -> int:
    """One worker of ``settings_cls``, started again after a Redis failure, until
    ``stopping``; a failure of another kind sets ``stopping`` for every worker."""
    delay = 0.5
    queue = getattr(settings_cls, "queue_name", default_queue_name)
    while not stopping.is_set():
        # Signals are ours: arq's own handler would cancel running jobs at once.
        worker = create_worker(settings_cls, handle_signals=False)
        started = time.monotonic()
        run = asyncio.create_task(worker.async_run())
        stop_wait = asyncio.create_task(stopping.wait())
        await asyncio.wait({run, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if stopping.is_set():
            await _gentle_stop(worker, run, shutdown_wait)
            break
        error = run.exception()
        await _close(worker)
        if error is None:
            return 0  # a burst worker that ran out of jobs
        if not isinstance(error, RedisError | OSError):
            log.error("worker of %s failed", queue, exc_info=error)
            stopping.set()
            return 1
        if time.monotonic() - started > HEALTHY_AFTER:
            delay = 0.5
        pause = delay * random.uniform(0.8, 1.2)
        log.warning(
            "worker lost Redis (%s); starting the one of %s again in %.1fs", error, queue, pause
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(pause):
                await stopping.wait()
        delay = min(delay * 2, 10.0)
    return 0

"""The arq workers' settings and process: one worker per queue (``service.core.keys``).

Three roles, so periodic and interactive work never waits behind a backlog of bulk work:

* ``interactive`` (``InteractiveSettings``): mail (``send_email``) and ``ping``;
* ``bulk`` (``BulkSettings``, also ``WorkerSettings``): ``process_article``, on arq's default
  queue, where jobs queued before the queues were split are found: it also runs those
  (mail and cron jobs included);
* ``periodic`` (``PeriodicSettings``): the cron jobs. arq enqueues a cron job on the queue of
  the worker that schedules it, so this queue holds nothing else.

``python -m service worker`` runs one arq worker per role of ``WORKER_ROLES`` (default all
three) on one event loop, each supervised (it survives Redis restarts and stops gently on
SIGTERM, ``service.jobs.supervisor``); a deployment may run one role per process. The plain
arq CLI runs one role bare: ``arq worker.InteractiveSettings``, ``arq worker.BulkSettings``
(``arq worker.WorkerSettings``), ``arq worker.PeriodicSettings``; ``arq --check`` with the
same class is that role's liveness probe.

The workers of a process share one ``Resources`` (engines, Redis), built on the process's
event loop by the first to start and closed by the last to stop; settings come from the same
environment as the API. The bulk worker runs ``process_article``'s CPU step in
``WORKER_CPU_PROCESSES`` processes of its own (``service.jobs.cpu_pool``; by default one per
CPU of the container's quota), so one worker process uses every core it is given, and it looks
at its queue every ``WORKER_POLL_SECONDS`` (arq starts new jobs only when it looks: with
arq's 0.5 s and 10 jobs it could never start more than 20 a second). The supervised process
also serves its metrics on ``WORKER_METRICS_PORT`` (``service.jobs.metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings

from service.core import keys
from service.core.cpus import default_workers
from service.core.logs import configure_logging
from service.core.redis_url import is_sentinel_url, parse_sentinel_url
from service.core.settings import Settings
from service.infra import metrics, tracing
from service.infra.resources import Resources
from service.jobs.cpu_pool import CpuPool, CpuThread
from service.jobs.metrics import WorkerMetricsServer
from service.jobs.supervisor import supervise
from service.jobs.tasks import (
    flush_views,
    ping,
    process_article,
    prune_view_batches,
    send_email,
    sweep_pending,
)

log = logging.getLogger(__name__)

settings = Settings()
configure_logging(settings.log_level, settings.resolved_log_format)

# ``(processes, why)`` when WORKER_CPU_PROCESSES is unset: `python -m service worker` sets it
# from the cgroup CPU quota (service.core.cpus); the bare arq CLI reads the same quota.
cpu_default: tuple[int, str] | None = None


def cpu_processes() -> tuple[int, str]:
    """How many CPU processes the bulk worker runs, and why."""
    if settings.worker_cpu_processes is not None:
        return settings.worker_cpu_processes, "WORKER_CPU_PROCESSES"
    if cpu_default is not None:
        return cpu_default
    return default_workers()


class _Shared:
    """The process's one ``Resources`` (and metrics sampler), counted by the workers using it."""

    def __init__(self) -> None:
        self.resources: Resources | None = None
        self.sampler: metrics.Sampler | None = None
        self.pool: CpuPool | CpuThread | None = None
        self.users = 0
        self.lock = asyncio.Lock()

    async def acquire(self) -> Resources:
        async with self.lock:
            if self.resources is None:
                tracing.setup(tracing.WORKER_SERVICE)  # when OTEL_* asks for it; once
                resources = Resources(settings, application_name="newsdesk-worker")
                await resources.start()
                self.resources = resources
                if settings.metrics_enabled:
                    metrics.instrument(resources)
                    self.sampler = metrics.Sampler(resources, settings.metrics_sample_seconds)
                    self.sampler.start()
            self.users += 1
            return self.resources

    async def cpu_pool(self) -> CpuPool | CpuThread:
        """Where the process runs the CPU step (made once): its CPU processes, or one thread."""
        async with self.lock:
            if self.pool is None:
                processes, why = cpu_processes()
                if processes == 0:
                    log.info("article processing in a thread of the worker (%s=0)", why)
                    self.pool = CpuThread()
                    return self.pool
                pool = CpuPool(
                    processes,
                    nice=settings.worker_cpu_nice,
                    idle=settings.worker_cpu_idle,
                )
                await pool.start()
                log.info(
                    "article processing in %d CPU process(es) (%s): %s",
                    processes,
                    "SCHED_IDLE"
                    if settings.worker_cpu_idle
                    else f"nice {settings.worker_cpu_nice}",
                    why,
                )
                self.pool = pool
            return self.pool

    async def release(self) -> None:
        async with self.lock:
            self.users -= 1
            if self.users > 0:
                return
            sampler, self.sampler = self.sampler, None
            resources, self.resources = self.resources, None
            pool, self.pool = self.pool, None
            if pool is not None:
                await pool.close()
            if sampler is not None:
                await sampler.stop()
            if resources is not None:
                await resources.close()


_shared = _Shared()


async def startup(ctx: dict[str, Any]) -> None:
    ctx["resources"] = await _shared.acquire()


async def bulk_startup(ctx: dict[str, Any]) -> None:
    await startup(ctx)
    ctx["offload"] = (await _shared.cpu_pool()).run


async def shutdown(ctx: dict[str, Any]) -> None:
    if ctx.pop("resources", None) is not None:
        await _shared.release()


def redis_settings_for(url: str) -> RedisSettings:
    """arq's connection settings for ``REDIS_URL``, a ``redis+sentinel://`` one included.

    arq's ``from_dsn`` knows only single-server URLs; for Sentinel, arq builds a redis-py
    ``Sentinel`` over ``host`` (the list of Sentinel addresses) and asks it for the master
    named ``sentinel_master``, so the worker follows a failover the same way the API does."""
    if not is_sentinel_url(url):
        return RedisSettings.from_dsn(url)
    target = parse_sentinel_url(url)
    return RedisSettings(
        host=list(target.sentinels),
        sentinel=True,
        sentinel_master=target.service,
        database=target.db,
        username=target.username,
        password=target.password,
    )


def _every(seconds: int) -> set[int]:
    return set(range(0, 60, seconds))


def _settings(name: str, **role: Any) -> Any:
    """An arq settings class: what every role shares, then the role's own. (arq reads a
    class's own ``__dict__``, not inherited attributes, so each gets all of them.)"""
    common = {
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings_for(settings.redis_url),
        "job_timeout": settings.job_timeout_seconds,
        "keep_result": settings.job_keep_result_seconds,
        "health_check_interval": 10,
    }
    return type(name, (), {"__module__": __name__, **common, **role})


# A finished job's id is kept for a minute only: the sweeper may enqueue it again.
_process_article = func(process_article, max_tries=settings.process_max_tries, keep_result=60)

InteractiveSettings = _settings(
    "InteractiveSettings",
    queue_name=keys.QUEUE_INTERACTIVE,
    functions=[ping, send_email],
    max_jobs=settings.worker_interactive_max_jobs,
)

BulkSettings = _settings(
    "BulkSettings",
    on_startup=bulk_startup,
    queue_name=keys.QUEUE_BULK,
    functions=[
        _process_article,
        # Jobs queued on this (arq's default) queue before the queues were split.
        ping,
        send_email,
        *(func(f, name=f"cron:{f.__name__}") for f in (flush_views, sweep_pending)),
        func(prune_view_batches, name="cron:prune_view_batches"),
    ],
    max_jobs=settings.worker_max_jobs,
    # arq starts jobs only when it polls: at most max_jobs per poll. Each poll reads up to
    # queue_read_limit ids from the head of the queue (arq's default, max(5 x max_jobs, 100)),
    # skipping those other workers already run: enough for a few workers on one queue.
    poll_delay=settings.worker_poll_seconds,
)

PeriodicSettings = _settings(
    "PeriodicSettings",
    queue_name=keys.QUEUE_PERIODIC,
    functions=[ping],
    cron_jobs=[
        cron(flush_views, second=_every(settings.view_flush_seconds), run_at_startup=True),
        cron(sweep_pending, second=_every(settings.process_sweep_seconds), run_at_startup=True),
        cron(prune_view_batches, hour={3}, minute={17}, second={0}),
    ],
    max_jobs=settings.worker_periodic_max_jobs,
)

# What `arq worker.WorkerSettings` (and `arq --check worker.WorkerSettings`) has always named:
# the worker of arq's default queue, now the bulk one.
WorkerSettings = BulkSettings

ROLES: dict[str, Any] = {
    "interactive": InteractiveSettings,
    "bulk": BulkSettings,
    "periodic": PeriodicSettings,
}


def role_settings(roles: Sequence[str]) -> list[Any]:
    """The settings classes of ``roles`` (``WORKER_ROLES``), one arq worker each."""
    return [ROLES[role] for role in roles]


def main(settings_cls: Any = None, *, cpus: tuple[int, str] | None = None) -> int:
    """The supervised worker process (one event loop for its whole life): a worker per role
    of ``WORKER_ROLES``, or of ``settings_cls`` alone when given. ``cpus``: the default count
    of CPU processes and why (``cpu_default``)."""
    global cpu_default
    cpu_default = cpus
    if settings.worker_nice:
        # Before any thread or CPU process exists: they inherit it.
        with contextlib.suppress(OSError):
            os.nice(settings.worker_nice)
    logging.getLogger("arq").propagate = True  # no arq CLI here to print its lines
    classes = [settings_cls] if settings_cls is not None else role_settings(settings.worker_roles)
    with asyncio.Runner() as runner:  # the process's one loop, closed when the workers stop
        return runner.run(_serve_and_supervise(classes))


async def _serve_and_supervise(classes: list[Any]) -> int:
    """The metrics port for the life of the process; the arq worker, supervised, inside it."""
    server = None
    if settings.metrics_enabled and settings.worker_metrics_port:
        server = WorkerMetricsServer(
            settings, host=settings.worker_metrics_host, port=settings.worker_metrics_port
        )
        await server.start()
    try:
        return await supervise(classes, shutdown_wait=settings.worker_shutdown_wait_seconds)
    finally:
        if server is not None:
            await server.close()

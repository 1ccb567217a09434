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

The workers of a process share one ``Runtime`` (``service.infra.runtime``: engines, Redis,
tracing, the metrics sampler, the CPU pool), built on the process's event loop by the first
to start and closed by the last to stop. Nothing is read at import: the settings classes are
built by ``worker_roles(settings)``, and ``from_environment()`` builds them once from the
same environment as the API (the names ``WorkerSettings``, ``BulkSettings``... of this module
and of ``worker.py`` are looked up through it when first asked for). The bulk worker runs
``process_article``'s CPU step in ``WORKER_CPU_PROCESSES`` processes of its own
(``service.jobs.cpu_pool``; by default one per CPU of the container's quota,
``service.core.cpus``), so one worker process uses every core it is given, and it looks
at its queue every ``WORKER_POLL_SECONDS`` (arq starts new jobs only when it looks: with
arq's 0.5 s and 10 jobs it could never start more than 20 a second). The supervised process
also serves its metrics on ``WORKER_METRICS_PORT`` (``service.jobs.metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arq import cron, func

from service.core import keys
from service.core.cpus import default_workers
from service.core.logs import configure_logging
from service.core.settings import Settings
from service.infra.resources import Resources, redis_settings_for
from service.infra.runtime import Runtime
from service.infra.tracing import WORKER_SERVICE
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

__all__ = ["Roles", "from_environment", "main", "redis_settings_for", "worker_roles"]

log = logging.getLogger(__name__)


def cpu_processes(settings: Settings) -> tuple[int, str]:
    """How many CPU processes the bulk worker runs, and why: ``WORKER_CPU_PROCESSES``, else
    the container's CPU quota (``service.core.cpus``, as ``WEB_CONCURRENCY``)."""
    if settings.worker_cpu_processes is not None:
        return settings.worker_cpu_processes, "WORKER_CPU_PROCESSES"
    return default_workers()


class _Shared:
    """The process's one ``Runtime``, counted by the workers using it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None
        self.pool: CpuPool | CpuThread | None = None
        self.users = 0
        self.lock = asyncio.Lock()

    async def acquire(self) -> Resources:
        async with self.lock:
            if self.runtime is None:
                runtime = Runtime(
                    self.settings,
                    application_name="newsdesk-worker",
                    service_name=WORKER_SERVICE,
                )
                await runtime.start()
                self.runtime = runtime
            self.users += 1
            return self.runtime.resources

    async def cpu_pool(self) -> CpuPool | CpuThread:
        """Where the process runs the CPU step (made once, closed with the runtime): its CPU
        processes, or one thread."""
        async with self.lock:
            assert self.runtime is not None, "acquire() first"
            if self.pool is None:
                settings = self.settings
                processes, why = cpu_processes(settings)
                pool: CpuPool | CpuThread
                if processes == 0:
                    log.info("article processing in a thread of the worker (%s=0)", why)
                    pool = CpuThread()
                else:
                    pool = CpuPool(
                        processes, nice=settings.worker_cpu_nice, idle=settings.worker_cpu_idle
                    )
                await self.runtime.attach(pool)
                if processes:
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
            runtime, self.runtime, self.pool = self.runtime, None, None
            if runtime is not None:
                await runtime.close()


def _every(seconds: int) -> set[int]:
    return set(range(0, 60, seconds))


@dataclass(frozen=True)
class Roles:
    """The arq settings classes of one process, built from ``settings`` (``worker_roles``)."""

    settings: Settings
    interactive: Any
    bulk: Any
    periodic: Any

    def of(self, roles: Sequence[str]) -> list[Any]:
        """The settings classes of ``roles`` (``WORKER_ROLES``), one arq worker each."""
        named = {"interactive": self.interactive, "bulk": self.bulk, "periodic": self.periodic}
        return [named[role] for role in roles]


def worker_roles(settings: Settings) -> Roles:
    """The three roles' arq settings classes for ``settings``; their workers share one
    ``Runtime`` (its own for each call)."""
    shared = _Shared(settings)

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["resources"] = resources = await shared.acquire()
        ctx["tracing"] = resources.tracing  # the job runner's spans (service.jobs.runner)

    async def bulk_startup(ctx: dict[str, Any]) -> None:
        await startup(ctx)
        ctx["offload"] = (await shared.cpu_pool()).run

    async def shutdown(ctx: dict[str, Any]) -> None:
        if ctx.pop("resources", None) is not None:
            await shared.release()

    def settings_class(name: str, **role: Any) -> Any:
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
    process = func(process_article, max_tries=settings.process_max_tries, keep_result=60)
    return Roles(
        settings,
        interactive=settings_class(
            "InteractiveSettings",
            queue_name=keys.QUEUE_INTERACTIVE,
            functions=[ping, send_email],
            max_jobs=settings.worker_interactive_max_jobs,
        ),
        bulk=settings_class(
            "BulkSettings",
            on_startup=bulk_startup,
            queue_name=keys.QUEUE_BULK,
            functions=[
                process,
                # Jobs queued on this (arq's default) queue before the queues were split.
                ping,
                send_email,
                *(func(f, name=f"cron:{f.__name__}") for f in (flush_views, sweep_pending)),
                func(prune_view_batches, name="cron:prune_view_batches"),
            ],
            max_jobs=settings.worker_max_jobs,
            # arq starts jobs only when it polls: at most max_jobs per poll. Each poll reads up
            # to queue_read_limit ids from the head of the queue (arq's default,
            # max(5 x max_jobs, 100)), skipping those other workers already run: enough for a
            # few workers on one queue.
            poll_delay=settings.worker_poll_seconds,
        ),
        periodic=settings_class(
            "PeriodicSettings",
            queue_name=keys.QUEUE_PERIODIC,
            functions=[ping],
            cron_jobs=[
                cron(flush_views, second=_every(settings.view_flush_seconds), run_at_startup=True),
                cron(
                    sweep_pending,
                    second=_every(settings.process_sweep_seconds),
                    run_at_startup=True,
                ),
                cron(prune_view_batches, hour={3}, minute={17}, second={0}),
            ],
            max_jobs=settings.worker_periodic_max_jobs,
        ),
    )


@functools.cache
def from_environment() -> Roles:
    """The settings of the environment, logging configured by them, and the roles' classes
    built from them: once per process, when first asked for (never at import)."""
    settings = Settings()
    configure_logging(settings.log_level, settings.resolved_log_format)
    return worker_roles(settings)


def role_settings(roles: Sequence[str]) -> list[Any]:
    """The settings classes of ``roles`` (``WORKER_ROLES``) for the environment's settings."""
    return from_environment().of(roles)


# The names a settings class is found by (``arq worker.BulkSettings``); ``WorkerSettings``
# is what `arq worker.WorkerSettings` (and `arq --check`) has always named: the worker of
# arq's default queue, now the bulk one.
_NAMED = {
    "InteractiveSettings": "interactive",
    "BulkSettings": "bulk",
    "WorkerSettings": "bulk",
    "PeriodicSettings": "periodic",
}


def __getattr__(name: str) -> Any:
    """``InteractiveSettings``, ``BulkSettings`` (``WorkerSettings``), ``PeriodicSettings``
    and ``settings``, from ``from_environment()`` when first asked for."""
    if name in _NAMED:
        return getattr(from_environment(), _NAMED[name])
    if name == "settings":
        return from_environment().settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(settings_cls: Any = None) -> int:
    """The supervised worker process (one event loop for its whole life): a worker per role
    of ``WORKER_ROLES``, or of ``settings_cls`` alone when given."""
    roles = from_environment()
    settings = roles.settings
    if settings.worker_nice:
        # Before any thread or CPU process exists: they inherit it.
        with contextlib.suppress(OSError):
            os.nice(settings.worker_nice)
    logging.getLogger("arq").propagate = True  # no arq CLI here to print its lines
    classes = [settings_cls] if settings_cls is not None else roles.of(settings.worker_roles)
    with asyncio.Runner() as runner:  # the process's one loop, closed when the workers stop
        return runner.run(_serve_and_supervise(settings, classes))


async def _serve_and_supervise(settings: Settings, classes: list[Any]) -> int:
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

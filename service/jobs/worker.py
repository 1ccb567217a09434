"""The arq worker's settings and process. ``python -m service worker`` runs it supervised (it
survives Redis restarts and stops gently on SIGTERM, ``service.jobs.supervisor``);
``arq worker.WorkerSettings`` runs it bare (the top-level ``worker.py`` re-exports this
module's ``WorkerSettings``); ``arq --check worker.WorkerSettings`` is its liveness probe.

The worker builds its own ``Resources`` (engines, Redis) on its own event loop at start-up
and closes them at shutdown; settings come from the same environment as the API. The
supervised process also serves its metrics on ``WORKER_METRICS_PORT`` (``service.jobs.metrics``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from arq import cron, func
from arq.connections import RedisSettings

from service.core.logs import configure_logging
from service.core.redis_url import is_sentinel_url, parse_sentinel_url
from service.core.settings import Settings
from service.infra import metrics, tracing
from service.infra.resources import Resources
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

settings = Settings()
configure_logging(settings.log_level, settings.resolved_log_format)


async def startup(ctx: dict[str, Any]) -> None:
    tracing.setup(tracing.WORKER_SERVICE)  # when OTEL_* asks for it; once per process
    resources = Resources(settings, application_name="newsdesk-worker")
    await resources.start()
    ctx["resources"] = resources
    if settings.metrics_enabled:
        metrics.instrument(resources)
        ctx["metrics_sampler"] = sampler = metrics.Sampler(
            resources, settings.metrics_sample_seconds
        )
        sampler.start()


async def shutdown(ctx: dict[str, Any]) -> None:
    sampler: metrics.Sampler | None = ctx.pop("metrics_sampler", None)
    if sampler is not None:
        await sampler.stop()
    resources: Resources | None = ctx.pop("resources", None)
    if resources is not None:
        await resources.close()


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


class WorkerSettings:
    functions: ClassVar[list[Any]] = [
        ping,
        send_email,
        # A finished job's id is kept for a minute only: the sweeper may enqueue it again.
        func(process_article, max_tries=settings.process_max_tries, keep_result=60),
    ]
    cron_jobs: ClassVar[list[Any]] = [
        cron(flush_views, second=_every(settings.view_flush_seconds), run_at_startup=True),
        cron(sweep_pending, second=_every(settings.process_sweep_seconds), run_at_startup=True),
        cron(prune_view_batches, hour={3}, minute={17}, second={0}),
    ]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = redis_settings_for(settings.redis_url)
    max_jobs = settings.worker_max_jobs
    job_timeout = settings.job_timeout_seconds
    keep_result = settings.job_keep_result_seconds
    health_check_interval = 10


def main(settings_cls: Any = WorkerSettings) -> int:
    """The supervised worker process (one event loop for its whole life)."""
    logging.getLogger("arq").propagate = True  # no arq CLI here to print its lines
    with asyncio.Runner() as runner:  # the process's one loop, closed when the worker stops
        return runner.run(_serve_and_supervise(settings_cls))


async def _serve_and_supervise(settings_cls: Any) -> int:
    """The metrics port for the life of the process; the arq worker, supervised, inside it."""
    server = None
    if settings.metrics_enabled and settings.worker_metrics_port:
        server = WorkerMetricsServer(
            settings, host=settings.worker_metrics_host, port=settings.worker_metrics_port
        )
        await server.start()
    try:
        return await supervise(settings_cls, shutdown_wait=settings.worker_shutdown_wait_seconds)
    finally:
        if server is not None:
            await server.close()

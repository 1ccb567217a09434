"""The arq worker's settings and process. ``python -m service worker`` runs it supervised (it
survives Redis restarts and stops gently on SIGTERM, ``service.jobs.supervisor``);
``arq worker.WorkerSettings`` runs it bare (the top-level ``worker.py`` re-exports this
module's ``WorkerSettings``); ``arq --check worker.WorkerSettings`` is its liveness probe.

The worker builds its own ``Resources`` (engines, Redis) on its own event loop at start-up
and closes them at shutdown; settings come from the same environment as the API.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from arq import cron, func
from arq.connections import RedisSettings

from service.core.logs import configure_logging
from service.core.settings import Settings
from service.infra.resources import Resources
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
configure_logging(settings.log_level)


async def startup(ctx: dict[str, Any]) -> None:
    resources = Resources(settings, application_name="newsdesk-worker")
    await resources.start()
    ctx["resources"] = resources


async def shutdown(ctx: dict[str, Any]) -> None:
    resources: Resources | None = ctx.pop("resources", None)
    if resources is not None:
        await resources.close()


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
    redis_settings = RedisSettings.from_dsn(settings.redis_url)
    max_jobs = settings.worker_max_jobs
    job_timeout = settings.job_timeout_seconds
    keep_result = settings.job_keep_result_seconds
    health_check_interval = 10


def main(settings_cls: Any = WorkerSettings) -> int:
    """The supervised worker process (one event loop for its whole life)."""
    logging.getLogger("arq").propagate = True  # no arq CLI here to print its lines
    wait = settings.worker_shutdown_wait_seconds
    return asyncio.run(supervise(settings_cls, shutdown_wait=wait))

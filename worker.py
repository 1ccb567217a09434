"""arq worker: ``arq worker.WorkerSettings``; liveness: ``arq --check worker.WorkerSettings``.

The worker builds its own ``Resources`` (engines, Redis) on its own event loop at start-up
and closes them at shutdown; settings come from the same environment as the API.
"""

from __future__ import annotations

from typing import Any, ClassVar

from arq.connections import RedisSettings

from service.jobs import ping
from service.logs import configure_logging
from service.resources import Resources
from service.settings import Settings

settings = Settings()
configure_logging(settings.log_level)


async def startup(ctx: dict[str, Any]) -> None:
    resources = Resources(settings, application_name="newsdesk-worker")
    await resources.start()
    ctx["resources"] = resources


async def shutdown(ctx: dict[str, Any]) -> None:
    resources: Resources | None = ctx.get("resources")
    if resources is not None:
        await resources.close()


class WorkerSettings:
    functions: ClassVar[list[Any]] = [ping]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = RedisSettings.from_dsn(settings.redis_url)
    max_jobs = 10
    job_timeout = 300
    keep_result = 3600
    health_check_interval = 10

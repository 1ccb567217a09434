"""One view flush, run in the test's process as the periodic worker runs it every
``VIEW_FLUSH_SECONDS``: for tests that need the views counted in Redis to be in PostgreSQL
(a backup, a migration) without waiting for a worker's schedule."""

from __future__ import annotations

from service.core.settings import Settings
from service.infra.resources import Resources
from service.jobs.tasks import flush_views


async def flush_once(database_url: str, redis_url: str) -> int:
    """Move the views pending in ``redis_url`` into ``database_url``; the views added."""
    settings = Settings(_env_file=None, env="test", database_url=database_url, redis_url=redis_url)
    res = Resources(settings, application_name="newsdesk-test-flush")
    await res.start()
    try:
        return await flush_views({"resources": res, "job_id": "test-flush-once"})
    finally:
        await res.close()

"""The guides' design for view counts: one ``record_view`` job per view (bench only).

``app``: Newsdesk's own ASGI app with one thing changed, how a view is recorded (its
``ViewCounter``, replaced through the extension point ``service.web.context.use_views``):
instead of one Redis increment, every article read that answers 200 enqueues a
``record_view`` job, and ``WorkerSettings`` (Newsdesk's worker plus that job) adds one to
``articles.views`` per job. Run it with
``python -m service worker --settings bench.baselines.job_per_view:WorkerSettings``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from service.asgi import asgi_app
from service.core.logs import configure_logging
from service.core.settings import Settings
from service.domain.view_counts import ViewCounter
from service.infra.cache import HitCount
from service.infra.resources import Resources
from service.jobs.runner import job
from service.web import context
from service.web.app import create_app
from worker import WorkerSettings as NewsdeskWorkerSettings


@job
async def record_view(ctx: dict[str, Any], article_id: int) -> None:
    """One view: one transaction adding one to the article's count."""
    res = ctx["resources"]
    async with res.engine.begin() as conn:
        await conn.execute(
            text("UPDATE articles SET views = views + 1 WHERE id = :id"), {"id": article_id}
        )


class JobPerView(ViewCounter):
    """Every view enqueues a ``record_view`` job (it cannot be counted in a cache lookup)."""

    def on_hit(self, article_id: int) -> HitCount | None:
        return None

    async def record(self, res: Resources, article_id: int) -> None:
        assert res.redis is not None
        await res.redis.enqueue_job("record_view", article_id)


def build() -> Any:
    settings = Settings()
    configure_logging(settings.log_level)
    flask_app = create_app(settings)
    context.use_views(flask_app, JobPerView())
    return asgi_app(flask_app)


app = build()

# arq reads a settings class's own __dict__: copy Newsdesk's, then add the job.
WorkerSettings = type(
    "WorkerSettings",
    (),
    {
        **{k: v for k, v in vars(NewsdeskWorkerSettings).items() if not k.startswith("__")},
        "functions": [*NewsdeskWorkerSettings.functions, record_view],
    },
)

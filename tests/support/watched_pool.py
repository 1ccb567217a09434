"""An engine made as the product makes it, watched: what its pooled connections send (asyncpg's
query logger: simple-protocol statements and the driver reads' queries, not SQLAlchemy's
prepared ones) and how many connections it opened."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from service.core.settings import Settings
from service.infra.resources import make_engine


@dataclass
class Watched:
    """An engine made by ``make_engine`` from ``settings``, with what its connections send and
    how many it opened."""

    engine: AsyncEngine
    sent: list[str] = field(default_factory=list)
    opened: int = 0


def watched_engine(url: str, **settings: Any) -> Watched:
    chosen = Settings(_env_file=None, database_url=url, **settings)
    watched = Watched(make_engine(chosen.database_url, chosen, application_name="test-reads"))

    @event.listens_for(watched.engine.sync_engine.pool, "connect")
    def _connected(dbapi_connection: Any, record: Any) -> None:
        watched.opened += 1
        dbapi_connection.driver_connection.add_query_logger(
            lambda logged: watched.sent.append(logged.query)
        )

    return watched

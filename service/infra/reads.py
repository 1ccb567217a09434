"""Reads that need no transaction: one statement, one round trip.

A request's ``AsyncSession`` begins a transaction with its first statement and ends it with
the request: a primary-key read is BEGIN, the SELECT and ROLLBACK, three round trips to
PostgreSQL, plus the ORM's unit of work around them. A read of committed rows by one statement
needs none of that: PostgreSQL runs a single statement in a transaction of its own anyway.

``Reads`` runs each statement on a connection taken from the engine's pool in autocommit
(``isolation_level="AUTOCOMMIT"``: the driver sends no BEGIN, and the pool's reset on return,
a ROLLBACK, has nothing to roll back, so it sends nothing either), buffers the rows and gives
the connection back before the caller looks at them. What stays SQLAlchemy's:

- the pool (its size and timeout, the idle ping, the outage log) is the engine's own: the same
  connections serve sessions and reads (``Engine.execution_options`` shares the pool);
- statements are Core constructs, compiled once (SQLAlchemy's compiled cache) and prepared once
  per connection (the asyncpg dialect's statement cache; with ``DB_PGBOUNCER`` unnamed and
  prepared again each time, ``service.infra.resources.connect_args``);
- column types are converted as for any SQLAlchemy result;
- errors are SQLAlchemy's (``DBAPIError`` around asyncpg's), so ``service.infra.db_errors``
  maps them the same way (503 for an unreachable database).

The hottest fixed-shape reads skip SQLAlchemy's per-statement work as well: ``row`` and
``rows`` run a ``Query`` compiled once on the same pool's asyncpg connection
(``service.infra.driver_reads``, which says why that is safe).

Use it for reads whose answer is the committed state of one statement: a read that must see
the request's own uncommitted writes, or several statements that must agree with each other
(a snapshot), belongs on the session.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Executable, Result
from sqlalchemy.ext.asyncio import AsyncEngine

from service.infra import driver_reads
from service.infra.driver_reads import Query, Row


class Reads:
    """One-statement reads on ``engine``'s pool, in autocommit."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.pooled = engine
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def execute(
        self, statement: Executable, parameters: dict[str, Any] | None = None
    ) -> Result[Any]:
        """The result of ``statement``, its rows already fetched, its connection returned to
        the pool (the result reads like any other: ``first()``, ``all()``, ``scalar_one()``)."""
        async with self.engine.connect() as connection:
            result = await connection.execute(statement, parameters)
            frozen = result.freeze()
        return frozen()

    async def rows(self, query: Query, **params: Any) -> list[Row]:
        """``query``'s rows, read by the driver on a pooled connection (``driver_reads``)."""
        return await driver_reads.run(self.pooled, query, params)

    async def row(self, query: Query, **params: Any) -> Row | None:
        """``query``'s first row, or None."""
        found = await driver_reads.run(self.pooled, query, params)
        return found[0] if found else None

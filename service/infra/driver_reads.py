"""The thin executor: a Core query compiled once, run by asyncpg on the pool's own connection.

``service.infra.reads.Reads.execute`` already sends a read as one statement, but SQLAlchemy
still works per statement on the event loop: the cache key of the statement, the compiled
form's parameters, the adapted cursor, a ``Result`` and its rows. On a primary-key read
that is the largest share of the loop's time after the server's own (the lab's ``dbpath``
claim: SQLAlchemy 18.6% of the samples on ``Reads.execute``, 4.8% on the driver; the driver
path served 1.33x to 1.58x the reads of ``Reads.execute`` in every run).

A ``Query`` is compiled once per dialect (SQL text with ``$n`` placeholders, the order of its
parameters, the literal ones such as a ``LIMIT``). ``run`` checks a connection out of the
engine's pool, calls asyncpg's ``fetch`` on it and gives it back. Why it is safe:

- The pool is SQLAlchemy's: the same connections, size, timeout, idle ping (a checkout
  event) and outage report serve sessions, ``Reads.execute`` and this. No transaction is
  begun (asyncpg runs the statement in its own, as autocommit does), so the pool's reset on
  return, a rollback of the adapter's transaction, has none and sends nothing.
- Statements are prepared by asyncpg and kept in its per-connection statement cache; with
  ``DB_PGBOUNCER`` that cache is off (``statement_cache_size=0``,
  ``service.infra.resources.connect_args``), so each statement is prepared unnamed in the
  same round trip, as PgBouncer's transaction pooling needs.
- Types: a ``Query`` is refused when a column or parameter would need SQLAlchemy's conversion
  (a type with a result or bind processor, other than an ARRAY of plain items, which asyncpg
  already gives as a list). The JSON codecs SQLAlchemy installs are on the same connection.
  What is left, integers, text, timestamps and text arrays, asyncpg converts itself, as it
  does under SQLAlchemy; tests/infra/test_driver_reads.py compares the results.
- Errors are mapped the way a ``Connection`` maps them: asyncpg's errors become the
  dialect's DBAPI errors and then SQLAlchemy's ``DBAPIError`` classes, so
  ``service.infra.db_errors`` answers them the same (503 for an unreachable database). A
  connection asyncpg reports closed is a disconnect: it is invalidated with every connection
  of the pool checked out before it (what SQLAlchemy does), so the next checkouts reconnect.
  asyncpg's ``InternalClientError`` (its protocol lost track of the connection, seen when the
  server ends a connection while a statement is being prepared) counts as a disconnect too,
  where SQLAlchemy would let it through as it is (a 500). A read cancelled mid-statement
  leaves the connection in an unknown state: it is invalidated alone.

Use it for the hottest fixed-shape reads; everything else reads through ``Reads.execute``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import ARRAY, Select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeEngine


class Row(asyncpg.Record):  # type: ignore[misc]  # asyncpg has no type hints
    """An asyncpg record that also reads by attribute, as SQLAlchemy's ``Row`` does
    (``row.title``, ``row[0]``), so the domain's row functions take either."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class Compiled:
    sql: str
    names: tuple[str, ...]  # the parameters in placeholder order
    literals: dict[str, Any]  # values fixed in the statement (a LIMIT), by name

    def arguments(self, params: dict[str, Any]) -> list[Any]:
        unknown = params.keys() - self.names
        if unknown:
            raise TypeError(f"no parameter named {', '.join(sorted(unknown))}")
        merged = {**self.literals, **params}
        missing = [name for name in self.names if name not in merged]
        if missing:
            raise TypeError(f"missing parameter {', '.join(missing)}")
        return [merged[name] for name in self.names]


@dataclass
class Query:
    """A SELECT with named ``bindparam``s, compiled once per dialect for ``run``."""

    statement: Select[*tuple[Any, ...]]
    _compiled: dict[str, Compiled] = field(default_factory=dict, repr=False)

    def compiled(self, dialect: Dialect) -> Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = self._compile(dialect)
        return found

    def _compile(self, dialect: Dialect) -> Compiled:
        for column in self.statement.selected_columns:
            if not _plain(column.type, dialect, result=True):
                raise ValueError(f"column {column.name} ({column.type}) needs SQLAlchemy's types")
        compiled = self.statement.compile(dialect=dialect)
        for name, bind in compiled.binds.items():
            if not _plain(bind.type, dialect, result=False):
                raise ValueError(f"parameter {name} ({bind.type}) needs SQLAlchemy's types")
        names = tuple(compiled.positiontup or ())
        literals = {
            name: bind.effective_value
            for name, bind in compiled.binds.items()
            if not bind.required and name in names
        }
        return Compiled(compiled.string, names, literals)


def _plain(type_: TypeEngine[Any], dialect: Dialect, *, result: bool) -> bool:
    """True when asyncpg's own value is SQLAlchemy's: the type converts nothing, or it is an
    ARRAY of such a type (asyncpg gives and takes lists)."""
    if isinstance(type_, ARRAY):
        return type_.dimensions in (None, 1) and _plain(type_.item_type, dialect, result=result)
    try:
        if result:
            return type_._cached_result_processor(dialect, None) is None
        return type_._cached_bind_processor(dialect) is None
    except Exception:  # a processor that needs the column's server type (numerics): it converts
        return False


async def run(engine: AsyncEngine, query: Query, params: dict[str, Any]) -> list[Row]:
    """``query``'s rows, read by asyncpg on a connection of ``engine``'s pool, the connection
    back in the pool before they are returned."""
    dialect = engine.dialect
    compiled = query.compiled(dialect)
    arguments = compiled.arguments(params)
    try:
        proxied = await engine.raw_connection()
    except sa_exc.SQLAlchemyError:
        raise
    except Exception as error:
        raise _wrapped(error, dialect, None, None, invalidated=False) from error
    try:
        connection: Any = proxied.driver_connection
        try:
            rows: list[Row] = await connection.fetch(compiled.sql, *arguments, record_class=Row)
            return rows
        except asyncio.CancelledError as cancelled:
            proxied.invalidate(cancelled)  # mid-statement: its state is unknown
            raise
        except Exception as error:
            # Closed under it, or asyncpg lost track of the protocol (seen when the server
            # ends the connection while a statement is being prepared): a disconnect.
            lost = connection.is_closed() or isinstance(error, asyncpg.InternalClientError)
            if lost:  # this connection, and every one checked out before it
                engine.sync_engine.pool._invalidate(proxied, error)
            raise _wrapped(error, dialect, compiled.sql, arguments, invalidated=lost) from error
    finally:
        proxied.close()


def _wrapped(
    error: Exception,
    dialect: Dialect,
    sql: str | None,
    arguments: list[Any] | None,
    *,
    invalidated: bool,
) -> Exception:
    """``error`` as a ``Connection`` would raise it: an asyncpg error translated to the
    dialect's DBAPI error, that wrapped in SQLAlchemy's matching ``DBAPIError``. Errors of
    other kinds (a refused socket, a timeout while connecting) are raised as they are, as
    SQLAlchemy raises them."""
    dbapi = dialect.loaded_dbapi
    translated: Exception = error
    if isinstance(error, asyncpg.InternalClientError):  # not in SQLAlchemy's translation
        translated = dbapi.InterfaceError(f"connection lost its protocol state: {error}", error)
    elif isinstance(error, asyncpg.PostgresError | asyncpg.InterfaceError):
        try:
            AsyncAdapt_asyncpg_connection._handle_exception_no_connection(dbapi, error)
        except dbapi.Error as adapted:
            translated = adapted
        except Exception:  # no translation: raised as it is
            pass
    if not isinstance(translated, dbapi.Error):
        return error
    return sa_exc.DBAPIError.instance(
        sql,
        tuple(arguments) if arguments is not None else None,
        translated,
        dbapi.Error,
        connection_invalidated=invalidated,
        dialect=dialect,
    )

"""What a database error means for the client: the database is gone (503), or a value was bad.

``unreachable(exc)`` is True when PostgreSQL could not be reached or went away: the connection
was refused or timed out, the server is shutting down or starting up (``57P01``-``57P03``),
too many connections (``53300``), any connection exception (class ``08``), a connection
SQLAlchemy invalidated as a disconnect, no pooled connection freed up within
``DB_POOL_TIMEOUT``, or no server of a multi-host URL has the role it asks for
(``target_session_attrs``: during a failover every host that answers may still be a
standby). The API answers those with 503 and ``Retry-After`` (``service.web.errors``), never
with a 500.

``outcome_unknown(exc)`` is True when that happened to a COMMIT that may have reached the
server: whether the write was applied cannot be known from here (``web.transactions``).

``invalid_value(exc)`` is True for PostgreSQL's data exceptions (class ``22``: a number out of
range, a date out of range, malformed text): a value from the client that no validation
caught. The API answers 422.

``query_canceled(exc)`` is True when PostgreSQL cancelled the statement (SQLSTATE ``57014``:
its ``statement_timeout`` fired, or someone cancelled it). Only a search's own timeout is
turned into an answer (``service.domain.search.bounded``: 422 ``search_too_broad``); anywhere
else it is an unexpected error like any other.

``schema_missing(exc)`` is True when a statement names a table or column the database does not
have: this code is ahead of the database's schema (its migration has not run). The API
answers 503 with ``Retry-After``, the log says to run the migrations (at most once a minute),
and ``/readyz`` keeps such an instance out of its load balancer (``service.infra.schema``).

``OUTAGE`` logs an outage once: one line when the first request meets it, one when a new
connection succeeds again (with how many requests were answered 503 meanwhile), instead of a
traceback per request.
"""

from __future__ import annotations

import logging
import time

import asyncpg
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from service.infra import metrics

log = logging.getLogger(__name__)

# SQLSTATEs (besides class 08) that mean "the server cannot serve this connection now".
UNREACHABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
# A statement cancelled: statement_timeout, or pg_cancel_backend.
QUERY_CANCELED = "57014"
# A table or a column the statement names is not there: undefined_table, undefined_column.
SCHEMA_MISSING = frozenset({"42P01", "42703"})


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, looked for on the error and what it wraps (asyncpg's
    error behind SQLAlchemy's, on either path: the session's or ``driver_reads``')."""
    seen: BaseException | None = getattr(exc, "orig", None) or exc
    for _ in range(4):  # the DBAPI adapter wraps asyncpg's error, which may wrap another
        if seen is None:
            return None
        state = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(state, str):
            return state
        seen = seen.__cause__
    return None


def _no_host_in_role(exc: BaseException) -> bool:
    """asyncpg reached every host of the URL and none had the role ``target_session_attrs``
    asks for (a primary for ``read-write``): no server can take the request now."""
    seen: BaseException | None = getattr(exc, "orig", None) or exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, asyncpg.TargetServerAttributeNotMatched):
            return True
        seen = seen.__cause__
    return False


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says PostgreSQL cannot be reached now (see the module docstring)."""
    if isinstance(exc, sa_exc.TimeoutError):  # pool checkout timed out
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or _no_host_in_role(exc):
            return True
        state = sqlstate(exc)
        if state is not None:
            return state.startswith("08") or state in UNREACHABLE_STATES
        return isinstance(exc.orig, OSError | TimeoutError) or isinstance(
            exc, sa_exc.InterfaceError
        )
    # Connecting raises the socket's own errors (refused, timed out), unwrapped.
    return isinstance(exc, OSError | TimeoutError)


def outcome_unknown(exc: BaseException) -> bool:
    """True when a COMMIT met a dead connection after it may have reached the server: asyncpg
    reports a connection closed in the middle of the operation. A connection asyncpg already
    knew was closed (``InterfaceError``) never sent the COMMIT: nothing was written."""
    return (
        isinstance(exc, sa_exc.DBAPIError)
        and not isinstance(exc, sa_exc.InterfaceError)
        and unreachable(exc)
    )


def query_canceled(exc: BaseException) -> bool:
    """True when PostgreSQL cancelled the statement (SQLSTATE 57014, ``query_canceled``)."""
    return isinstance(exc, sa_exc.DBAPIError) and sqlstate(exc) == QUERY_CANCELED


def invalid_value(exc: BaseException) -> bool:
    """True for a data exception (SQLSTATE class 22): a value PostgreSQL cannot take."""
    if isinstance(exc, sa_exc.DataError):
        return True
    state = sqlstate(exc) if isinstance(exc, sa_exc.DBAPIError) else None
    return state is not None and state.startswith("22")


def schema_missing(exc: BaseException) -> bool:
    """True when a statement named a table or column the database does not have (SQLSTATE
    ``42P01`` undefined_table, ``42703`` undefined_column): the code is ahead of the database's
    schema, its migration not run (``service.infra.schema``). Answered 503, not as a bug."""
    return isinstance(exc, sa_exc.DBAPIError) and sqlstate(exc) in SCHEMA_MISSING


class Outage:
    """The process's view of a database outage, logged once rather than per request."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.refused = 0

    def failed(self, exc: BaseException) -> None:
        """A request met an unreachable database (it is answered 503)."""
        self.refused += 1
        metrics.DATABASE_UNAVAILABLE.inc()
        if self.since is None:
            self.since = time.monotonic()
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error(
                "database unreachable (%s: %s); answering 503 until it answers again",
                type(exc).__name__,
                reason[:200],
            )

    def lost(self, exc: BaseException, step: str) -> None:
        """A clean-up step (a rollback, a close) met a connection the server had dropped; the
        request or job it belonged to answers what it had decided. Logged once per outage."""
        if self.since is None:
            self.since = time.monotonic()
            log.warning(
                "database connection lost (%s failed: %s); it is discarded",
                step,
                type(exc).__name__,
            )

    def recovered(self) -> None:
        """A new connection to the database succeeded."""
        if self.since is None:
            return
        log.warning(
            "database reachable again after %.1f s; %d request(s) were answered 503",
            time.monotonic() - self.since,
            self.refused,
        )
        self.since, self.refused = None, 0


OUTAGE = Outage()


def watch(engine: AsyncEngine) -> None:
    """Report the end of an outage when ``engine`` opens a connection again."""

    @event.listens_for(engine.sync_engine.pool, "connect")
    def _connected(*_: object) -> None:
        OUTAGE.recovered()


class SchemaBehind:
    """Requests that met a table or column the database lacks, logged at most once a minute
    (``schema_missing``): the operator's cue to run the migrations."""

    EVERY = 60.0

    def __init__(self) -> None:
        self.logged_at: float | None = None
        self.met_since_log = 0

    def met(self, exc: BaseException) -> None:
        self.met_since_log += 1
        now = time.monotonic()
        if self.logged_at is not None and now - self.logged_at < self.EVERY:
            return
        reason = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
        log.error(
            "the database lacks what this code uses (%s); %d request(s) answered 503: run the "
            "migrations (alembic upgrade head)",
            reason,
            self.met_since_log,
        )
        self.logged_at, self.met_since_log = now, 0


SCHEMA_BEHIND = SchemaBehind()

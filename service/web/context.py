"""What a request can get: the one module that reads ``current_app.extensions`` and ``g``.

Everything else asks these functions (as ``api/deps.py`` does in full-stack-fastapi-template),
so what lives where in Flask's globals is decided here only, and every accessor is typed and
never returns None for something a request must have.

- ``AppState`` (one per app, in ``app.extensions``): settings, the process's ``Runtime``
  (its ``Resources``: engines, Redis, cache; started by the ASGI lifespan), how views are
  recorded and the last readiness result;
- ``RequestState`` (one per request, in ``g``): its database sessions, the callbacks to run
  after its commit, the authenticated caller and the tightest rate limit seen.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from arq.connections import ArqRedis
from flask import Flask, current_app, g
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.settings import Settings
from service.domain.callers import Caller
from service.domain.view_counts import ViewCounter
from service.infra import db_cleanup
from service.infra.cache import ResponseCache
from service.infra.health import ReadinessRound, RecentResult
from service.infra.reads import Reads
from service.infra.resources import Clients, Resources
from service.infra.runtime import Runtime

_APP_KEY = "newsdesk"
_REQUEST_KEY = "_newsdesk"


@dataclass
class AppState:
    settings: Settings
    runtime: Runtime
    views: ViewCounter
    openapi: dict[str, Any] | None = None  # the document, built on first request
    # The last readiness round (dependencies, backlog, schema), reused by /readyz for
    # READINESS_CACHE_SECONDS (service.web.api.health).
    readiness: RecentResult[ReadinessRound] = field(default_factory=RecentResult)

    @property
    def resources(self) -> Resources:
        return self.runtime.resources


@dataclass
class RequestState:
    db_session: AsyncSession | None = None
    read_session: AsyncSession | None = None
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    caller: Caller | None = None
    rate_limit_headers: dict[str, str] | None = None


def install(app: Flask, state: AppState) -> None:
    """Attach ``state`` to ``app`` (``create_app`` does this once)."""
    app.extensions[_APP_KEY] = state


def app_state(app: Flask | None = None) -> AppState:
    """The state of ``app`` (the current app when omitted)."""
    state: AppState = (app or current_app).extensions[_APP_KEY]
    return state


def app() -> Flask:
    """The application serving the current request."""
    current: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return current


def settings() -> Settings:
    return app_state().settings


def resources() -> Resources:
    """The current app's started ``Resources``."""
    res = app_state().resources
    if not res.started:
        raise RuntimeError("resources are not started: serve the app through service.asgi")
    return res


def clients() -> Clients:
    """The clients of the current app's started ``Resources``."""
    return resources().clients


def cache() -> ResponseCache:
    return clients().cache


def reads() -> Reads:
    """One-statement reads on the primary, without a transaction (``service.infra.reads``):
    the request's committed-state reads that fill the cache."""
    return clients().reads


def redis() -> ArqRedis:
    return clients().redis


def views() -> ViewCounter:
    return app_state().views


def use_views(app: Flask, views: ViewCounter) -> None:
    """Extension point: record ``app``'s article views with ``views`` instead of the default
    ``ViewCounter`` (one Redis increment per view, flushed in batches by the worker). Call it
    after ``create_app`` and before ``service.asgi.asgi_app`` wraps the app: the cache fast
    path and the runtime take the counter from there (``bench/baselines/job_per_view.py``
    records one job per view this way)."""
    app_state(app).views = views


def readiness() -> RecentResult[ReadinessRound]:
    """This process's readiness result, reused for a short while (``/readyz``)."""
    return app_state().readiness


def request_state() -> RequestState:
    """This request's state, created on first use."""
    state: RequestState | None = g.get(_REQUEST_KEY)
    if state is None:
        state = RequestState()
        setattr(g, _REQUEST_KEY, state)
    return state


def existing_request_state() -> RequestState | None:
    """This request's state if anything made one (teardown hooks: nothing to do otherwise)."""
    state: RequestState | None = g.get(_REQUEST_KEY)
    return state


async def abandon_transaction() -> None:
    """Roll back the request's primary session: a read failed and the answer does not depend
    on it (served stale), so there is nothing to commit."""
    state = existing_request_state()
    if state is not None and state.db_session is not None:
        await db_cleanup.roll_back(state.db_session)


def db_session() -> AsyncSession:
    """The request's session on the primary (created lazily, no I/O until used); committed
    or rolled back with the response (``service.web.transactions``)."""
    state = request_state()
    if state.db_session is None:
        state.db_session = clients().sessionmaker()
    return state.db_session


async def release_connection() -> None:
    """End what the request has done on the primary so far (reads only): its transaction is
    rolled back and its connection goes back to the pool before slow work that needs none
    (a password hash: up to PASSWORD_HASH_WAIT_SECONDS in the queue, then the hash), so that
    work cannot hold a small pool's connections; a later statement begins a new transaction.
    Rows read before are expired: copy what is needed first."""
    session = request_state().db_session
    if session is not None and session.in_transaction():
        await db_cleanup.roll_back(session)


def read_db_session() -> AsyncSession:
    """The request's session on the read replica (the primary when none is configured)."""
    state = request_state()
    if state.read_session is None:
        state.read_session = clients().read_sessionmaker()
    return state.read_session


def after_commit(callback: Callable[[], Awaitable[None]]) -> None:
    """Run ``callback`` once the request's transaction has committed, before the response
    is sent (cache invalidation: readers must not see the old version after the response)."""
    request_state().after_commit.append(callback)


def caller() -> Caller | None:
    """The authenticated caller, when the view's ``endpoint`` declared ``auth``."""
    return request_state().caller

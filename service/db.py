"""Database sessions for a request: one ``AsyncSession`` on the primary, one on the replica.

``session()`` returns the request's primary session, created on first use. When the view
returns, the session is committed if the response is a success (status < 400) and rolled
back otherwise, so an error never leaves half a write behind; at teardown it is closed,
which returns its connection to the pool even when the request was cancelled.

``read_session()`` is for reads that may lag slightly (``DATABASE_READ_URL``, the primary when
unset); it never commits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from flask import Flask, Response, current_app, g
from sqlalchemy.ext.asyncio import AsyncSession

from service.bridge import await_
from service.resources import Resources


def resources() -> Resources:
    """The current app's started ``Resources``."""
    res: Resources = current_app.extensions["newsdesk.resources"]
    if not res.started:
        raise RuntimeError("resources are not started: serve the app through service.asgi")
    return res


def _request_session(name: str, read: bool) -> AsyncSession:
    current: AsyncSession | None = g.get(name)
    if current is None:
        res = resources()
        maker = res.read_sessionmaker if read else res.sessionmaker
        assert maker is not None
        current = maker()
        setattr(g, name, current)
    return current


def session() -> AsyncSession:
    """The request's session on the primary (created lazily, no I/O until used)."""
    return _request_session("_db_session", read=False)


def read_session() -> AsyncSession:
    """The request's session on the read replica (the primary when none is configured)."""
    return _request_session("_db_read_session", read=True)


# Both hooks are plain functions that await only when the request used a session, so a
# request that never touches the database pays nothing for them.


def after_commit(callback: Callable[[], Awaitable[None]]) -> None:
    """Run ``callback`` once the request's transaction has committed, before the response
    is sent (cache invalidation: readers must not see the old version after the response)."""
    g.setdefault("_after_commit", []).append(callback)


def _commit_or_roll_back(response: Response) -> Response:
    current: AsyncSession | None = g.get("_db_session")
    if current is not None:
        if response.status_code < 400:
            await_(current.commit())
            for callback in g.pop("_after_commit", []):
                await_(callback())
        else:
            await_(current.rollback())
    return response


def _close_sessions(exc: BaseException | None) -> None:
    for name in ("_db_session", "_db_read_session"):
        current: AsyncSession | None = g.pop(name, None)
        if current is not None:
            await_(current.close())


def init_app(app: Flask) -> None:
    """Install the per-request commit/rollback and close hooks."""
    app.after_request(_commit_or_roll_back)
    app.teardown_request(_close_sessions)

"""One transaction per request: committed with a successful write, rolled back otherwise.

When the view returns, the request's primary session (``service.web.context.db_session``) is
committed if the response is a success (status < 400) to a method that may write, and rolled
back otherwise (an error, or a GET/HEAD/OPTIONS, which never write), so an error never leaves
half a write behind; then the ``after_commit`` callbacks run. At teardown both sessions are
closed, which returns their connections to the pool even when the request was cancelled. A
request that never touched the database pays nothing for either hook.

The connection can die between the view's last query and these hooks (PostgreSQL restarted,
failed over, or the backend was terminated). What the client then gets:

- a rollback (an error answer, or a read) that fails on the dead connection changes nothing:
  the answer the view made is sent, and the connection is discarded (``infra.db_cleanup``);
- a commit that could not be sent (asyncpg knew the connection was closed) wrote nothing:
  503 ``service_unavailable`` with ``Retry-After``, safe to retry;
- a commit whose connection died while it was in flight may or may not have been applied:
  503 ``commit_outcome_unknown`` with ``Retry-After``; the client reads the resource before
  it repeats a write that is not idempotent (``service.web.errors.database_error_response``).
"""

from __future__ import annotations

from flask import Flask, Response, request

from service.greenlet_asgi.bridge import await_
from service.infra import db_cleanup
from service.web.context import existing_request_state
from service.web.errors import database_error_response

# Methods that never write (RFC 9110 safe methods): their transaction is only ever rolled back.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _commit_or_roll_back(response: Response) -> Response:
    state = existing_request_state()
    if state is None or state.db_session is None:
        return response
    session = state.db_session
    if response.status_code >= 400 or request.method in SAFE_METHODS:
        await_(db_cleanup.roll_back(session))
        state.after_commit = []
        return response
    try:
        await_(session.commit())
    except Exception as exc:  # the commit did not happen, or its outcome is unknown
        await_(db_cleanup.roll_back(session))
        state.after_commit = []
        return database_error_response(exc, committing=True)
    callbacks, state.after_commit = state.after_commit, []
    for callback in callbacks:
        await_(callback())
    return response


def _close_sessions(exc: BaseException | None) -> None:
    state = existing_request_state()
    if state is None:
        return
    for current in (state.db_session, state.read_session):
        if current is not None:
            await_(db_cleanup.close(current))
    state.db_session = state.read_session = None


def init_app(app: Flask) -> None:
    """Install the per-request commit/rollback and close hooks."""
    app.after_request(_commit_or_roll_back)
    app.teardown_request(_close_sessions)

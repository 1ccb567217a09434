"""One transaction per request: committed with a successful response, rolled back otherwise.

When the view returns, the request's primary session (``service.web.context.db_session``) is
committed if the response is a success (status < 400) and rolled back otherwise, so an error
never leaves half a write behind; then the ``after_commit`` callbacks run. At teardown both
sessions are closed, which returns their connections to the pool even when the request was
cancelled. A request that never touched the database pays nothing for either hook.
"""

from __future__ import annotations

import contextlib
import logging

from flask import Flask, Response

from service.serving.bridge import await_
from service.web.context import existing_request_state
from service.web.errors import database_error_response

log = logging.getLogger(__name__)


def _commit_or_roll_back(response: Response) -> Response:
    state = existing_request_state()
    if state is None or state.db_session is None:
        return response
    if response.status_code < 400:
        try:
            await_(state.db_session.commit())
        except Exception as exc:  # the commit did not happen (or its outcome is unknown)
            with contextlib.suppress(Exception):
                await_(state.db_session.rollback())
            state.after_commit = []
            return database_error_response(exc)
        callbacks, state.after_commit = state.after_commit, []
        for callback in callbacks:
            await_(callback())
    else:
        await_(state.db_session.rollback())
    return response


def _close_sessions(exc: BaseException | None) -> None:
    state = existing_request_state()
    if state is None:
        return
    for current in (state.db_session, state.read_session):
        if current is not None:
            try:
                await_(current.close())
            except Exception as error:  # a dead connection: the pool replaces it
                log.debug("closing a request's session failed: %r", error)
    state.db_session = state.read_session = None


def init_app(app: Flask) -> None:
    """Install the per-request commit/rollback and close hooks."""
    app.after_request(_commit_or_roll_back)
    app.teardown_request(_close_sessions)

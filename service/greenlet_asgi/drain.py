"""A worker that is stopping: answers say ``Connection: close``, and nothing outlives the grace.

``begin(grace)`` is called once when the worker's shutdown starts (by the server's master,
e.g. Newsdesk's ``service.edge.master``).
From then on:

* every response carries ``Connection: close``, so a keep-alive client opens its next request
  on another worker (or the next instance) instead of this closing one;
* for ``quiesce_seconds`` the worker goes on serving as before (new connections included,
  each answered once with ``Connection: close``), so that a request already sent on a
  kept-alive connection is read before the server closes the connections it sees idle;
* a request still running ``grace - CUT_MARGIN`` seconds later is cut: its task is cancelled
  (its greenlet rolls back and returns its connections), it is answered 503 with
  ``Retry-After`` if nothing was sent yet, and one line logs how many were cut. The cut
  comes just before the server's own graceful timeout, which would otherwise cancel the
  connections itself and end the worker with a traceback.

Requests register themselves while they run (``running``); a task set and one float per
worker, so serving pays a set add and discard per request.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)

CUT_MARGIN = 1.0  # seconds before the server's graceful timeout
QUIESCE_SECONDS = 2.0  # at most, before idle keep-alive connections are closed


def quiesce_seconds(grace: float) -> float:
    """How long a stopping worker keeps serving as before (answers with ``Connection:
    close``) so that requests already sent on kept-alive connections are read, not dropped
    with a connection closed as idle: ``QUIESCE_SECONDS``, at most a quarter of the grace."""
    return min(QUIESCE_SECONDS, grace / 4)


running: set[asyncio.Task[object]] = set()
_cut: set[asyncio.Task[object]] = set()
_started_at: float | None = None


def active() -> bool:
    """True once the worker has started stopping."""
    return _started_at is not None


def begin(grace: float) -> None:
    """The worker stops accepting now; requests get ``grace`` seconds (minus the margin)."""
    global _started_at
    if _started_at is not None:
        return
    _started_at = time.monotonic()
    log.info("stopping: %d request(s) in flight, %.0f s to finish", len(running), grace)
    asyncio.get_running_loop().call_later(max(grace - CUT_MARGIN, 0.0), _cut_the_rest)


def _cut_the_rest() -> None:
    if not running:
        return
    log.warning("%d request(s) still running at the graceful timeout: cut", len(running))
    for task in list(running):
        _cut.add(task)
        task.cancel()


def was_cut(task: asyncio.Task[object]) -> bool:
    """True if ``task`` was cancelled by the cut (not by a disconnect or the server)."""
    return task in _cut

"""Synchronous code that awaits: a greenlet on the event loop, switching back to await.

``run_in_greenlet(fn, ...)`` is a coroutine that runs ``fn`` in a new greenlet whose parent
is the calling asyncio task. Inside ``fn`` (and anything it calls), ``await_(coro)`` switches
back to the task, which awaits ``coro`` on the running loop and switches the result (or the
exception) back in. No thread and no second event loop are involved, so loop-bound pools
(asyncpg, SQLAlchemy, redis.asyncio) are shared by every request.

The greenlet runs in the task's own ``contextvars.Context`` (the same object, not a copy), so
context variables set on either side (Flask's request context, the request id) are seen by
the other, and two requests (two tasks) never see each other's.

A cancellation of the task (a client disconnect, a server shutdown) is thrown into the
greenlet at the ``await_`` it is suspended in; the greenlet's ``finally`` blocks may still
``await_`` (to roll back and return a database connection) before the error propagates.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import greenlet

T = TypeVar("T")

# Idle greenlets kept for reuse, per thread. A new greenlet costs more than its object: on
# Python 3.11+ its first frame maps a fresh 16 KiB frame stack (an mmap and munmap per
# request, plus page faults); a reused one keeps its stack.
MAX_IDLE_GREENLETS = 256
_local = threading.local()


class _BridgeGreenlet(greenlet.greenlet):
    """Marks greenlets started by ``run_in_greenlet``: only they may call ``await_``."""


@dataclass(slots=True)
class _Done:
    """What a bridge greenlet hands back when its job ends (as opposed to an awaitable)."""

    value: Any = None
    error: BaseException | None = None


Job = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def _serve_jobs(job: Job) -> None:
    """A bridge greenlet's body: run a job, hand back its outcome, wait for the next job."""
    while True:
        fn, args, kwargs = job
        try:
            done = _Done(value=fn(*args, **kwargs))
        except greenlet.GreenletExit:
            raise  # the greenlet itself is being discarded
        except BaseException as exc:
            done = _Done(error=exc)
        del fn, args, kwargs
        parent = greenlet.getcurrent().parent
        assert parent is not None
        job = parent.switch(done)


def _idle_greenlets() -> list[_BridgeGreenlet]:
    idle: list[_BridgeGreenlet] | None = getattr(_local, "idle", None)
    if idle is None:
        idle = _local.idle = []
    return idle


def in_bridge_greenlet() -> bool:
    """True when the caller runs inside ``run_in_greenlet`` and may use ``await_``."""
    return isinstance(greenlet.getcurrent(), _BridgeGreenlet)


def await_(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` on the event loop from synchronous code run by ``run_in_greenlet``."""
    current = greenlet.getcurrent()
    if not isinstance(current, _BridgeGreenlet):
        if hasattr(awaitable, "close"):
            awaitable.close()  # no "coroutine was never awaited" warning on misuse
        raise RuntimeError(
            "await_() called outside run_in_greenlet(): async Flask code must be served by "
            "GreenletASGI (or run through service.greenlet_asgi.bridge.run_in_greenlet)"
        )
    parent = current.parent
    assert parent is not None  # a bridge greenlet always has its driving task as parent
    return cast(T, parent.switch(awaitable))


async def run_in_greenlet(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in a greenlet on this task, serving its ``await_`` calls."""
    driver = greenlet.getcurrent()
    idle = _idle_greenlets()
    if idle:
        child = idle.pop()
        child.parent = driver
    else:
        child = _BridgeGreenlet(_serve_jobs, driver)
    child.gr_context = driver.gr_context  # share the task's context, see the module docstring
    request = child.switch((fn, args, kwargs))
    while not isinstance(request, _Done):
        try:
            value = await request
        except BaseException as exc:
            request = child.throw(exc)
        else:
            request = child.switch(value)
    child.gr_context = None  # hold nothing of this request while idle
    if len(idle) < MAX_IDLE_GREENLETS:
        idle.append(child)
    if request.error is not None:
        error, request.error = request.error, None
        raise error
    return cast(T, request.value)

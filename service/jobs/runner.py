"""What every job runs inside: its ids in every log line, its outcome counted.

``job`` wraps a job function so its log lines carry its arq job id and the id of the request
that caused it (``service.core.logs``), and counts its outcome (``completed``, ``retried``,
``failed``, ``cancelled``: timed out or stopped) with its duration and the queue of the worker
that ran it in the worker's metrics (``service.jobs.metrics``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from arq import Retry

from service.core.logs import current_job_id
from service.core.request_id import current_request_id
from service.infra import tracing
from service.jobs.metrics import record_job

log = logging.getLogger(__name__)

R = TypeVar("R")


def job(func: Callable[..., Awaitable[R]]) -> Callable[..., Coroutine[Any, Any, R]]:
    """Run ``func(ctx, ...)`` with its job id and originating request id in every log line.

    The job receives ``request_id`` and, with tracing on, ``traceparent`` as keywords (added
    by ``enqueue``); ``func`` does not."""

    name = func.__name__

    async def counted(ctx: dict[str, Any], *args: Any, request_id: str = "-", **kwargs: Any) -> R:
        # arq runs each job in a task of its own: these context variables stay with it.
        current_request_id.set(request_id)
        current_job_id.set(str(ctx.get("job_id", "-")))
        # The worker's own connection knows its queue (arq sets ctx["redis"] per worker).
        queue = getattr(ctx.get("redis"), "default_queue_name", None)
        started = time.perf_counter()
        try:
            result = await func(ctx, *args, **kwargs)
        except Retry:
            record_job(name, "retried", started, queue)
            raise
        except Exception:
            record_job(name, "failed", started, queue)
            raise
        except BaseException:  # cancelled: arq's job timeout, or the worker stopping
            record_job(name, "cancelled", started, queue)
            raise
        record_job(name, "completed", started, queue)
        return result

    @functools.wraps(func)
    async def run(
        ctx: dict[str, Any], *args: Any, traceparent: str | None = None, **kwargs: Any
    ) -> R:
        # With tracing on, a consumer span whose parent is the enqueueing request's span
        # (``traceparent``, added by ``enqueue``); the job's SQL and Redis spans go under it.
        traced: tracing.Tracing = ctx.get("tracing", tracing.OFF)
        with traced.job_span(
            name,
            traceparent,
            job_id=str(ctx.get("job_id", "-")),
            job_try=int(ctx.get("job_try", 1)),
            expected=(Retry,),
        ):
            return await counted(ctx, *args, **kwargs)

    return run

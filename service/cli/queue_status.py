"""``python -m service queue [--json]``: how far behind the background work is, now.

One table, read from ``REDIS_URL`` in one round trip (``service.infra.backlog``, the same
figures as the worker's ``/metrics`` and the ``/readyz`` body): per job queue its depth (ready
now, deferred to later), the age of its oldest ready job and whether a worker of it is
running; then the view-flush lag. A queue whose oldest job has waited longer than
``QUEUE_BACKLOG_WARN_SECONDS`` (60) is marked ``BACKLOG``: on the bulk queue, add bulk
workers (README, Operations). ``--json`` prints the same as one JSON object.

Exit status 0 whatever the backlog; 1, with one line on stderr, when Redis cannot be read or
the configuration is invalid.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


def render(detail: dict[str, Any], warn_seconds: int) -> str:
    """The table ``python -m service queue`` prints for ``Backlog.as_dict``."""
    header = ("queue", "depth", "ready", "deferred", "oldest job", "running", "")
    rows = [header]
    for name, queue in detail["queues"].items():
        rows.append(
            (
                name,
                str(queue["depth"]),
                str(queue["ready"]),
                str(queue["deferred"]),
                _age(queue["oldest_job_age_seconds"]),
                "yes" if queue["running"] else "no",
                "BACKLOG" if queue["backlog"] else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if i in (0, 5, 6) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    views = detail["views"]
    lag = views["oldest_pending_seconds"]
    if lag == 0:
        flush = "no view waiting to be flushed"
    elif lag is None:
        flush = f"{views['pending_articles']} article(s) with views waiting, no flush yet"
    else:
        flush = (
            f"{views['pending_articles']} article(s) with views waiting, "
            f"the oldest view at most {_age(lag)} old"
        )
    lines.append("")
    lines.append(
        f"view flush lag: {_age(lag)} ({flush})" + ("  BACKLOG" if views["backlog"] else "")
    )
    backlogged = [name for name, queue in detail["queues"].items() if queue["backlog"]]
    lines.append(
        f"BACKLOG: oldest job older than QUEUE_BACKLOG_WARN_SECONDS={warn_seconds}s"
        + (f" on {', '.join(backlogged)}" if backlogged else "")
        + (
            "; add workers of that role (or raise its max_jobs) if it lasts"
            if backlogged
            else " (none now)"
        )
    )
    stopped = [name for name, queue in detail["queues"].items() if not queue["running"]]
    if stopped:
        lines.append(f"no worker running for: {', '.join(stopped)}")
    return "\n".join(lines)


async def _read() -> tuple[dict[str, Any], int]:
    from service.core.settings import Settings
    from service.infra.backlog import read_backlog
    from service.infra.resources import close_redis, make_redis

    settings = Settings()
    redis = make_redis(settings)
    try:
        async with asyncio.timeout(max(10.0, settings.readiness_timeout)):
            backlog = await read_backlog(redis)
    finally:
        await close_redis(redis)
    warn = settings.queue_backlog_warn_seconds
    return {**backlog.as_dict(warn), "backlog_warn_seconds": warn, "read_at": backlog.read_at}, warn


def run(as_json: bool) -> int:
    from pydantic import ValidationError

    from service.core.errors import REDIS_FAILURES

    try:
        with asyncio.Runner() as runner:
            detail, warn = runner.run(_read())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'input'}: {error['msg']}"
            for error in exc.errors()
        )  # never the values: they may be secrets
        print(f"invalid configuration: {problems}", file=sys.stderr)
        return 1
    except REDIS_FAILURES as exc:
        print(f"Redis unavailable: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    print(json.dumps(detail, indent=2) if as_json else render(detail, warn))
    return 0

"""Liveness and readiness probes, and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request

from service.infra import exposition
from service.infra import metrics as process_metrics
from service.infra.backlog import backlog_detail
from service.infra.health import OPTIONAL, check_dependencies
from service.infra.resources import Resources
from service.web.context import readiness, resources
from service.web.errors import error_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers. No I/O, so a slow dependency never restarts the pod."""
    return jsonify(status="ok")


@bp.get("/readyz")
async def readyz() -> Response:
    """Readiness: PostgreSQL (primary and read) and Redis answer within a short timeout (a
    cache Redis of its own, CACHE_REDIS_URL, is reported but never makes the API unready).

    A ready body also shows the job queues and the view-flush lag (``service.infra.backlog``):
    for the operator to read, never a reason to fail, since a backlog is not cured by taking
    the API out of its load balancer (``queues`` and ``views`` are left out when Redis did
    not answer that read in time).

    Answered from a result at most READINESS_CACHE_SECONDS old; concurrent calls share the
    check in flight, so a burst of probes runs one round of checks per process."""
    res = resources()
    checks, backlog = await readiness().get(
        lambda: _check(res), res.settings.readiness_cache_seconds
    )
    down = [name for name, state in checks.items() if state != "ok" and name not in OPTIONAL]
    if down:
        response = error_response(
            503,
            "not_ready",
            "Not ready: " + ", ".join(down) + (" is" if len(down) == 1 else " are") + " down.",
            [{"dependency": name, "state": state} for name, state in checks.items()],
        )
        response.headers["Retry-After"] = "5"
        return response
    return jsonify(status="ready", checks=checks, **backlog)


async def _check(res: Resources) -> tuple[dict[str, str], dict[str, Any]]:
    """The dependency states and the backlog figures, read concurrently."""
    return await asyncio.gather(
        check_dependencies(res),
        backlog_detail(
            res.redis, res.settings.readiness_timeout, res.settings.queue_backlog_warn_seconds
        ),
    )


@bp.get("/metrics")
async def metrics() -> Response:
    """Prometheus metrics of the whole instance, every Hypercorn worker summed
    (``service.infra.metrics``), in the text format (OpenMetrics when the scraper asks).

    No I/O beyond the metrics files, so a scrape answers while PostgreSQL or Redis is down.
    404 when ``METRICS_ENABLED`` is off."""
    res = resources()
    if not res.settings.metrics_enabled:
        abort(404)
    process_metrics.sample(res)  # this worker's pool figures as of now
    body, content_type = await asyncio.to_thread(exposition.render, request.headers.get("Accept"))
    return Response(body, content_type=content_type)

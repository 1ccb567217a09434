"""Liveness and readiness probes, and Prometheus metrics.

Each answers with a response of its own (a probe's JSON, the Prometheus text) and reads no
query string: a load balancer's probe gets its answer whatever it appends."""

from __future__ import annotations

import asyncio
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request

from service.core import routes
from service.domain.schemas import Liveness, Readiness
from service.infra import exposition
from service.infra import sampler as process_metrics
from service.infra.backlog import backlog_detail
from service.infra.health import OPTIONAL, check_dependencies
from service.infra.resources import Resources
from service.web.context import readiness, resources
from service.web.endpoint import Answer, RawBody, endpoint
from service.web.errors import error_response

bp = Blueprint("health", __name__)

TAGS = ("operations",)
NOT_READY = Answer(
    description="Not ready: the details name each dependency and its state",
    code="not_ready",
    message="Not ready: redis is down.",
    details=[
        {"dependency": "database", "state": "ok"},
        {"dependency": "redis", "state": "timeout"},
    ],
)
METRICS_OFF = Answer(
    description="Metrics are off (`METRICS_ENABLED=false`)",
    code="not_found",
    message="Metrics are off.",
)
PROMETHEUS_TEXT = RawBody(
    media_types=("text/plain", "application/openmetrics-text"),
    example=(
        "# HELP http_requests_total Requests answered, by route, method and status.\n"
        "# TYPE http_requests_total counter\n"
        f'http_requests_total{{method="GET",route="{routes.ARTICLES}",status="200"}} 1027.0\n'
    ),
)


@bp.get("/healthz")
@endpoint(response=Liveness, tags=TAGS, extra_query="ignore")
async def healthz() -> Response:
    """Liveness: the process answers. No I/O, so a slow dependency never restarts the pod."""
    return jsonify(status="ok")


@bp.get("/readyz")
@endpoint(response=Readiness, answers={503: NOT_READY}, tags=TAGS, extra_query="ignore")
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
@endpoint(response=PROMETHEUS_TEXT, answers={404: METRICS_OFF}, tags=TAGS, extra_query="ignore")
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

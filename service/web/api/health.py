"""Liveness and readiness probes, and Prometheus metrics.

Each answers with a response of its own (a probe's JSON, the Prometheus text) and reads no
query string: a load balancer's probe gets its answer whatever it appends."""

from __future__ import annotations

import asyncio

from flask import Blueprint, Response, abort, jsonify, request

from service.core import routes
from service.domain.schemas import Liveness, Readiness
from service.greenlet_asgi import drain
from service.infra import exposition
from service.infra import sampler as process_metrics
from service.infra.backlog import backlog_detail
from service.infra.health import ReadinessRound, check_dependencies, schema_state
from service.infra.metrics import DEPENDENCY_UP, SCHEMA_BEHIND
from service.infra.resources import Resources
from service.web.context import readiness, resources
from service.web.endpoint import Answer, RawBody, endpoint
from service.web.errors import error_response

bp = Blueprint("health", __name__)

TAGS = ("operations",)
NOT_READY = Answer(
    description="This instance cannot serve: not started, stopping, its event loop stalled, or "
    "the database's schema behind this code's migrations (the details name the condition); a "
    "shared dependency being down never makes it unready",
    code="not_ready",
    message="Not ready: stopping.",
    details=[{"condition": "draining", "state": "stopping"}],
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
    """Readiness of this instance: started, not stopping, its event loop not stalled
    (its worst delay of the last second under READINESS_MAX_LOOP_LAG), and the database's
    schema not behind the code's migrations (``service.infra.schema``: code deployed before
    its migration ran waits, unready, instead of failing requests). Otherwise 503
    ``not_ready``, the details naming the condition.

    The shared dependencies (PostgreSQL, its read URL, Redis, a cache Redis of its own) are
    reported, never a reason to be unready: they are shared by every instance, so failing on
    them would take every instance out of the load balancer at once and turn the degraded
    service (cached articles while PostgreSQL is down, reads from PostgreSQL while Redis is
    down) into no service. ``status`` is ``degraded`` while any of them is not ``ok``; the
    states are also the ``dependency_up`` metric.

    A body also shows the job queues and the view-flush lag (``service.infra.backlog``), for
    the operator (``queues`` and ``views`` are left out when Redis did not answer in time).
    The dependency states come from a result at most READINESS_CACHE_SECONDS old; concurrent
    calls share the check in flight, so a burst of probes runs one round of checks per
    process."""
    res = resources()
    unready = _instance_conditions(res)
    if unready:
        return _not_ready(unready)
    found = await readiness().get(lambda: _check(res), res.settings.readiness_cache_seconds)
    for name, state in found.checks.items():
        DEPENDENCY_UP.labels(name).set(state == "ok")
    schema = found.schema
    SCHEMA_BEHIND.set(schema.state == "behind")
    if schema.state == "behind":
        return _not_ready({"schema": schema.describe()})
    status = "ready" if all(state == "ok" for state in found.checks.values()) else "degraded"
    migrations = {"state": schema.state, "database": schema.database, "code": schema.code}
    return jsonify(status=status, checks=found.checks, migrations=migrations, **found.backlog)


def _not_ready(conditions: dict[str, str]) -> Response:
    response = error_response(
        503,
        "not_ready",
        "Not ready: " + "; ".join(conditions.values()) + ".",
        [{"condition": name, "state": state} for name, state in conditions.items()],
    )
    response.headers["Retry-After"] = "5"
    return response


def _instance_conditions(res: Resources) -> dict[str, str]:
    """What keeps this instance from serving, by condition: not started, stopping (its master
    began the drain), its event loop stalled. Empty when it can serve."""
    found: dict[str, str] = {}
    if not res.started:
        found["started"] = "not started"
    if drain.active():
        found["draining"] = "stopping"
    lag = res.guard.lag
    worst = max(lag.recent_worst, lag.current())
    if worst > res.settings.readiness_max_loop_lag:
        found["event_loop"] = f"event loop stalled ({worst:.1f} s behind)"
    return found


async def _check(res: Resources) -> ReadinessRound:
    """The dependency states, the backlog figures and the schema, read concurrently."""
    checks, backlog, schema = await asyncio.gather(
        check_dependencies(res),
        backlog_detail(
            res.redis, res.settings.readiness_timeout, res.settings.queue_backlog_warn_seconds
        ),
        schema_state(res),
    )
    return ReadinessRound(checks, backlog, schema)


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

"""Liveness and readiness probes, and metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service.core.errors import REDIS_FAILURES
from service.infra.health import check_dependencies
from service.infra.queue import job_stats
from service.web.context import resources
from service.web.errors import error_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers. No I/O, so a slow dependency never restarts the pod."""
    return jsonify(status="ok")


@bp.get("/readyz")
async def readyz() -> Response:
    """Readiness: PostgreSQL (primary and read) and Redis answer within a short timeout."""
    checks = await check_dependencies(resources())
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        response = error_response(
            503,
            "not_ready",
            "Not ready: " + ", ".join(down) + (" is" if len(down) == 1 else " are") + " down.",
            [{"dependency": name, "state": state} for name, state in checks.items()],
        )
        response.headers["Retry-After"] = "5"
        return response
    return jsonify(status="ready", checks=checks)


@bp.get("/metrics")
async def metrics() -> Response:
    """Counters for a metrics scraper (JSON): this process's cache hits, misses and bypasses
    per endpoint; job outcomes per function (all workers) and the queue depth, or an error
    note while Redis is unreachable."""
    res = resources()
    assert res.cache is not None
    try:
        jobs: dict[str, object] = await job_stats(res)
    except REDIS_FAILURES as exc:
        jobs = {"error": f"Redis unavailable: {type(exc).__name__}"}
    return jsonify(cache=res.cache.stats.snapshot(), jobs=jobs)

"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service.db import resources
from service.errors import error_response
from service.health import check_dependencies

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

"""Response hardening: security headers on every response, ``no-store`` for authenticated
callers, CORS when configured."""

from __future__ import annotations

from flask import Flask, Response
from flask_cors import CORS

from service.core.settings import Settings
from service.core.types import SECURITY_HEADERS
from service.web import context

__all__ = ["SECURITY_HEADERS", "init_app"]


def _no_store_when_authenticated(response: Response) -> Response:
    state = context.existing_request_state()
    if state is not None and state.caller is not None:  # never cache what was served to a caller
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask, settings: Settings) -> None:
    app.after_request(_no_store_when_authenticated)
    if settings.cors_origins:
        # flask-cors: no I/O, only headers; off unless CORS_ORIGINS is set.
        CORS(
            app,
            resources={r"/api/*": {"origins": settings.cors_origins}},
            allow_headers=[
                "Content-Type",
                "Authorization",
                "API-Key",
                "If-Match",
                "If-None-Match",
                "X-Request-ID",
            ],
            expose_headers=[
                "ETag",
                "Location",
                "X-Request-ID",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "Retry-After",
            ],
        )

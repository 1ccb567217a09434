"""Response hardening: security headers on every response, CORS when configured."""

from __future__ import annotations

from flask import Flask, Response, g
from flask_cors import CORS

from service.settings import Settings


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if g.get("caller") is not None:  # never cache what was served to an authenticated caller
        headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask, settings: Settings) -> None:
    app.after_request(_security_headers)
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

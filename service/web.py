"""Response hardening: security headers on every response, ``no-store`` for authenticated
callers, CORS when configured."""

from __future__ import annotations

from flask import Flask, Response, g
from flask_cors import CORS

from service.settings import Settings

# Added by the ASGI adapter to every response that does not set them (service.asgi), so
# they also cover answers made outside Flask (413 before the body, a last-resort 500).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


def _no_store_when_authenticated(response: Response) -> Response:
    if g.get("caller") is not None:  # never cache what was served to an authenticated caller
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

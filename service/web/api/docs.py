"""The API contract, machine- and human-readable: ``/api/v1/openapi.json`` and ``/docs``.

The interactive docs are Swagger UI served from the ``openapi-ui-bundles`` package, so they
work without any network access.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from flask import Blueprint, Response, send_from_directory
from openapi_ui_bundles.swagger_ui import static_path

from service.core import routes
from service.web import context
from service.web.openapi import build_document

bp = Blueprint("docs", __name__)

DESCRIPTION = (
    "Newsdesk: users, API keys, login sessions and articles. Every error answers with "
    '`{"error": {"code", "message", "details"?, "request_id"}}`. Write endpoints take an '
    "`API-Key` header or `Authorization: Bearer <API key or session token>`; managing API "
    "keys and logging out take a session token only (`Authorization: Bearer`, from "
    "`POST /api/v1/auth/login`). Every response carries `X-Request-ID`. A method a path "
    "does not take answers 405 with `Allow` (`components/responses/MethodNotAllowed`); an id "
    "that cannot exist (0, or beyond 9223372036854775807) is a 404 for every method, as an id "
    "that does not. A body larger than the server's limit is a 413 before it is read."
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Newsdesk API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "{OPENAPI_DOCUMENT}", dom_id: "#ui", deepLinking: true});</script>
</body></html>
""".replace("{OPENAPI_DOCUMENT}", routes.OPENAPI_DOCUMENT)


async def document() -> dict[str, Any]:
    """The document, built once per process. Building it takes about a second of CPU the
    first time (the patterns spelled out by ``service.domain.portable_patterns``), so it is
    built in a thread: the event loop keeps serving meanwhile."""
    state = context.app_state()
    if state.openapi is None:
        state.openapi = await asyncio.to_thread(
            build_document,
            context.app(),
            title="Newsdesk API",
            version="1.0.0",
            description=DESCRIPTION,
        )
    return state.openapi


@bp.get(routes.OPENAPI_DOCUMENT)
async def openapi_json() -> Response:
    return Response(orjson.dumps(await document()), mimetype="application/json")


@bp.get("/docs")
def docs_page() -> Response:
    response = Response(PAGE, mimetype="text/html")
    # The page loads its own script and style only.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'"
    )
    return response


@bp.get("/docs/static/<path:filename>")
def docs_static(filename: str) -> Response:
    return send_from_directory(static_path, filename, max_age=86400)

"""The example of every answer in the OpenAPI document: success bodies built as instances of
their response models (so each is valid by construction, and a test checks it against the
document), and one error envelope per status.

The values tell one story, the README's: Ada registers, logs in, makes an API key, publishes
an article and pages through the list.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from service.core.types import ArticleStatus
from service.domain.schemas import (
    EXAMPLE_EMAIL,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyPublic,
    ArticleCursorPage,
    ArticleListPage,
    ArticlePage,
    ArticlePublic,
    ArticleSummary,
    ArticleViews,
    Author,
    Liveness,
    PasswordResetAccepted,
    PopularArticles,
    Readiness,
    SessionToken,
    UserPublic,
)

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
REQUEST_ID = "6f1c2a9e4b7d4c0a"
CURSOR = "MjAyNi0xMi0wMVQwOTozMDowMCswMDowMHw0Mg"
KEY = "nd_" + "x" * 44 + "Ab1c"

_user = UserPublic(id=7, email=EXAMPLE_EMAIL, name="Ada Lovelace", created_at=AT)
_key = ApiKeyPublic(id=3, name="ci-deploy", prefix="nd_xxxxx", created_at=AT)
_author = Author(id=7, name="Ada Lovelace")
_fields: dict[str, Any] = {
    "id": 42,
    "title": "Harbour ferries return to the summer timetable",
    "summary": "From Monday the harbour ferries run every 20 minutes until midnight.",
    "keywords": ["harbour ferries", "summer timetable"],
    "tags": ["transport", "harbour"],
    "status": ArticleStatus.PROCESSED,
    "processing_error": None,
    "author": _author,
    "published_at": AT,
    "updated_at": AT + timedelta(minutes=5),
    "version": 2,
}
_summary = ArticleSummary(**_fields, views=128)
_article = ArticlePublic(
    **_fields, content="From Monday the harbour ferries run every 20 minutes until midnight."
)

# Response model -> the example of its body.
SUCCESS: dict[type[BaseModel], BaseModel] = {
    UserPublic: _user,
    SessionToken: SessionToken(token="s3ss10n-t0ken-example", expires_at=AT + timedelta(days=7)),
    ApiKeyCreated: ApiKeyCreated(**_key.model_dump(), key=KEY),
    ApiKeyList: ApiKeyList(api_keys=[_key]),
    ArticlePublic: _article,
    ArticleViews: ArticleViews(id=42, views=128),
    PopularArticles: PopularArticles(articles=[_summary]),
    PasswordResetAccepted: PasswordResetAccepted(),
    Liveness: Liveness(),
    Readiness: Readiness(checks={"database": "ok", "database_read": "ok", "redis": "ok"}),
}
# Models whose answer takes more than one shape: a named example of each.
NAMED: dict[type[BaseModel], dict[str, tuple[str, BaseModel]]] = {
    ArticleListPage: {
        "offset": (
            "An offset page (`page`)",
            ArticlePage(
                articles=[_summary],
                total=1,
                total_is_estimate=False,
                pages=1,
                current_page=1,
                next_cursor=None,
            ),
        ),
        "cursor": (
            "A keyset page (`cursor`)",
            ArticleCursorPage(articles=[_summary], next_cursor=CURSOR),
        ),
    }
}

METRICS = (
    "# HELP http_requests_total Requests answered, by route, method and status.\n"
    "# TYPE http_requests_total counter\n"
    'http_requests_total{method="GET",route="/api/v1/articles",status="200"} 1027.0\n'
)

# Status -> (code, message, details) of the error envelope's example.
ERRORS: dict[int, tuple[str, str, list[dict[str, Any]] | None]] = {
    400: ("malformed_json", "The body is not valid JSON: unexpected character.", None),
    401: ("unauthorized", "Missing or invalid credentials.", None),
    403: ("forbidden", "Only the author may change this article.", None),
    404: ("not_found", "Article 42 does not exist.", None),
    405: ("method_not_allowed", "The method is not allowed for the requested URL.", None),
    409: ("conflict", "An account with this e-mail exists already.", None),
    412: ("precondition_failed", "The article changed since you read it.", None),
    413: ("request_entity_too_large", "The request body is larger than 1048576 bytes.", None),
    415: ("unsupported_media_type", "The body must be JSON (application/json).", None),
    422: (
        "validation_error",
        "The request is not valid.",
        [{"loc": ["body", "title"], "message": "Field required", "type": "missing"}],
    ),
    429: ("rate_limited", "Too many requests; try again later.", None),
    503: ("service_unavailable", "A dependency is unavailable; try again shortly.", None),
}
# The probes' own errors.
PROBE_ERRORS = {
    404: ("not_found", "Metrics are off.", None),
    503: (
        "not_ready",
        "Not ready: redis is down.",
        [{"dependency": "database", "state": "ok"}, {"dependency": "redis", "state": "timeout"}],
    ),
}


def success(model: type[BaseModel]) -> dict[str, Any]:
    """The ``example`` or ``examples`` of a media type whose schema is ``model``."""
    if model in NAMED:
        return {
            "examples": {
                name: {"summary": summary, "value": value.model_dump(mode="json")}
                for name, (summary, value) in NAMED[model].items()
            }
        }
    return {"example": SUCCESS[model].model_dump(mode="json")}


def error(status: int, *, probe: bool = False) -> dict[str, Any]:
    """The error envelope's ``example`` for ``status``."""
    code, message, details = (PROBE_ERRORS if probe else ERRORS)[status]
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    body["request_id"] = REQUEST_ID
    return {"example": {"error": body}}

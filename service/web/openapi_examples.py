"""The example of every answer in the OpenAPI document: success bodies built as instances of
their response models (so each is valid by construction, and a test checks it against the
document), and one error envelope per status, from the error that answers it
(``service.web.errors.documented``).

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
    Migrations,
    PasswordResetAccepted,
    PopularArticles,
    Readiness,
    SessionToken,
    UserPublic,
)
from service.web.errors import documented

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
    Readiness: Readiness(
        checks={"database": "ok", "database_read": "ok", "redis": "ok"},
        migrations=Migrations(state="current", database="0003", code="0003"),
    ),
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


def error(status: int) -> dict[str, Any]:
    """The error envelope's ``example`` for ``status`` (``service.web.errors.documented``)."""
    found = documented(status)
    assert found is not None, f"no error documented for {status}"
    return envelope(found.code, found.message, found.details)


def envelope(code: str, message: str, details: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The ``example`` of an error envelope."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    body["request_id"] = REQUEST_ID
    return {"example": {"error": body}}

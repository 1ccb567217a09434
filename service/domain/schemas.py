"""pydantic models: the single source for request validation, response shape and the OpenAPI
document. Inputs forbid unknown fields; every string input has a length bound.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

from service.core.types import MAX_ID, ArticleStatus


class Input(BaseModel):
    """Base of request bodies and query strings: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold U+0000: refuse it here rather than fail at the insert.
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ValueError("must not contain NUL (U+0000) characters")
        return value


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    # True for a response holding a credential (a session token, an API key): it is sent
    # with ``Cache-Control: no-store`` (``service.web.endpoint``).
    carries_credential: ClassVar[bool] = False


def _normalise_email(value: str) -> str:
    # EmailStr normalises the domain; the whole address is compared case-insensitively.
    return value.lower()


Email = Annotated[EmailStr, AfterValidator(_normalise_email), Field(max_length=254)]
Password = Annotated[str, Field(min_length=10, max_length=128)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Tag = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        min_length=1,
        max_length=40,
        pattern=r"^[\w][\w .+#-]*$",
    ),
]


def _example(**fields: Any) -> ConfigDict:
    """A request body's example in its schema: what the interactive docs send, accepted as is.
    (The e-mail and password are the same throughout: register, then log in.)"""
    return ConfigDict(json_schema_extra={"examples": [fields]})


EXAMPLE_EMAIL = "ada@example.com"
EXAMPLE_PASSWORD = "correct horse battery staple"


# --- errors ---------------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str
    details: list[dict[str, Any]] | None = None
    request_id: str


class ErrorEnvelope(BaseModel):
    """Every error response."""

    error: ErrorBody


# --- users and credentials --------------------------------------------------------------


class UserCreate(Input):
    model_config = _example(email=EXAMPLE_EMAIL, password=EXAMPLE_PASSWORD, name="Ada Lovelace")

    email: Email
    password: Password
    name: Name


class UserPublic(Output):
    id: int
    email: str
    name: str
    created_at: datetime


class LoginRequest(Input):
    model_config = _example(email=EXAMPLE_EMAIL, password=EXAMPLE_PASSWORD)

    email: Email
    password: Annotated[str, Field(min_length=1, max_length=128)]


class SessionToken(Output):
    carries_credential: ClassVar[bool] = True

    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime


class ApiKeyCreate(Input):
    model_config = _example(name="ci-deploy")

    name: Name


class ApiKeyPublic(Output):
    id: int
    name: str
    prefix: str
    created_at: datetime


class ApiKeyCreated(ApiKeyPublic):
    carries_credential: ClassVar[bool] = True

    key: str = Field(description="The key itself. It is shown this once and never again.")


class ApiKeyList(Output):
    api_keys: list[ApiKeyPublic]


# --- articles ---------------------------------------------------------------------------

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Content = Annotated[str, StringConstraints(min_length=1, max_length=100_000)]
Tags = Annotated[list[Tag], Field(max_length=10)]


def _unique(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))


class ArticleCreate(Input):
    model_config = _example(
        title="Harbour ferries return to the summer timetable",
        content="From Monday the harbour ferries run every 20 minutes until midnight.",
        tags=["transport", "harbour"],
    )

    title: Title
    content: Content
    tags: Tags = []

    _dedupe = field_validator("tags")(_unique)


class ArticleUpdate(Input):
    """Any subset of the fields; at least one."""

    model_config = _example(title="Harbour ferries keep the summer timetable until October")

    title: Title | None = None
    content: Content | None = None
    tags: Tags | None = None

    _dedupe = field_validator("tags")(lambda tags: _unique(tags) if tags is not None else None)

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude_none=True)


class Author(Output):
    id: int
    name: str


class ArticleFields(Output):
    """What every representation of an article holds."""

    id: int
    title: str
    summary: str | None
    keywords: list[str]
    tags: list[str]
    status: ArticleStatus
    processing_error: str | None = None  # why processing failed, when status is failed
    author: Author
    published_at: datetime
    updated_at: datetime
    version: int


VIEWS_IN_LISTS = (
    "Views counted when this list was cached (up to CACHE_TTL_LIST seconds earlier, "
    "CACHE_TTL_POPULAR for the popular ranking, which is refreshed at every view flush); "
    "GET /articles/{id}/views has the current count."
)


class ArticleSummary(ArticleFields):
    """An article in a list: everything but its content, with its view count."""

    views: int = Field(description=VIEWS_IN_LISTS)


class ArticlePublic(ArticleFields):
    """One article. Its view count is not part of it (a view is not an edit: reading an
    article does not change it, so its ETag and cached copies stay valid); see
    ``ArticleViews``."""

    content: str


class ArticleViews(Output):
    """An article's view count: those in PostgreSQL plus those not flushed there yet."""

    id: int
    views: int


class ArticleListQuery(Input):
    page: Annotated[int, Field(ge=1, le=10_000)] | None = None
    per_page: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    author_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None
    tag: Tag | None = None
    q: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
        | None
    ) = None


NEXT_CURSOR = "The cursor of the next page; null on the last page (nothing follows)."


class ArticlePage(Output):
    """Offset pagination (``page``, ``per_page``), the guide's shape, plus a cursor to go on."""

    articles: list[ArticleSummary]
    total: int
    total_is_estimate: bool
    pages: int
    current_page: int
    next_cursor: str | None = Field(description=NEXT_CURSOR)


class ArticleCursorPage(Output):
    """Keyset pagination (``cursor``): constant cost however deep."""

    articles: list[ArticleSummary]
    next_cursor: str | None = Field(description=NEXT_CURSOR)


class PopularArticles(Output):
    articles: list[ArticleSummary]


# --- password reset ----------------------------------------------------------------------


class PasswordResetRequest(Input):
    model_config = _example(email=EXAMPLE_EMAIL)

    email: Email


class PasswordResetAccepted(Output):
    """The same answer whether or not the e-mail has an account."""

    status: Literal["accepted"] = "accepted"
    message: str = "If an account has this e-mail, a message with a reset link is on its way."


class PasswordResetConfirm(Input):
    # The token comes from the e-mail: this one is well formed but not genuine (400).
    model_config = _example(
        token="eyJ1IjoxLCJmIjoiMDAwMCIsImUiOjB9.Zm9yZ2Vk", new_password="a brand new passphrase"
    )

    token: Annotated[str, StringConstraints(min_length=1, max_length=512)] = Field(
        description="The token from the reset e-mail."
    )
    new_password: Password


# --- operations ----------------------------------------------------------------------------


class Liveness(Output):
    """``/healthz``: the process answers."""

    status: Literal["ok"] = "ok"


class Readiness(Output):
    """``/readyz`` when every dependency answers (a 503 error names the ones down)."""

    status: Literal["ready"] = "ready"
    checks: dict[str, Literal["ok"]] = Field(
        examples=[{"database": "ok", "database_read": "ok", "redis": "ok"}]
    )

"""pydantic models: the single source for request validation, response shape and the OpenAPI
document. Inputs forbid unknown fields; every string input has a length bound.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    RootModel,
    StringConstraints,
    field_validator,
    model_validator,
)

from service.core.types import MAX_ID, ArticleStatus
from service.domain.portable_patterns import shown_as
from service.domain.search import word_character


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
    # Every field is in every response, defaults included: the schema marks them required, so
    # a generated client reads them as always there.
    model_config = ConfigDict(
        from_attributes=True, json_schema_serialization_defaults_required=True
    )

    # True for a response holding a credential (a session token, an API key): it is sent
    # with ``Cache-Control: no-store`` (``service.web.endpoint``).
    carries_credential: ClassVar[bool] = False


def _normalise_email(value: str) -> str:
    # EmailStr normalises the domain; the whole address is compared case-insensitively.
    return value.lower()


Email = Annotated[EmailStr, AfterValidator(_normalise_email), Field(max_length=254)]
Password = Annotated[str, Field(min_length=10, max_length=128)]
# Unicode White_Space, listed: a text input is checked as sent (its length, and that it holds
# something besides these), then these are stripped from its ends. Listed rather than `\s`
# or `str.strip()`, whose sets differ between ECMA-262, Python and Rust: the pattern below
# means the same to the server (pydantic-core, Rust) and to any JSON Schema validator.
WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)
NOT_BLANK = "[^" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "]"


def _strip(value: str) -> str:
    return value.strip(WHITESPACE)


# A text input: at most so many characters as sent, at least one of them not white space;
# surrounding white space is then removed.
Name = Annotated[str, Field(max_length=100, pattern=NOT_BLANK), AfterValidator(_strip)]

# C0 controls, DEL and C1 controls (CR and LF among them). A user's name holds none: it is
# shown to everyone (as an article's author) and written into mails (password reset).
CONTROL_CHARACTERS = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))
_CONTROLS = "\\u0000-\\u001f\\u007f-\\u009f"
_SPACES = "".join(f"\\u{ord(c):04x}" for c in WHITESPACE if c not in CONTROL_CHARACTERS)
# The whole name: characters other than controls, at least one of them not white space.
USER_NAME_PATTERN = f"^[^{_CONTROLS}]*[^{_CONTROLS}{_SPACES}][^{_CONTROLS}]*$"


def _no_control_characters(value: Any) -> Any:
    # Said in words before the pattern (the schema's statement of the same rule) is tried.
    if isinstance(value, str) and any(c in CONTROL_CHARACTERS for c in value):
        raise ValueError("must not contain control characters (U+0000-U+001F, U+007F-U+009F)")
    return value


UserName = Annotated[
    str,
    Field(max_length=100, pattern=USER_NAME_PATTERN),
    BeforeValidator(_no_control_characters),
    AfterValidator(_strip),
]


def without_control_characters(text: str) -> str:
    """``text`` with every C0, DEL and C1 control character removed: for user text placed
    where a line break or an escape sequence would change its meaning (a mail's text)."""
    return text.translate(_DROP_CONTROLS)


_DROP_CONTROLS = dict.fromkeys(map(ord, CONTROL_CHARACTERS))
# A word's characters: Unicode letters and digits by their general category, and `_` (`\w`
# would be Unicode to the server and ASCII to ECMA-262). The server's engine (pydantic-core's)
# reads `\p{..}`; the document shows the class spelled out (service.domain.portable_patterns),
# which ECMA-262, Python's `re` and schemathesis read alike.
WORD = r"\p{L}\p{N}_"


def _tag_pattern(word: str) -> str:
    return rf"^[{word}][{word} .+#-]*$"


def _has_word(word: str) -> str:
    return f"[{word}]"


TAG_PATTERN = _tag_pattern(WORD)
Tag = Annotated[
    str,
    Field(
        min_length=1,
        max_length=40,
        pattern=TAG_PATTERN,
        json_schema_extra=shown_as(_tag_pattern, WORD),
        description="A letter, digit or `_` (any script: `café` and `日本` are tags), then "
        "letters, digits and ` _.+#-`. Trailing spaces are removed and the tag is stored, "
        "matched and returned in lower case: `Python` and `python` are one tag.",
    ),
    AfterValidator(lambda tag: tag.rstrip(" ").lower()),
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
    name: UserName


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

Title = Annotated[str, Field(max_length=300, pattern=NOT_BLANK), AfterValidator(_strip)]
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


def _present_fields_only(schema: dict[str, Any]) -> None:
    """The schema of an update: at least one field, and a field given is never null (left
    out, it keeps its value)."""
    for name, prop in schema["properties"].items():
        branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
        if branches:
            prop.update(branches[0])
        prop.pop("default", None)
        schema["properties"][name] = prop
    schema["minProperties"] = 1
    schema["examples"] = [{"title": "Harbour ferries keep the summer timetable until October"}]


class ArticleUpdate(Input):
    """Any subset of the fields; at least one, none null (leave a field out to keep it)."""

    model_config = ConfigDict(json_schema_extra=_present_fields_only)

    title: Title | None = None
    content: Content | None = None
    tags: Tags | None = None

    _dedupe = field_validator("tags")(lambda tags: _unique(tags) if tags is not None else None)

    @field_validator("title", "content", "tags", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null: leave the field out to keep its value")
        return value

    @model_validator(mode="after")
    def _at_least_one(self) -> ArticleUpdate:
        if not self.model_fields_set:
            raise ValueError("Nothing to change: send at least one field.")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude_none=True)


class Author(Output):
    id: int
    name: str


# All an article shows of a processing failure. The reason itself (an exception's text, which
# may name internals) stays in the articles.processing_error column and the worker's log.
PROCESSING_FAILED = "processing failed"


class ArticleFields(Output):
    """What every representation of an article holds."""

    id: int
    title: str
    summary: str | None
    keywords: list[str]
    tags: list[str]
    status: ArticleStatus
    processing_error: str | None = Field(
        None,
        description=f'`"{PROCESSING_FAILED}"` when `status` is `failed`, else null. The '
        "reason is for the operators (the worker's log), never shown here.",
    )
    author: Author
    published_at: datetime
    updated_at: datetime
    version: int

    @field_validator("processing_error", mode="before")
    @classmethod
    def _no_reason(cls, value: object) -> str | None:
        # Whatever the source (a row, an ORM object), the stored reason is never published.
        return PROCESSING_FAILED if value else None


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
    page: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        default=None,
        description="An offset page (`kind: offset` answer), 1 when neither `page` nor "
        "`cursor` is given. Not with `cursor`: both at once is a 422. Offset pages reach the "
        "first 10,000 articles: `page` x `per_page` beyond that is a 422 `page_too_deep` "
        "(go on with `next_cursor`).",
    )
    per_page: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="A `next_cursor` from a previous page: the page after it, by keyset "
        "(`kind: cursor` answer). Not with `page`: both at once is a 422.",
    )
    author_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None
    tag: Tag | None = None
    q: (
        Annotated[
            str,
            Field(
                max_length=100,
                pattern=_has_word(WORD),
                # Shown as the characters search_words reads as a word's (no `_`, `²`).
                json_schema_extra=shown_as(_has_word, WORD, keep=word_character),
                description="Words (runs of letters and digits; anything else separates "
                "them); titles match when they contain words starting with each of them, in any "
                "case. Each word needs at least SEARCH_MIN_PREFIX characters (2 by default), and "
                "a search has at most SEARCH_MAX_TERMS different words (4 by default): otherwise "
                "a 422 `validation_error`. A search that runs longer than SEARCH_TIMEOUT_MS "
                "(2,000 ms by default) is stopped: 422 `search_too_broad`. Requests with `q` "
                "also count against RATE_LIMIT_SEARCH (60 a minute by default).",
            ),
        ]
        | None
    ) = None


NEXT_CURSOR = "The cursor of the next page; null on the last page (nothing follows)."


class ArticlePage(Output):
    """Offset pagination (``page``, ``per_page``), the guide's shape, plus a cursor to go on."""

    kind: Literal["offset"] = Field(default="offset", description="An offset page.")
    articles: list[ArticleSummary]
    total: int
    total_is_estimate: bool
    pages: int
    current_page: int
    next_cursor: str | None = Field(description=NEXT_CURSOR)


class ArticleCursorPage(Output):
    """Keyset pagination (``cursor``): constant cost however deep."""

    kind: Literal["cursor"] = Field(default="cursor", description="A keyset page.")
    articles: list[ArticleSummary]
    next_cursor: str | None = Field(description=NEXT_CURSOR)


class ArticleListPage(RootModel[ArticlePage | ArticleCursorPage]):
    """A page of ``GET /articles``: ``kind`` says which: ``offset`` (asked by ``page``, or
    neither) or ``cursor`` (asked by ``cursor``)."""

    root: Annotated[ArticlePage | ArticleCursorPage, Field(discriminator="kind")]


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


class Migrations(Output):
    """The database's schema against this code's migrations (``service.infra.schema``):
    ``current`` at the code's head, ``ahead`` at a later release's (compatible: migrations
    only add), ``unknown`` when the database did not answer or the code's migrations are not
    shipped with it. (``behind`` makes ``/readyz`` answer 503 instead.)"""

    state: Literal["current", "ahead", "unknown"]
    database: str | None = Field(description="The revision alembic_version records")
    code: str | None = Field(description="The head of this code's migrations")


class Readiness(Output):
    """``/readyz`` when this instance can serve: ``ready`` with every dependency answering,
    ``degraded`` with some down (named in ``checks``); it stays in its load balancer either
    way, since the degraded answers (cached reads, 503 for writes) are still the best any
    instance can give."""

    status: Literal["ready", "degraded"] = "ready"
    checks: dict[str, Literal["ok", "down", "timeout"]] = Field(
        examples=[{"database": "ok", "database_read": "ok", "redis": "ok"}]
    )
    migrations: Migrations

"""The error vocabulary shared by every layer: domain exceptions and the JSON envelope.

Data functions (``service.domain``) know nothing of HTTP: they raise the exceptions below,
each naming a machine-readable ``code`` and a human ``message`` (plus ``details`` for
validation-style errors). Each class also carries what the API makes of it, written once
here: its HTTP ``status`` and, for the class that stands for a status in the OpenAPI document,
``documented`` (the status's description and an example envelope). ``service.web.errors``
answers with that status and renders the envelope, the document reads ``documented``; a CLI
command prints the message instead.

The envelope, for every error the API answers::

    {"error": {"code": "not_found", "message": "...", "details": [...], "request_id": "..."}}

``details`` appears only when there is something to list (validation errors, failed checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

# Every way a Redis call can fail: the server refused or dropped us (``RedisError``), the
# socket failed below redis-py (``OSError``), or our own bound expired (``TimeoutError``).
# Written once here: ``except REDIS_FAILURES`` is how every module catches them.
from redis.exceptions import RedisError

REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True)
class Documented:
    """How the API documents an error status: what it means, and an example of its envelope."""

    description: str
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class DomainError(Exception):
    """A refusal a data function makes on purpose; ``code`` and ``message`` reach the client
    with ``status`` (a subclass inherits its parent's)."""

    code = "error"
    status: ClassVar[int] = 400
    documented: ClassVar[Documented | None] = None

    def __init__(
        self, message: str, *, code: str | None = None, details: list[Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class NotFound(DomainError):
    code = "not_found"
    status = 404
    documented = Documented(
        "Not found (an id that does not exist, or cannot: 0 or beyond the largest id)",
        code,
        "Article 42 does not exist.",
    )


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    documented = Documented(
        "Not allowed for this caller", code, "Only the author may change this article."
    )


class Conflict(DomainError):
    code = "conflict"
    status = 409
    documented = Documented(
        "Conflict with the current state", code, "An account with this e-mail exists already."
    )


class StaleVersion(DomainError):
    """The caller's precondition names another version than the current one."""

    code = "precondition_failed"
    status = 412
    documented = Documented(
        "If-Match names no current ETag (compared whole, strong comparison)",
        code,
        "The article changed since you read it.",
    )


class InvalidInput(DomainError):
    """Well-formed input the domain cannot accept (a cursor not of ours, a page too deep)."""

    code = "validation_error"
    status = 422
    documented = Documented(
        "Invalid fields, or an unknown or repeated query parameter",
        code,
        "The request is not valid.",
        [{"loc": ["body", "title"], "message": "Field required", "type": "missing"}],
    )

    @classmethod
    def at(cls, loc: list[str], message: str, *, code: str | None = None, why: str) -> InvalidInput:
        """An error about one input field: ``loc`` as pydantic spells it, ``why`` in short."""
        detail = {"loc": loc, "message": why, "type": "value_error"}
        return cls(message, code=code, details=[detail])


class InvalidToken(DomainError):
    """A single-use token (password reset) that is forged, expired or already used."""

    code = "invalid_token"
    status = 400  # documented as a malformed request (service.web.errors.PROTOCOL)


class Unauthenticated(DomainError):
    code = "unauthorized"
    status = 401
    documented = Documented(
        "Missing or invalid credentials", code, "Missing or invalid credentials."
    )


class RateLimited(DomainError):
    """Over a rate limit; ``retry_after`` seconds until the window ends."""

    code = "rate_limited"
    status = 429
    documented = Documented("Rate limit exceeded", code, "Too many requests; try again later.")

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A dependency (Redis, the queue) cannot be reached; the client should try again."""

    code = "service_unavailable"
    status = 503
    documented = Documented(
        "A dependency is unavailable (`service_unavailable`), or the database connection was "
        "lost while a write was committing (`commit_outcome_unknown`: the change may or may not "
        "be saved; read the resource before repeating the request)",
        code,
        "A dependency is unavailable; try again shortly.",
    )

    def __init__(self, message: str = "A dependency is unavailable; try again shortly.") -> None:
        super().__init__(message)


def envelope(
    code: str, message: str, request_id: str, details: list[Any] | None = None
) -> dict[str, Any]:
    """The error envelope as a dict."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    body["request_id"] = request_id
    return {"error": body}


def envelope_bytes(
    code: str, message: str, request_id: str, details: list[Any] | None = None
) -> bytes:
    """The envelope serialised, for responses built outside Flask (the ASGI adapter)."""
    return orjson.dumps(envelope(code, message, request_id, details))

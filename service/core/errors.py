"""The error vocabulary shared by every layer: domain exceptions and the JSON envelope.

Data functions (``service.domain``) know nothing of HTTP: they raise the exceptions below,
each naming a machine-readable ``code`` and a human ``message`` (plus ``details`` for
validation-style errors). ``service.web.errors`` maps each class to its status and renders
the envelope; a CLI command prints the message instead.

The envelope, for every error the API answers::

    {"error": {"code": "not_found", "message": "...", "details": [...], "request_id": "..."}}

``details`` appears only when there is something to list (validation errors, failed checks).
"""

from __future__ import annotations

from typing import Any

import orjson

# Every way a Redis call can fail: the server refused or dropped us (``RedisError``), the
# socket failed below redis-py (``OSError``), or our own bound expired (``TimeoutError``).
# Written once here: ``except REDIS_FAILURES`` is how every module catches them.
from redis.exceptions import RedisError

REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class DomainError(Exception):
    """A refusal a data function makes on purpose; ``code`` and ``message`` reach the client."""

    code = "error"

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


class Forbidden(DomainError):
    code = "forbidden"


class Conflict(DomainError):
    code = "conflict"


class StaleVersion(DomainError):
    """The caller's precondition names another version than the current one."""

    code = "precondition_failed"


class InvalidInput(DomainError):
    """Well-formed input the domain cannot accept (a cursor not of ours, a page too deep)."""

    code = "validation_error"

    @classmethod
    def at(cls, loc: list[str], message: str, *, code: str | None = None, why: str) -> InvalidInput:
        """An error about one input field: ``loc`` as pydantic spells it, ``why`` in short."""
        detail = {"loc": loc, "message": why, "type": "value_error"}
        return cls(message, code=code, details=[detail])


class InvalidToken(DomainError):
    """A single-use token (password reset) that is forged, expired or already used."""

    code = "invalid_token"


class Unauthenticated(DomainError):
    code = "unauthorized"


class RateLimited(DomainError):
    """Over a rate limit; ``retry_after`` seconds until the window ends."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A dependency (Redis, the queue) cannot be reached; the client should try again."""

    code = "service_unavailable"

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

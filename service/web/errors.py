"""Every error the API answers, in the one JSON envelope (``service.core.errors``).

Domain exceptions carry their status (``service.core.errors``); ``APIError`` is for refusals
that only exist in HTTP (415, a malformed body), documented in ``PROTOCOL``. ``documented``
is what the OpenAPI document says of each status, read from those two places only.

A 500 never carries a traceback: it is logged with the request id, which the client can quote.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, InternalServerError

from service.core.errors import (
    Documented,
    DomainError,
    RateLimited,
    Unauthenticated,
    Unavailable,
    envelope_bytes,
)
from service.core.request_id import current_request_id
from service.infra import db_errors

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error a view raises on purpose; rendered as the envelope with ``status``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, details: list[Any] | None = None
) -> Response:
    """A Flask response carrying the envelope and the current request's id."""
    return Response(
        envelope_bytes(code, message, current_request_id.get(), details),
        status=status,
        mimetype="application/json",
    )


def _code_for(exc: HTTPException) -> str:
    """``Method Not Allowed`` -> ``method_not_allowed``."""
    name = exc.name if exc.name else "error"
    return name.lower().replace(" ", "_").replace("'", "")


def _handle_api_error(exc: APIError) -> Response:
    response = error_response(exc.status, exc.code, exc.message, exc.details)
    response.headers.update(exc.headers)
    return response


# The answers only HTTP gives (no domain refusal has them), as the document describes them.
PROTOCOL: dict[int, Documented] = {
    304: Documented("Not modified: the `If-None-Match` ETag is current", "", ""),
    400: Documented(
        "Malformed request (e.g. invalid JSON)",
        "malformed_json",
        "The body is not valid JSON: unexpected character.",
    ),
    405: Documented(
        "The path does not take this method (`Allow` lists those it takes)",
        "method_not_allowed",
        "The method is not allowed for the requested URL.",
    ),
    413: Documented(
        "Request body too large",
        "request_entity_too_large",
        "The request body is larger than 1048576 bytes.",
    ),
    415: Documented(
        "Body is not JSON",
        "unsupported_media_type",
        "The body must be JSON (application/json).",
    ),
}


def _domain_statuses(cls: type[DomainError]) -> dict[int, Documented]:
    found: dict[int, Documented] = {}
    for sub in cls.__subclasses__():
        if "documented" in vars(sub) and sub.documented is not None:
            found[sub.status] = sub.documented
        found.update(_domain_statuses(sub))
    return found


def documented(status: int) -> Documented | None:
    """What the API documents for ``status``: the protocol's answer, or the domain refusal's
    that stands for it (None: a status no answer documents)."""
    return PROTOCOL.get(status) or _domain_statuses(DomainError).get(status)


RETRY_AFTER_UNAVAILABLE = "5"
# What a 401 says about how to authenticate (RFC 6750).
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="newsdesk", charset="UTF-8"'}


def _handle_domain_error(exc: DomainError) -> Response:
    response = error_response(exc.status, exc.code, exc.message, exc.details)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(max(exc.retry_after, 1))
    elif isinstance(exc, Unavailable):
        response.headers["Retry-After"] = RETRY_AFTER_UNAVAILABLE
    elif isinstance(exc, Unauthenticated):
        response.headers.update(CHALLENGE)
    return response


def _handle_redis_down(exc: RedisError) -> Response:
    log.warning("redis unavailable: %s", exc)
    return _handle_domain_error(Unavailable())


COMMIT_OUTCOME_UNKNOWN = (
    "The database connection was lost while this change was being committed: it may or may "
    "not have been saved. Read the resource before repeating the request."
)


def database_error_response(exc: Exception, *, committing: bool = False) -> Response:
    """503 with ``Retry-After`` when PostgreSQL cannot be reached (logged once per outage),
    422 for a value it cannot take; anything else is a bug (500). ``committing``: ``exc`` came
    from the request's COMMIT, whose outcome is unknown when the connection died in flight
    (503 ``commit_outcome_unknown``). A statement naming a table or column the database lacks
    (its migration not run) is 503 too: a deploy out of order, not a bug in the code."""
    if committing and db_errors.outcome_unknown(exc):
        db_errors.OUTAGE.failed(exc)
        response = error_response(503, "commit_outcome_unknown", COMMIT_OUTCOME_UNKNOWN)
        response.headers["Retry-After"] = RETRY_AFTER_UNAVAILABLE
        return response
    if db_errors.unreachable(exc):
        db_errors.OUTAGE.failed(exc)
        return _handle_domain_error(Unavailable("The database is unavailable; try again shortly."))
    if db_errors.invalid_value(exc):
        return error_response(
            422, "invalid_value", "A value in the request is out of the range it can take."
        )
    if db_errors.schema_missing(exc):
        db_errors.SCHEMA_BEHIND.met(exc)
        return _handle_domain_error(
            Unavailable("This instance is waiting for a database upgrade; try again shortly.")
        )
    return _handle_unexpected(exc)


def _handle_http_exception(exc: HTTPException) -> Response:
    if isinstance(exc, InternalServerError):
        return _handle_unexpected(exc)
    status = exc.code or 500
    response = error_response(status, _code_for(exc), exc.description or exc.name)
    # Keep what the exception says about itself (Allow on 405, WWW-Authenticate on 401, ...).
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _handle_validation_error(exc: ValidationError) -> Response:
    details = [
        {"loc": list(err["loc"]), "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    return error_response(422, "validation_error", "The request is not valid.", details)


def _handle_unexpected(exc: Exception) -> Response:
    # An InternalServerError wrapping an original exception comes from Flask's last-resort
    # handler, which has logged the traceback already; anything else is logged here.
    if not (isinstance(exc, InternalServerError) and exc.original_exception is not None):
        log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
    return error_response(500, "internal_error", "An unexpected error occurred.")


def register_error_handlers(app: Flask) -> None:
    """Route every error through the envelope."""
    app.register_error_handler(APIError, _handle_api_error)
    app.register_error_handler(DomainError, _handle_domain_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(ValidationError, _handle_validation_error)
    app.register_error_handler(RedisConnectionError, _handle_redis_down)
    app.register_error_handler(RedisTimeoutError, _handle_redis_down)
    for database_error in (SQLAlchemyError, OSError, TimeoutError):
        app.register_error_handler(database_error, database_error_response)
    app.register_error_handler(Exception, _handle_unexpected)

"""The ``endpoint`` decorator: a view declares its query model, body model, response model,
status, error statuses, authentication and rate limit; the decorator enforces them and records
them for the OpenAPI document (``service.web.openapi``), so the contract cannot drift from
the code::

    @bp.post("/articles")
    @endpoint(body=ArticleCreate, response=ArticlePublic, status=201, auth=True,
              errors=(401, 422, 429))
    async def create_article(body: ArticleCreate) -> ArticlePublic: ...

The decorator parses ``request.args`` into the query model and the JSON body into the body
model (415 for another content type, 400 for malformed JSON, 422 for invalid fields), calls
the view with ``query=`` / ``body=``, and serialises the returned model.

Chosen over flask-openapi3 and spectree: both wrap views in their own sync/async machinery
and Flask subclass, which would sit between Flask and ``service.web.app.LoopNativeFlask``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from flask import Response, request
from pydantic import BaseModel

from service.domain.callers import Caller
from service.web import context
from service.web.auth import authenticate
from service.web.errors import APIError
from service.web.rate_limits import enforce


@dataclass
class Operation:
    """What the contract says about one view."""

    summary: str
    description: str
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    errors: tuple[int, ...]
    auth: bool
    tags: tuple[str, ...]
    headers: dict[str, str] = field(default_factory=dict)


def _query_dict(model: type[BaseModel]) -> dict[str, Any]:
    """``request.args`` as a dict: lists for list fields, the last value otherwise."""
    values: dict[str, Any] = {}
    for key in request.args:
        items = request.args.getlist(key)
        annotation = str(model.model_fields[key].annotation) if key in model.model_fields else ""
        values[key] = items if annotation.startswith("list") else items[-1]
    return values


def parse_json_body(model: type[BaseModel]) -> BaseModel:
    """The request's JSON body as ``model`` (415, 400 or 422 otherwise)."""
    if request.mimetype != "application/json":
        raise APIError(415, "unsupported_media_type", "The body must be JSON (application/json).")
    try:
        data = orjson.loads(request.get_data(cache=True) or b"null")
    except orjson.JSONDecodeError as exc:
        raise APIError(400, "malformed_json", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise APIError(422, "validation_error", "The body must be a JSON object.")
    return model.model_validate(data)


def json_response(model: BaseModel | None, status: int = 200) -> Response:
    if model is None:
        return Response(status=status)
    return Response(model.model_dump_json(), status=status, mimetype="application/json")


Auth = bool | Literal["session"]


async def _caller_for(auth: Auth, rate: Literal["write"] | None) -> Caller:
    """Authenticate (``"session"``: session tokens only) and count the caller's rate limit."""
    caller = await authenticate(sessions_only=auth == "session")
    if rate == "write":
        await enforce("write", caller.rate_key, context.settings().rate_limit_write)
    return caller


def endpoint(
    *,
    response: type[BaseModel] | None = None,
    status: int = 200,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    errors: Iterable[int] = (),
    auth: Auth = False,
    rate: Literal["write"] | None = None,
    tags: Iterable[str] = (),
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Response]]]:
    """Validate, authenticate, rate-limit, call and serialise; record the operation for the
    OpenAPI document.

    ``auth=True`` accepts an API key or a session token, ``auth="session"`` a session token
    only; either way the view receives ``caller=``. ``rate="write"`` counts the request
    against ``RATE_LIMIT_WRITE`` for the caller's credential (it needs ``auth``)."""
    if rate is not None and not auth:
        raise ValueError("rate= counts per credential: it needs auth=")

    def decorate(view: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Response]]:
        doc = (view.__doc__ or "").strip()
        summary, _, description = doc.partition("\n")
        error_codes = set(errors) | ({422} if body or query else set())
        if body:
            error_codes |= {400, 415, 413}
        operation = Operation(
            summary=summary.strip(),
            description=description.strip(),
            query=query,
            body=body,
            response=response,
            status=status,
            errors=tuple(sorted(error_codes)),
            auth=bool(auth),
            tags=tuple(tags),
        )

        @functools.wraps(view)
        async def run(**path_args: Any) -> Response:
            kwargs: dict[str, Any] = dict(path_args)
            if query is not None:
                kwargs["query"] = query.model_validate(_query_dict(query))
            if body is not None:
                kwargs["body"] = parse_json_body(body)
            if auth:
                kwargs["caller"] = await _caller_for(auth, rate)
            result = await view(**kwargs)
            if isinstance(result, Response):
                return result
            return json_response(result, status)

        run.openapi = operation  # type: ignore[attr-defined]
        return run

    return decorate

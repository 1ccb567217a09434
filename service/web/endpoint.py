"""The ``endpoint`` decorator: a view declares its query model, body model, response model,
status, error statuses, authentication and rate limit; the decorator enforces them and records
them for the OpenAPI document (``service.web.openapi``), so the contract cannot drift from
the code::

    @bp.post("/articles")
    @endpoint(body=ArticleCreate, response=ArticlePublic, status=201, auth=True,
              errors=(401, 422, 429), operation_id="create_article", headers=("Location",))
    async def create_article(body: ArticleCreate) -> ArticlePublic: ...

The decorator holds the whole contract of its view, so the document keeps no table of its own:
the ``operation_id`` a generated client names its function after, the ``links`` of the success
response (what to call next with a value from it), the success response's ``headers`` beyond
those its statuses imply, whether the answer is ``cached`` (304, ``ETag``, ``X-Cache``), and
``answers``: errors an operation words its own way (a probe's 503). A view may return a
``Response`` of its own (a probe's JSON, the Prometheus text); ``response`` then names the
model its body follows, or a ``RawBody`` for a body that is not JSON.

The decorator parses ``request.args`` into the query model and the JSON body into the body
model (415 for another content type, 400 for malformed JSON, 422 for invalid fields), calls
the view with ``query=`` / ``body=``, and serialises the returned model.

One rule for every query string (``query_values``): a parameter the query model does not
declare is refused, on endpoints without a query model too, and so is a parameter given more
than once unless its field is a list. Every 422 names what it refuses by ``loc``:
``["query", name]`` or ``["body", field, ...]``.

A response without a body (204) has no ``Content-Type``; a response model that carries a
credential (``carries_credential``: a session token, a new API key) is sent with
``Cache-Control: no-store``.

Chosen over flask-openapi3 and spectree: both wrap views in their own sync/async machinery
and Flask subclass, which would sit between Flask and ``service.web.app.LoopNativeFlask``
(the decision and its reasons: docs/OPENAPI.md).
"""

from __future__ import annotations

import functools
import inspect
import re
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import orjson
from flask import Response, request
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from werkzeug.datastructures import MultiDict

from service.core.errors import Documented, InvalidInput
from service.domain.callers import Caller
from service.web import context
from service.web.auth import authenticate
from service.web.errors import PROTOCOL, APIError
from service.web.rate_limits import enforce


@dataclass(frozen=True)
class Link:
    """An operation a client may call next, with ``parameters`` (name -> runtime expression,
    such as ``$response.body#/id``) taken from the answer."""

    operation_id: str
    parameters: Mapping[str, str]
    description: str


@dataclass(frozen=True)
class RawBody:
    """A success body that is not JSON: its media types and an example."""

    media_types: tuple[str, ...]
    example: str


# An error answer an operation words its own way: its description and example, in the shape
# every documented error status has (``service.core.errors.Documented``).
Answer = Documented


@dataclass
class Operation:
    """What the contract says about one view."""

    summary: str
    description: str
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    response: type[BaseModel] | RawBody | None
    status: int
    errors: tuple[int, ...]
    auth: Auth
    tags: tuple[str, ...]
    operation_id: str
    cached: bool = False
    headers: tuple[str, ...] = ()
    links: Mapping[str, Link] = field(default_factory=dict)
    answers: Mapping[int, Answer] = field(default_factory=dict)


INVALID = "The request is not valid."


def invalid_input(source: Literal["query", "body", "path"], exc: ValidationError) -> InvalidInput:
    """A pydantic error about the request's ``source``, each ``loc`` prefixed with it."""
    details = [
        {"loc": [source, *err["loc"]], "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    return InvalidInput(INVALID, details=details)


def _unwrapped(annotation: Any) -> tuple[Any, ...]:
    """The types an annotation allows: the members of a union, each without ``Annotated``."""
    if get_origin(annotation) is Annotated:
        return _unwrapped(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(t for arg in get_args(annotation) for t in _unwrapped(arg))
    return (annotation,)


def repeatable(info: FieldInfo) -> bool:
    """Whether a query field takes its parameter more than once: a list field."""
    return any(t is list or get_origin(t) is list for t in _unwrapped(info.annotation))


def query_values(model: type[BaseModel] | None, args: MultiDict[str, str]) -> dict[str, Any]:
    """The query string as input for ``model`` (None: the endpoint takes no parameter): a list
    for each list field, the single value otherwise.

    Refused together, one ``details`` entry each (``loc`` ``["query", name]``): a parameter
    ``model`` does not declare, and a parameter given more than once whose field is not a
    list."""
    declared = model.model_fields if model is not None else {}
    fields = {(info.alias or name): info for name, info in declared.items()}
    values: dict[str, Any] = {}
    problems: list[dict[str, Any]] = []
    reasons: list[str] = []
    for name in args:
        items = args.getlist(name)
        info = fields.get(name)
        if info is None:
            problems.append(
                {"loc": ["query", name], "message": "unknown parameter", "type": "extra_forbidden"}
            )
            reasons.append(f"unknown parameter {name!r}")
        elif repeatable(info):
            values[name] = items
        elif len(items) > 1:
            problems.append(
                {
                    "loc": ["query", name],
                    "message": "given more than once; it takes one value",
                    "type": "repeated_parameter",
                }
            )
            reasons.append(f"{name!r} given more than once")
        else:
            values[name] = items[0]
    if problems:
        raise InvalidInput(f"{INVALID} Query string: {'; '.join(reasons)}.", details=problems)
    return values


def parse_query(model: type[BaseModel] | None) -> BaseModel | None:
    """The request's query string as ``model`` (422 otherwise; see ``query_values``)."""
    values = query_values(model, request.args)
    if model is None:
        return None
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise invalid_input("query", exc) from None


def parse_json_body(model: type[BaseModel]) -> BaseModel:
    """The request's JSON body as ``model`` (415, 400 or 422 otherwise)."""
    if request.mimetype != "application/json":
        refused = PROTOCOL[415]
        raise APIError(415, refused.code, refused.message)
    try:
        data = orjson.loads(request.get_data(cache=True) or b"null")
    except orjson.JSONDecodeError as exc:
        raise APIError(400, "malformed_json", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise InvalidInput.at(["body"], "The body must be a JSON object.", why="not an object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input("body", exc) from None


def json_response(model: BaseModel | None, status: int = 200) -> Response:
    """``model`` as JSON; without a model, no body and no ``Content-Type`` (a 204)."""
    if model is None:
        response = Response(status=status)
        del response.headers["Content-Type"]
        return response
    response = Response(model.model_dump_json(), status=status, mimetype="application/json")
    if getattr(type(model), "carries_credential", False):  # a token or key: never cached
        response.headers["Cache-Control"] = "no-store"
    return response


Auth = bool | Literal["session"]

# A sentence ends at ., ! or ? followed by space and a capital, a digit or a quoted name.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`(\"])")


def summary_and_description(doc: str | None) -> tuple[str, str]:
    """A view's docstring as its contract's summary, the first sentence whole (however many
    lines it spans), and description, the rest."""
    first, _, rest = inspect.cleandoc(doc or "").partition("\n\n")
    summary, *remainder = _SENTENCE_END.split(" ".join(first.split()), maxsplit=1)
    return summary, "\n\n".join(part for part in (*remainder, rest.strip()) if part)


async def _caller_for(auth: Auth, rate: Literal["write"] | None) -> Caller:
    """Authenticate (``"session"``: session tokens only) and count the caller's rate limit."""
    caller = await authenticate(sessions_only=auth == "session")
    if rate == "write":
        await enforce("write", caller.rate_key, context.settings().rate_limit_write)
    return caller


def endpoint(
    *,
    response: type[BaseModel] | RawBody | None = None,
    status: int = 200,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    errors: Iterable[int] = (),
    auth: Auth = False,
    rate: Literal["write"] | None = None,
    tags: Iterable[str] = (),
    operation_id: str | None = None,
    cached: bool = False,
    headers: Iterable[str] = (),
    links: Mapping[str, Link] | None = None,
    answers: Mapping[int, Answer] | None = None,
    extra_query: Literal["refuse", "ignore"] = "refuse",
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Response]]]:
    """Validate, authenticate, rate-limit, call and serialise; record the operation for the
    OpenAPI document.

    ``auth=True`` accepts an API key or a session token, ``auth="session"`` a session token
    only; either way the view receives ``caller=``. ``rate="write"`` counts the request
    against ``RATE_LIMIT_WRITE`` for the caller's user, across all their credentials (it
    needs ``auth``). ``operation_id`` defaults to the view's name; ``cached`` declares a GET
    answered from the cache (304 for a current ``If-None-Match``, ``ETag`` and ``X-Cache``);
    ``headers`` the success response's other headers; ``links`` its links; ``answers`` the
    errors worded for this operation alone. ``extra_query="ignore"`` leaves the query string
    unread (a probe answers whatever a load balancer appends), so no 422 is declared."""
    if rate is not None and not auth:
        raise ValueError("rate= counts per user: it needs auth=")
    if extra_query == "ignore" and query is not None:
        raise ValueError("a query model reads the query string: it cannot be ignored")

    def decorate(view: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Response]]:
        summary, description = summary_and_description(view.__doc__)
        error_codes = set(errors) | set(answers or {})
        if extra_query == "refuse":  # an unknown or repeated query parameter
            error_codes |= {422}
        if cached:
            error_codes |= {304}
        if body:
            error_codes |= {400, 415, 413}
        operation = Operation(
            summary=summary,
            description=description,
            query=query,
            body=body,
            response=response,
            status=status,
            errors=tuple(sorted(error_codes)),
            auth=auth,
            tags=tuple(tags),
            operation_id=operation_id or view.__name__,
            cached=cached,
            headers=tuple(headers),
            links=dict(links or {}),
            answers=dict(answers or {}),
        )

        @functools.wraps(view)
        async def run(**path_args: Any) -> Response:
            kwargs: dict[str, Any] = dict(path_args)
            if extra_query == "refuse":
                parsed = parse_query(query)  # refuses parameters even when the view takes none
                if parsed is not None:
                    kwargs["query"] = parsed
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

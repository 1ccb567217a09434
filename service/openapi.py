"""The API contract: an ``endpoint`` decorator that validates with pydantic models and records
them, and the OpenAPI 3.1 document built from those records.

A view declares its query model, body model, response model, status and error statuses::

    @bp.post("/articles")
    @endpoint(body=ArticleCreate, response=ArticlePublic, status=201, auth=True,
              errors=(401, 422, 429))
    async def create_article(body: ArticleCreate) -> ArticlePublic: ...

The decorator parses ``request.args`` into the query model and the JSON body into the body
model (415 for another content type, 400 for malformed JSON, 422 for invalid fields), calls
the view with ``query=`` / ``body=``, and serialises the returned model. The same models make
the document, so the contract cannot drift from the code.

Chosen over flask-openapi3 and spectree: both wrap views in their own sync/async machinery
and Flask subclass, which would sit between Flask and ``service.app.LoopNativeFlask``; this
module is ~200 lines on top of pydantic's own JSON Schema generation.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from flask import Flask, Response, request
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from werkzeug.routing import IntegerConverter, Map

from service.errors import APIError
from service.schemas import ErrorEnvelope

ERROR_DESCRIPTIONS = {
    304: "Not modified",
    400: "Malformed request (e.g. invalid JSON)",
    401: "Missing or invalid credentials",
    403: "Not allowed for this caller",
    404: "Not found",
    409: "Conflict with the current state",
    412: "If-Match does not match the current version",
    413: "Request body too large",
    415: "Body is not JSON",
    422: "Invalid fields",
    428: "If-Match required",
    429: "Rate limit exceeded",
    503: "A dependency is unavailable",
}


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


def endpoint(
    *,
    response: type[BaseModel] | None = None,
    status: int = 200,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    errors: Iterable[int] = (),
    auth: bool = False,
    tags: Iterable[str] = (),
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Response]]]:
    """Validate, call and serialise; record the operation for the OpenAPI document."""

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
            auth=auth,
            tags=tuple(tags),
        )

        @functools.wraps(view)
        async def run(**path_args: Any) -> Response:
            kwargs: dict[str, Any] = dict(path_args)
            if query is not None:
                kwargs["query"] = query.model_validate(_query_dict(query))
            if body is not None:
                kwargs["body"] = parse_json_body(body)
            result = await view(**kwargs)
            if isinstance(result, Response):
                return result
            return json_response(result, status)

        run.openapi = operation  # type: ignore[attr-defined]
        return run

    return decorate


MAX_ID = 2**63 - 1  # PostgreSQL bigint


class IdConverter(IntegerConverter):
    """``<id:name>``: a positive bigint; anything else is no route (404), never a 500."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=MAX_ID)


_RULE_ARG = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")
_CONVERTER_SCHEMAS: dict[str | None, dict[str, Any]] = {
    "int": {"type": "integer"},
    "id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}


def _path_and_params(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for match in _RULE_ARG.finditer(rule):
        schema = _CONVERTER_SCHEMAS.get(match["converter"], {"type": "string"})
        params.append({"name": match["name"], "in": "path", "required": True, "schema": schema})
    return _RULE_ARG.sub(lambda m: "{" + m["name"] + "}", rule), params


def _query_params(model: type[BaseModel], defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def build_document(app: Flask, *, title: str, version: str, description: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every view decorated with ``endpoint``."""
    pairs: set[tuple[type[BaseModel], JsonSchemaMode]] = {(ErrorEnvelope, "serialization")}
    found: list[tuple[str, str, Operation]] = []
    for rule in app.url_map.iter_rules():
        operation = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if operation is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.rule, method.lower(), operation))
        if operation.body is not None:
            pairs.add((operation.body, "validation"))
        if operation.response is not None:
            pairs.add((operation.response, "serialization"))
    refs, top = models_json_schema(
        sorted(pairs, key=lambda pair: (pair[0].__name__, pair[1])),
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))

    def ref(model: type[BaseModel], mode: JsonSchemaMode) -> str:
        return str(refs[(model, mode)]["$ref"])

    paths: dict[str, dict[str, Any]] = {}
    for rule_text, method, op in sorted(found, key=lambda item: (item[0], item[1])):
        path, params = _path_and_params(rule_text)
        if op.query is not None:
            params += _query_params(op.query, schemas)
        responses: dict[str, Any] = {}
        if op.response is not None:
            responses[str(op.status)] = {
                "description": "Success",
                "content": {
                    "application/json": {"schema": {"$ref": ref(op.response, "serialization")}}
                },
            }
        else:
            responses[str(op.status)] = {"description": "Success, no content"}
        for code in op.errors:
            if code == 304:
                responses["304"] = {"description": ERROR_DESCRIPTIONS[304]}
                continue
            responses[str(code)] = {
                "description": ERROR_DESCRIPTIONS.get(code, "Error"),
                "content": {
                    "application/json": {"schema": {"$ref": ref(ErrorEnvelope, "serialization")}}
                },
            }
        entry: dict[str, Any] = {
            "operationId": method + "_" + re.sub(r"\W+", "_", path).strip("_"),
            "summary": op.summary,
            "parameters": params,
            "responses": responses,
        }
        if op.description:
            entry["description"] = op.description
        if op.tags:
            entry["tags"] = list(op.tags)
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": ref(op.body, "validation")}}},
            }
        if op.auth:
            entry["security"] = [{"apiKey": []}, {"bearer": []}]
        paths.setdefault(path, {})[method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "API-Key"},
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A session token from /auth/login, or an API key",
                },
            },
        },
    }

"""The OpenAPI 3.1 document, built from the operations ``service.web.endpoint`` records and
the pydantic models they name."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from service.core.types import MAX_ID
from service.domain.schemas import ErrorEnvelope
from service.web.endpoint import Operation

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


# (model, mode) -> {"$ref": ...}; the model is Any because pydantic also accepts dataclasses.
Refs = dict[tuple[Any, JsonSchemaMode], dict[str, Any]]


def _operations(app: Flask) -> list[tuple[str, str, Operation]]:
    """``(rule, method, operation)`` for each method of each view decorated with ``endpoint``,
    sorted by rule and method (HEAD and OPTIONS are left to the server)."""
    found: list[tuple[str, str, Operation]] = []
    for rule in app.url_map.iter_rules():
        operation = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if operation is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((rule.rule, method.lower(), operation))
    return sorted(found, key=lambda item: (item[0], item[1]))


def _component_schemas(operations: Iterable[Operation]) -> tuple[Refs, dict[str, Any]]:
    """The ``$ref`` of each model the operations name (bodies as validated, responses and the
    error envelope as serialised), and the component schemas they refer to."""
    pairs: set[tuple[type[BaseModel], JsonSchemaMode]] = {(ErrorEnvelope, "serialization")}
    for operation in operations:
        if operation.body is not None:
            pairs.add((operation.body, "validation"))
        if operation.response is not None:
            pairs.add((operation.response, "serialization"))
    refs, top = models_json_schema(
        sorted(pairs, key=lambda pair: (pair[0].__name__, pair[1])),
        ref_template="#/components/schemas/{model}",
    )
    return refs, dict(top.get("$defs", {}))


def _json_content(refs: Refs, model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
    """A JSON ``content`` whose schema is ``model``'s component."""
    return {"application/json": {"schema": {"$ref": str(refs[(model, mode)]["$ref"])}}}


def _responses(op: Operation, refs: Refs) -> dict[str, Any]:
    """The success response, then each error the operation declares (304 has no body)."""
    responses: dict[str, Any] = {}
    if op.response is not None:
        responses[str(op.status)] = {
            "description": "Success",
            "content": _json_content(refs, op.response, "serialization"),
        }
    else:
        responses[str(op.status)] = {"description": "Success, no content"}
    for code in op.errors:
        if code == 304:
            responses["304"] = {"description": ERROR_DESCRIPTIONS[304]}
            continue
        responses[str(code)] = {
            "description": ERROR_DESCRIPTIONS.get(code, "Error"),
            "content": _json_content(refs, ErrorEnvelope, "serialization"),
        }
    return responses


def _operation_entry(
    op: Operation, method: str, path: str, params: list[dict[str, Any]], refs: Refs
) -> dict[str, Any]:
    """The OpenAPI operation object for ``method`` on ``path``."""
    entry: dict[str, Any] = {
        "operationId": method + "_" + re.sub(r"\W+", "_", path).strip("_"),
        "summary": op.summary,
        "parameters": params,
        "responses": _responses(op, refs),
    }
    if op.description:
        entry["description"] = op.description
    if op.tags:
        entry["tags"] = list(op.tags)
    if op.body is not None:
        entry["requestBody"] = {
            "required": True,
            "content": _json_content(refs, op.body, "validation"),
        }
    if op.auth:
        entry["security"] = [{"apiKey": []}, {"bearer": []}]
    return entry


def _paths(
    operations: list[tuple[str, str, Operation]], refs: Refs, schemas: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The ``paths`` object; query models' nested schemas are added to ``schemas``."""
    paths: dict[str, dict[str, Any]] = {}
    for rule, method, op in operations:
        path, params = _path_and_params(rule)
        if op.query is not None:
            params += _query_params(op.query, schemas)
        paths.setdefault(path, {})[method] = _operation_entry(op, method, path, params, refs)
    return paths


def build_document(app: Flask, *, title: str, version: str, description: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every view decorated with ``endpoint``."""
    operations = _operations(app)
    refs, schemas = _component_schemas(op for _, _, op in operations)
    paths = _paths(operations, refs, schemas)
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

"""The OpenAPI 3.1 document, built from the operations ``service.web.endpoint`` records (the
probes' too) and the pydantic models they name. Everything particular to one operation (its
operationId, links, success headers, cache behaviour, errors worded its own way) is declared at
its decorator; this module keeps only what every operation shares.

What the document says is what the server does: each operation lists the credentials it
accepts (``auth="session"``: session tokens only), the conditional request headers it honours,
and the headers its responses carry (``components/headers``), derived from the statuses it
declares: 304 means a cached GET (``ETag``, ``X-Cache``, ``If-None-Match``), 412 an
``If-Match`` condition, 429 a rate limit (``RateLimit-*``). Docstrings are reStructuredText;
descriptions are written as Markdown, which the interactive docs render.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from service.core import routes
from service.core.types import MAX_ID
from service.domain.schemas import ErrorEnvelope
from service.web import openapi_examples as examples
from service.web.endpoint import Answer, Link, Operation, RawBody
from service.web.errors import documented

REF = "#/components/{kind}/{name}"
LOGIN = f"{routes.AUTH}/login"


def _description(status: int) -> str:
    """What ``status`` means, as ``service.web.errors.documented`` says."""
    found = documented(status)
    return "Error" if found is None else found.description


def _header(description: str, *, required: bool = True, **schema: Any) -> dict[str, Any]:
    """A response header component: a string unless ``schema`` says otherwise."""
    header: dict[str, Any] = {"description": description}
    if required:
        header["required"] = True
    header["schema"] = {"type": "string", **schema}
    return header


def _seconds_or_count(description: str, *, required: bool = False) -> dict[str, Any]:
    return _header(description, required=required, type="integer", minimum=0)


# Response headers, each a component the responses refer to.
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": _header(
        "The request's id (the client's own `X-Request-ID` when well formed); "
        "quote it when reporting a problem."
    ),
    "ETag": _header(
        "Names this representation: send it back in `If-None-Match` (304 when "
        "unchanged) or, for an article, in `If-Match` to edit or delete only that version."
    ),
    "Location": _header("The path of the resource created."),
    "X-Cache": _header(
        "Whether the Redis cache answered (`HIT`), was filled (`MISS`) or was "
        "skipped while unavailable (`BYPASS`).",
        enum=["HIT", "MISS", "BYPASS", "STALE"],
    ),
    "RateLimit-Limit": _seconds_or_count(
        "Requests allowed per window by the tightest limit this request was "
        "counted against (absent while the rate limiter is unavailable)."
    ),
    "RateLimit-Remaining": _seconds_or_count("Requests left in the current window of that limit."),
    "RateLimit-Reset": _seconds_or_count("Seconds until the current window of that limit ends."),
    "Retry-After": _seconds_or_count("Seconds to wait before trying again.", required=True),
    "Allow": _header("The methods the path takes."),
    "WWW-Authenticate": _header("How to authenticate: a bearer token (RFC 6750)."),
}
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
# Refused on reading the body, before any rate limit counts the request: no RateLimit-*.
REFUSED_BEFORE_COUNTING = frozenset({413, 415})

# Conditional request headers, each a component the operations refer to.
PARAMETERS: dict[str, dict[str, Any]] = {
    "If-None-Match": {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "description": "The `ETag` of the representation you have: 304, without a body, while "
        "it is current.",
        "schema": {"type": "string"},
    },
    "If-Match": {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "description": "The `ETag` of the article as you read it: the change happens only if "
        "it is still current (412 otherwise). Without it the change is unconditional.",
        "schema": {"type": "string"},
    },
}

SECURITY_SCHEMES = {
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "API-Key",
        "description": f"An API key from `POST {routes.API_KEYS}`.",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": f"A session token from `POST {LOGIN}` (every operation that "
        "needs credentials), or an API key (only where `apiKey` is accepted too).",
    },
}
# Answers every path can give, whatever the operation: a method it does not take.
METHOD_NOT_ALLOWED = {
    "description": _description(405),
    "headers": {"Allow": {"$ref": "#/components/headers/Allow"}},
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorEnvelope"},
            **examples.error(405),
        }
    },
}
SERVERS = [{"url": "/", "description": "This server (every path starts with it)."}]

TAG_DESCRIPTIONS = {"operations": {"description": "Health probes and metrics."}}

SESSION_ONLY = (
    f"Needs a session token (`Authorization: Bearer`, from `POST {LOGIN}`): an API key gets 401."
)


_RULE_ARG = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")
_CONVERTER_SCHEMAS: dict[str | None, dict[str, Any]] = {
    "int": {"type": "integer"},
    "id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": REF.format(kind=kind, name=name)}


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
    params = []
    for name, prop in schema["properties"].items():
        param = {"name": name, "in": "query", "required": name in required}
        prop = _never_null(prop)
        if "description" in prop:
            param["description"] = prop.pop("description")
        param["schema"] = prop
        params.append(param)
    return params


def _never_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: it is given or left out, never null (pydantic's ``X |
    None = None`` is ``anyOf [X, null]`` with a null default)."""
    branches = [branch for branch in prop.get("anyOf", []) if branch.get("type") != "null"]
    if len(branches) == 1:
        rest = {key: value for key, value in prop.items() if key != "anyOf"}
        prop = {**rest, **branches[0]}
    if prop.get("default", "") is None:
        del prop["default"]
    return prop


# (model, mode) -> {"$ref": ...}; the model is Any because pydantic also accepts dataclasses.
Refs = dict[tuple[Any, JsonSchemaMode], dict[str, Any]]


def _operations(app: Flask) -> list[tuple[str, str, Operation]]:
    """``(rule, method, operation)`` for each method of each view decorated with
    ``endpoint``, sorted by rule and method (HEAD and OPTIONS are left to the server)."""
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
        if operation.response is not None and not isinstance(operation.response, RawBody):
            pairs.add((operation.response, "serialization"))
    refs, top = models_json_schema(
        sorted(pairs, key=lambda pair: (pair[0].__name__, pair[1])),
        ref_template="#/components/schemas/{model}",
    )
    return refs, dict(top.get("$defs", {}))


def _json_content(refs: Refs, model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
    """A JSON ``content`` whose schema is ``model``'s component."""
    return {"application/json": {"schema": {"$ref": str(refs[(model, mode)]["$ref"])}}}


def _headers(*names: str) -> dict[str, Any]:
    return {name: _ref("headers", name) for name in ("X-Request-ID", *names)}


def _error_headers(code: int) -> tuple[str, ...]:
    """The headers an error response always carries besides the request id."""
    return {401: ("WWW-Authenticate",), 429: ("Retry-After",), 503: ("Retry-After",)}.get(code, ())


def _link(link: Link) -> dict[str, Any]:
    return {
        "operationId": link.operation_id,
        "parameters": dict(link.parameters),
        "description": link.description,
    }


def _success_content(op: Operation, refs: Refs) -> dict[str, Any]:
    """The success body: its model's JSON, or the media types of a ``RawBody``."""
    if isinstance(op.response, RawBody):
        return {
            media: {"schema": {"type": "string"}, "example": op.response.example}
            for media in op.response.media_types
        }
    assert op.response is not None
    content = _json_content(refs, op.response, "serialization")
    content["application/json"].update(examples.success(op.response))
    return content


def _responses(op: Operation, refs: Refs) -> dict[str, Any]:
    """The success response, then each error the operation declares (304 has no body), each
    with the headers it carries."""
    every = RATE_LIMIT_HEADERS if 429 in op.errors else ()
    success = (*op.headers, *(("ETag", "X-Cache") if op.cached else ()))
    responses: dict[str, Any] = {
        str(op.status): {
            "description": "Success" if op.response is not None else "Success, no content",
            "headers": _headers(*success, *every),
        }
    }
    if op.response is not None:
        responses[str(op.status)]["content"] = _success_content(op, refs)
    if op.links:
        responses[str(op.status)]["links"] = {name: _link(link) for name, link in op.links.items()}
    for code in op.errors:
        if code == 304:
            responses["304"] = {
                "description": _description(304),
                "headers": _headers("ETag", "X-Cache", *every),
            }
            continue
        counted = () if code in REFUSED_BEFORE_COUNTING else every
        answer = op.answers.get(code)
        responses[str(code)] = {
            "description": _description(code) if answer is None else answer.description,
            "headers": _headers(*_error_headers(code), *counted),
            "content": _error_content(refs, code, answer),
        }
    return responses


def _error_content(refs: Refs, code: int, answer: Answer | None = None) -> dict[str, Any]:
    content = _json_content(refs, ErrorEnvelope, "serialization")
    if answer is None:
        content["application/json"].update(examples.error(code))
    else:
        content["application/json"].update(
            examples.envelope(answer.code, answer.message, answer.details)
        )
    return content


def _security(op: Operation) -> list[dict[str, list[str]]] | None:
    """The credentials ``op`` accepts, exactly as ``service.web.endpoint`` checks them."""
    if op.auth == "session":
        return [{"bearer": []}]
    if op.auth:
        return [{"apiKey": []}, {"bearer": []}]
    return None


def _request_body(op_body: type[BaseModel], refs: Refs, schemas: dict[str, Any]) -> Any:
    """The JSON body, with its schema's first example as the one the docs fill in."""
    content = _json_content(refs, op_body, "validation")
    media = content["application/json"]
    examples = schemas[media["schema"]["$ref"].rsplit("/", 1)[1]].get("examples")
    if examples:
        media["example"] = examples[0]
    return {"required": True, "content": content}


def _operation_entry(
    op: Operation,
    params: list[dict[str, Any]],
    refs: Refs,
    schemas: dict[str, Any],
) -> dict[str, Any]:
    """The OpenAPI operation object of ``op``."""
    if 304 in op.errors:
        params.append(_ref("parameters", "If-None-Match"))
    if 412 in op.errors:
        params.append(_ref("parameters", "If-Match"))
    entry: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "parameters": params,
        "responses": _responses(op, refs),
    }
    description = [op.description] if op.description else []
    if op.auth == "session":
        description.append(SESSION_ONLY)
    if description:
        entry["description"] = "\n\n".join(description)
    if op.tags:
        entry["tags"] = list(op.tags)
    if op.body is not None:
        entry["requestBody"] = _request_body(op.body, refs, schemas)
    security = _security(op)
    if security is not None:
        entry["security"] = security
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
        paths.setdefault(path, {})[method] = _operation_entry(op, params, refs, schemas)
    return paths


def _markdown(text: str) -> str:
    """reStructuredText inline literals (double backticks) as Markdown code spans."""
    return text.replace("``", "`")


def _plain(text: str) -> str:
    """A summary is plain text: the interactive docs show backticks as they are."""
    return text.replace("`", "")


def _render_text(node: Any) -> None:
    """Every ``description`` as Markdown and every ``summary`` as plain text, in place
    (examples are data, left as they are)."""
    if isinstance(node, list):
        for item in node:
            _render_text(item)
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("example", "examples"):
            continue
        if key == "description" and isinstance(value, str):
            node[key] = _markdown(value)
        elif key == "summary" and isinstance(value, str):
            node[key] = _plain(value)
        else:
            _render_text(value)


def build_document(app: Flask, *, title: str, version: str, description: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every view decorated with ``endpoint``."""
    operations = _operations(app)
    refs, schemas = _component_schemas(op for _, _, op in operations)
    paths = _paths(operations, refs, schemas)
    tags = {
        tag: {"name": tag, **TAG_DESCRIPTIONS.get(tag, {})}
        for _, _, op in operations
        for tag in op.tags
    }
    document = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": SERVERS,
        "tags": list(tags.values()),
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "responses": {"MethodNotAllowed": METHOD_NOT_ALLOWED},
            "headers": HEADERS,
            "parameters": PARAMETERS,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
    document = copy.deepcopy(document)  # rendered in place; the constants above stay as they are
    _render_text(document)
    return document

"""service.web.openapi and service.web.api.docs: the contract is served, renders offline, and holds.

The document is valid OpenAPI 3.1 and tells the truth to a reader of the interactive docs:
each request body's example is accepted by the live server, each operation accepts exactly
the credentials it declares, the probes answer as declared, and the responses carry the
headers the document names (``assert_documented``). It is also usable by a generated
client: readable operation ids, an example for every body and every answer (each valid
against its schema), links between operations, one schema that describes every list page.
Every schemathesis check runs in ``test_contract_fuzz.py``; a generated client runs the whole
flow in ``test_generated_client.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema_rs
import openapi_spec_validator
import schemathesis

from tests.support.api import account, login

HEADERS = {
    "Allow",
    "X-Request-ID",
    "ETag",
    "Location",
    "X-Cache",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
    "WWW-Authenticate",
}
ARTICLE = "/api/v1/articles/{article_id}"


async def fetch_document(client: httpx.AsyncClient) -> Any:
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(document: Any) -> Iterator[tuple[str, str, Any]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def resolve(document: Any, node: Any) -> Any:
    """``node``, or what its ``$ref`` (local) points at."""
    while isinstance(node, dict) and "$ref" in node:
        assert node["$ref"].startswith("#/")
        target = document
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def validate(document: Any, instance: Any, schema: Any) -> None:
    """``instance`` against ``schema``, whose ``$ref``s point into the document. Patterns
    are read as ECMA-262 reads them (``\\p{L}``), as JSON Schema says."""
    jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]}).validate(
        instance
    )


def header_names(document: Any, path: str, method: str, status: int) -> dict[str, bool]:
    """The headers the document declares for this response: name -> required."""
    response = document["paths"][path][method]["responses"][str(status)]
    return {
        name: bool(resolve(document, header).get("required"))
        for name, header in response.get("headers", {}).items()
    }


def assert_documented(document: Any, path: str, method: str, response: httpx.Response) -> None:
    """``response`` is one the document declares: its status, content type, body schema and,
    both ways, the headers of ``HEADERS``."""
    declared = document["paths"][path][method]["responses"]
    where = f"{method.upper()} {path} -> {response.status_code}"
    assert str(response.status_code) in declared, where
    entry = declared[str(response.status_code)]
    content = entry.get("content")
    if content is None:
        assert response.content == b"", where
    else:
        media = response.headers["Content-Type"].split(";")[0].strip()
        assert media in content, where
        if media == "application/json":
            validate(document, response.json(), content[media]["schema"])
    headers = header_names(document, path, method, response.status_code)
    for name, required in headers.items():
        assert not required or name in response.headers, f"{where}: no {name}"
    sent = {name for name in HEADERS if name in response.headers}
    assert sent <= set(headers), f"{where}: undeclared {sent - set(headers)}"


def example_of(document: Any, operation: Any) -> Any:
    return operation["requestBody"]["content"]["application/json"]["example"]


async def test_the_document_is_openapi_3_1_with_every_route(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/v1/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    assert set(paths) >= {
        "/api/v1/users",
        "/api/v1/users/me",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/auth/reset-password",
        "/api/v1/auth/reset-password/confirm",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{key_id}",
        "/api/v1/articles",
        "/api/v1/articles/{article_id}",
        "/api/v1/articles/popular",
    }
    create = paths["/api/v1/articles"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ArticleCreate"
    )
    assert {"201", "401", "415", "422", "429"} <= set(create["responses"])
    assert create["security"] == [{"apiKey": []}, {"bearer": []}]
    listing = paths["/api/v1/articles"]["get"]["parameters"]
    assert {resolve(document, p)["name"] for p in listing} == {
        "page",
        "per_page",
        "cursor",
        "author_id",
        "tag",
        "q",
        "If-None-Match",
    }
    # The body models are the validators: their limits are in the document.
    title = document["components"]["schemas"]["ArticleCreate"]["properties"]["title"]
    assert title["maxLength"] == 300


async def test_the_docs_page_works_offline(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "/docs/static/swagger-ui-bundle.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another host
    script = await client.get("/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    css = await client.get("/docs/static/swagger-ui.css")
    assert css.status_code == 200


async def test_the_document_passes_openapi_spec_validator(client: httpx.AsyncClient) -> None:
    """The OpenAPI 3.1 specification as openapi-spec-validator reads it, which compiles every
    ``pattern`` with Python's ``re``: so no ``\\p{..}`` reaches the document."""
    document = await fetch_document(client)
    openapi_spec_validator.validate(document)


async def test_the_document_validates_and_declares_the_http_headers(
    client: httpx.AsyncClient,
) -> None:
    document = await fetch_document(client)
    schemathesis.openapi.from_dict(document).validate()  # the OpenAPI 3.1 meta-schema
    components = document["components"]
    assert set(components["headers"]) == HEADERS
    assert set(components["parameters"]) == {"If-Match", "If-None-Match"}
    paths = document["paths"]

    def parameters(path: str, method: str) -> set[str]:
        return {resolve(document, p)["name"] for p in paths[path][method]["parameters"]}

    # Conditional requests: If-Match where 412 can answer, If-None-Match where 304 can.
    assert {"If-Match"} <= parameters(ARTICLE, "patch") and {"If-Match"} <= parameters(
        ARTICLE, "delete"
    )
    for path in (ARTICLE, "/api/v1/articles", "/api/v1/articles/popular"):
        assert "If-None-Match" in parameters(path, "get")
        not_modified = paths[path]["get"]["responses"]["304"]
        assert "content" not in not_modified
        assert not_modified["headers"]["ETag"] == {"$ref": "#/components/headers/ETag"}
        assert {"ETag", "X-Cache"} <= set(paths[path]["get"]["responses"]["200"]["headers"])
    for path, method, operation in operations(document):
        names = {resolve(document, p)["name"] for p in operation["parameters"]}
        assert ("If-Match" in names) == ("412" in operation["responses"]), (method, path)
        assert ("If-None-Match" in names) == ("304" in operation["responses"]), (method, path)
        rate_limited = "429" in operation["responses"]
        for status, response in operation["responses"].items():
            headers = response["headers"]
            assert all(set(h) == {"$ref"} for h in headers.values())  # the components
            assert "X-Request-ID" in headers, (method, path, status)
            if status in ("429", "503"):
                assert "Retry-After" in headers, (method, path, status)
            if status == "401":
                assert "WWW-Authenticate" in headers, (method, path)
            if status == "201":
                assert ("Location" in headers) == (path == "/api/v1/articles"), (method, path)
        success = operation["responses"][min(operation["responses"])]["headers"]
        assert rate_limited == ("RateLimit-Remaining" in success), (method, path)
    assert {"ETag", "Location"} <= set(
        paths["/api/v1/articles"]["post"]["responses"]["201"]["headers"]
    )
    assert "ETag" in paths[ARTICLE]["patch"]["responses"]["200"]["headers"]
    assert components["headers"]["Retry-After"]["schema"]["type"] == "integer"


async def test_descriptions_are_markdown_and_summaries_are_whole_sentences(
    client: httpx.AsyncClient,
) -> None:
    document = await fetch_document(client)

    def texts(node: Any, key: str) -> Iterator[str]:
        if isinstance(node, list):
            for item in node:
                yield from texts(item, key)
        elif isinstance(node, dict):
            for name, value in node.items():
                if name == key and isinstance(value, str):
                    yield value
                elif name not in ("example", "examples"):
                    yield from texts(value, key)

    descriptions = list(texts(document, "description"))
    assert len(descriptions) > 20
    assert not [text for text in descriptions if "``" in text]
    for path, method, operation in operations(document):
        summary = operation["summary"]
        where = f"{method.upper()} {path}: {summary!r}"
        assert re.fullmatch(r"[A-Z][^\n`]*[.!?]", summary), where
        assert summary.count("(") == summary.count(")"), where
        rest = operation.get("description", "")
        assert not rest or re.match(r"[A-Z`0-9]", rest), f"{where} cut before {rest[:30]!r}"
    edit = document["paths"][ARTICLE]["patch"]
    assert edit["summary"] == "Change some fields (author only)."
    assert edit["description"].startswith("Send `If-Match` with the ETag you read")
    listing = document["paths"]["/api/v1/articles"]["get"]
    assert "`next_cursor`" in listing["description"]


async def test_the_probes_are_documented_as_they_answer(client: httpx.AsyncClient) -> None:
    document = await fetch_document(client)
    for path in ("/healthz", "/readyz", "/metrics"):
        operation = document["paths"][path]["get"]
        assert operation["tags"] == ["operations"]
        assert "security" not in operation
        response = await client.get(path)
        assert response.status_code == 200
        assert_documented(document, path, "get", response)
    readyz = document["paths"]["/readyz"]["get"]["responses"]
    assert set(readyz) == {"200", "503"}
    assert "Retry-After" in readyz["503"]["headers"]
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(metrics) == {"text/plain", "application/openmetrics-text"}
    scraped = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert_documented(document, "/metrics", "get", scraped)
    assert scraped.headers["Content-Type"].startswith("application/openmetrics-text")


async def test_every_request_example_is_valid_and_the_server_takes_it(
    client: httpx.AsyncClient,
) -> None:
    """What "Try it out" sends, in the order a reader of the docs would: register, log in,
    get an API key, publish, edit, ask for a password reset."""
    document = await fetch_document(client)
    examples: dict[tuple[str, str], Any] = {}
    for path, method, operation in operations(document):
        if "requestBody" not in operation:
            continue
        example = example_of(document, operation)
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        validate(document, example, schema)
        assert example == resolve(document, schema)["examples"][0]
        assert None not in example.values(), (method, path)
        examples[(path, method)] = example

    new_title = examples[(ARTICLE, "patch")]["title"]

    async def send(
        path: str, method: str, *, status: int | tuple[int, ...], **kwargs: Any
    ) -> httpx.Response:
        url = path.replace("{article_id}", str(kwargs.pop("article_id", "")))
        response = await client.request(method, url, json=examples.pop((path, method)), **kwargs)
        expected = status if isinstance(status, tuple) else (status,)
        assert response.status_code in expected, (method, path, response.text)
        assert_documented(document, path, method, response)
        return response

    await send("/api/v1/users", "post", status=(201, 409))  # 409: registered already
    token = (await send("/api/v1/auth/login", "post", status=200)).json()["token"]
    session = {"Authorization": f"Bearer {token}"}
    key = (await send("/api/v1/api-keys", "post", status=201, headers=session)).json()["key"]
    created = await send("/api/v1/articles", "post", status=201, headers={"API-Key": key})
    article = created.json()
    assert created.headers["Location"] == f"/api/v1/articles/{article['id']}"
    conditional = {"API-Key": key, "If-Match": created.headers["ETag"]}
    edited = await send(ARTICLE, "patch", status=200, headers=conditional, article_id=article["id"])
    assert edited.json()["title"] == new_title
    await send("/api/v1/auth/reset-password", "post", status=202)
    # The token of the confirmation's example is well formed, not genuine: the body is valid.
    refused = await send("/api/v1/auth/reset-password/confirm", "post", status=400)
    assert refused.json()["error"]["code"] == "invalid_token"
    assert not examples, f"examples not sent: {sorted(examples)}"

    read = await client.get(f"/api/v1/articles/{article['id']}")
    assert_documented(document, ARTICLE, "get", read)
    again = await client.get(
        f"/api/v1/articles/{article['id']}", headers={"If-None-Match": read.headers["ETag"]}
    )
    assert again.status_code == 304
    assert_documented(document, ARTICLE, "get", again)
    deleted = await client.delete(
        f"/api/v1/articles/{article['id']}",
        headers={"API-Key": key, "If-Match": read.headers["ETag"]},
    )
    assert_documented(document, ARTICLE, "delete", deleted)
    assert deleted.status_code in (204, 412)  # 412 if processing moved the ETag on since
    stale = await client.delete(
        f"/api/v1/articles/{article['id']}", headers={"API-Key": key, "If-Match": '"0-0-x"'}
    )
    assert stale.status_code in (404, 412)
    assert_documented(document, ARTICLE, "delete", stale)


@dataclass
class Call:
    """One operation's request, sent with various credentials; each answer as documented."""

    client: httpx.AsyncClient
    document: Any
    path: str
    method: str
    url: str
    body: Any

    async def status(self, headers: dict[str, str]) -> int:
        response = await self.client.request(self.method, self.url, json=self.body, headers=headers)
        assert_documented(self.document, self.path, self.method, response)
        return response.status_code


async def test_each_operation_accepts_exactly_the_credentials_it_declares(
    client: httpx.AsyncClient,
) -> None:
    document = await fetch_document(client)
    ann = await account(client)
    article = await client.post(
        "/api/v1/articles", json={"title": "T", "content": "C"}, headers=ann.api_key
    )
    assert article.status_code == 201
    spare = await client.post("/api/v1/api-keys", json={"name": "spare"}, headers=ann.session)
    ids = {"{article_id}": str(article.json()["id"]), "{key_id}": str(spare.json()["id"])}
    secured = [
        (path, method, operation)
        for path, method, operation in operations(document)
        if "security" in operation
    ]
    session_only = {
        ("/api/v1/api-keys", "get"),
        ("/api/v1/api-keys", "post"),
        ("/api/v1/api-keys/{key_id}", "delete"),
        ("/api/v1/auth/logout", "post"),
    }
    assert {(path, method) for path, method, _ in secured} == session_only | {
        ("/api/v1/users/me", "get"),
        ("/api/v1/articles", "post"),
        (ARTICLE, "patch"),
        (ARTICLE, "delete"),
    }
    for path, method, operation in secured:
        schemes = {name for requirement in operation["security"] for name in requirement}
        assert schemes == ({"bearer"} if (path, method) in session_only else {"apiKey", "bearer"})
        url = path
        for name, value in ids.items():
            url = url.replace(name, value)
        body = example_of(document, operation) if "requestBody" in operation else None
        call = Call(client, document, path, method, url, body)
        where = (method, path)
        assert await call.status({}) == 401, where
        assert await call.status({"Authorization": "Bearer nonsense"}) == 401, where
        api_key = await call.status(ann.api_key)
        assert (api_key != 401) == ("apiKey" in schemes), where
        key_as_bearer = await call.status({"Authorization": f"Bearer {ann.key}"})
        assert (key_as_bearer != 401) == ("apiKey" in schemes), where
        # A fresh session each time: logging out ends the one it presents.
        fresh = {"Authorization": f"Bearer {await login(client, ann.email)}"}
        assert await call.status(fresh) != 401, where


OPERATION_IDS = {
    "list_articles",
    "get_article",
    "create_article",
    "update_article",
    "delete_article",
    "get_article_views",
    "popular_articles",
    "register",
    "login",
    "logout",
    "create_api_key",
    "list_api_keys",
    "delete_api_key",
    "me",
    "request_password_reset",
    "confirm_password_reset",
    "healthz",
    "readyz",
    "metrics",
}


def media_examples(media: Any) -> list[Any]:
    """The example values of a media type object: ``example`` or each of ``examples``."""
    if "example" in media:
        return [media["example"]]
    return [named["value"] for named in media.get("examples", {}).values()]


async def test_operation_ids_servers_and_an_example_of_every_answer(
    client: httpx.AsyncClient,
) -> None:
    document = await fetch_document(client)
    assert document["servers"] == [
        {"url": "/", "description": document["servers"][0]["description"]}
    ]
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert sorted(ids) == sorted(OPERATION_IDS)
    counted = 0
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            for media_type, media in response.get("content", {}).items():
                values = media_examples(media)
                assert values, (method, path, status, media_type)
                for value in values:
                    if media_type == "application/json":
                        validate(document, value, media["schema"])
                    else:
                        assert isinstance(value, str)
                    counted += 1
                if status.startswith(("4", "5")) and media_type == "application/json":
                    code = values[0]["error"]["code"]
                    assert code != "error" and code.islower(), (method, path, status)
    assert counted > 90
    # A 405 is not an operation's answer but a path's: a reusable response, with Allow.
    not_allowed = document["components"]["responses"]["MethodNotAllowed"]
    assert not_allowed["headers"] == {"Allow": {"$ref": "#/components/headers/Allow"}}
    response = await client.request("PUT", "/api/v1/articles/1")
    assert response.status_code == 405 and "Allow" in response.headers
    validate(document, response.json(), not_allowed["content"]["application/json"]["schema"])


async def test_the_list_declares_both_pages_and_the_rules_it_enforces(
    client: httpx.AsyncClient,
) -> None:
    document = await fetch_document(client)
    schemas = document["components"]["schemas"]
    listing = document["paths"]["/api/v1/articles"]["get"]
    media = listing["responses"]["200"]["content"]["application/json"]
    page_schema = resolve(document, media["schema"])
    assert page_schema["discriminator"]["propertyName"] == "kind"
    assert {branch["$ref"].rsplit("/", 1)[1] for branch in page_schema["oneOf"]} == {
        "ArticlePage",
        "ArticleCursorPage",
    }
    for name, kind in (("ArticlePage", "offset"), ("ArticleCursorPage", "cursor")):
        assert schemas[name]["properties"]["kind"]["const"] == kind
        assert "kind" in schemas[name]["required"]
    assert set(media["examples"]) == {"offset", "cursor"}

    # Both answers the server gives validate against the one schema.
    ann = await account(client)
    tag = "contract-" + ann.email[:8]
    for n in range(3):
        made = await client.post(
            "/api/v1/articles",
            json={"title": f"T{n}", "content": "C", "tags": [tag]},
            headers=ann.api_key,
        )
        assert made.status_code == 201
    offset = await client.get("/api/v1/articles", params={"tag": tag, "per_page": 2})
    assert offset.json()["kind"] == "offset"
    assert_documented(document, "/api/v1/articles", "get", offset)
    cursor = await client.get(
        "/api/v1/articles",
        params={"tag": tag, "per_page": 2, "cursor": offset.json()["next_cursor"]},
    )
    assert cursor.json()["kind"] == "cursor" and len(cursor.json()["articles"]) == 1
    assert_documented(document, "/api/v1/articles", "get", cursor)

    # page and cursor are exclusive: both descriptions say so, and the server refuses both.
    params = {p["name"]: p for p in listing["parameters"] if "name" in p}
    for name in ("page", "cursor"):
        assert "422" in params[name]["description"], name
        assert "null" not in str(params[name]["schema"]), name  # given or left out
    both = await client.get(
        "/api/v1/articles", params={"page": 1, "cursor": offset.json()["next_cursor"]}
    )
    assert both.status_code == 422
    assert both.json()["error"]["details"][0]["loc"] == ["query", "cursor"]
    assert_documented(document, "/api/v1/articles", "get", both)
    # The list reads PostgreSQL: it declares the 503 of an outage, as every read does.
    for path in ("/api/v1/articles", ARTICLE, "/api/v1/articles/popular", ARTICLE + "/views"):
        assert "503" in document["paths"][path]["get"]["responses"], path


async def test_tags_and_updates_are_refused_exactly_as_the_schema_says(
    client: httpx.AsyncClient,
) -> None:
    document = await fetch_document(client)
    schemas = document["components"]["schemas"]
    tag_schema = schemas["ArticleCreate"]["properties"]["tags"]["items"]
    assert "\\w" not in tag_schema["pattern"]  # \w is ASCII to ECMA-262, Unicode to Python
    assert "lower case" in tag_schema["description"]
    update = schemas["ArticleUpdate"]
    assert update["minProperties"] == 1
    assert "null" not in str(update["properties"])
    ann = await account(client)
    made = await client.post(
        "/api/v1/articles", json={"title": "T", "content": "C"}, headers=ann.api_key
    )
    url = f"/api/v1/articles/{made.json()['id']}"
    tags = {"café": True, "日本": True, "C++": True, "x_1.0": True, "-x": False, "a!": False}
    tags |= {"\u00e9\u0301": False, "a\u00b7b": False}  # a combining mark, a middle dot
    for tag, valid in tags.items():
        schema_says = jsonschema_rs.Draft202012Validator(tag_schema).is_valid(tag)
        assert schema_says == valid, tag
        response = await client.patch(url, json={"tags": [tag]}, headers=ann.api_key)
        assert (response.status_code == 200) == valid, (tag, response.text)
        if valid:
            assert response.json()["tags"] == [tag.lower()]
    for body in ({}, {"title": None}, {"title": "ok", "tags": None}):
        assert not jsonschema_rs.Draft202012Validator(
            {**update, "components": document["components"]}
        ).is_valid(body)
        response = await client.patch(url, json=body, headers=ann.api_key)
        assert response.status_code == 422, body
        assert_documented(document, ARTICLE, "patch", response)


async def test_links_lead_from_a_created_article_and_from_a_page_onwards(
    client: httpx.AsyncClient,
) -> None:
    document = await fetch_document(client)
    by_id = {op["operationId"]: op for _, _, op in operations(document)}
    created = by_id["create_article"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in created.values()} == {
        "get_article",
        "get_article_views",
        "update_article",
        "delete_article",
    }
    for link in created.values():
        assert link["parameters"] == {"article_id": "$response.body#/id"}
        assert link["operationId"] in by_id
    next_page = by_id["list_articles"]["responses"]["200"]["links"]["NextPage"]
    assert next_page == {
        "operationId": "list_articles",
        "parameters": {"cursor": "$response.body#/next_cursor"},
        "description": next_page["description"],
    }
    revoke = by_id["create_api_key"]["responses"]["201"]["links"]["DeleteApiKey"]
    assert revoke["parameters"] == {"key_id": "$response.body#/id"}

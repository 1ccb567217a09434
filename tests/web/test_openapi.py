"""service.web.openapi and service.web.api.docs: the contract is served, renders offline, and holds.

The schemathesis run generates requests from the live OpenAPI document (a bounded number of
examples per operation) against the real server: no 5xx, and every response matches the
document (status code, content type, body schema).
"""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.live import LiveServer


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
    listing = {p["name"] for p in paths["/api/v1/articles"]["get"]["parameters"]}
    assert listing == {"page", "per_page", "cursor", "author_id", "tag", "q"}
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


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_generated_requests_get_no_5xx_and_documented_responses(live: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(live.url + "/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def holds(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        holds()

"""service.web.errors: every error status answers with the one envelope."""

from __future__ import annotations

import httpx
import pytest


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert set(error) <= {"code", "message", "details", "request_id"}
    return dict(error)


async def test_404(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/no/such/thing"), 404, "not_found")


async def test_405_keeps_the_allow_header(client: httpx.AsyncClient) -> None:
    response = await client.delete("/healthz")
    assert_envelope(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


async def test_400_on_malformed_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/_test/items", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert_envelope(response, 400, "bad_request")


async def test_415_on_a_non_json_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/_test/items", content=b"name=x", headers={"Content-Type": "text/plain"}
    )
    assert_envelope(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "body", [{"name": "x"}, {"name": "x", "count": "many"}, {"name": 5, "count": 1}]
)
async def test_422_lists_each_invalid_field(client: httpx.AsyncClient, body: object) -> None:
    error = assert_envelope(await client.post("/_test/items", json=body), 422, "validation_error")
    details = error["details"]
    assert isinstance(details, list) and details
    assert all({"loc", "message", "type"} <= set(d) for d in details)


async def test_500_hides_the_exception(client: httpx.AsyncClient) -> None:
    response = await client.get("/_test/boom")
    assert_envelope(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text

"""service.web.api.users: registration and /users/me, with every error path."""

from __future__ import annotations

import httpx
import pytest

from tests.support.api import PASSWORD, account, register, unique_email


async def test_register_normalises_the_email_and_hides_the_password(
    client: httpx.AsyncClient,
) -> None:
    email = unique_email("Mixed.Case").replace("example.com", "EXAMPLE.com")
    user = await register(client, email=email, name="  Ann  ")
    assert user["email"] == email.lower()
    assert user["name"] == "Ann"
    assert set(user) == {"id", "email", "name", "created_at"}


async def test_a_taken_email_is_409_whatever_its_case(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    response = await client.post(
        "/api/v1/users", json={"email": email.upper(), "password": PASSWORD, "name": "B"}
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_taken"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD, "name": "A"}, "email"),
        ({"email": "a@example.com", "password": "short", "name": "A"}, "password"),
        ({"email": "a@example.com", "password": "x" * 129, "name": "A"}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "name": ""}, "name"),
        ({"email": "a@example.com", "password": PASSWORD, "name": "n" * 101}, "name"),
        ({"email": "a@example.com", "password": 1234567890, "name": "A"}, "password"),
        ({"email": "a@example.com", "password": PASSWORD}, "name"),
        ({"email": "a@example.com", "password": PASSWORD, "name": "A", "admin": True}, "admin"),
    ],
)
async def test_invalid_registrations_are_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.post("/api/v1/users", json=body)
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert any(field in detail["loc"] for detail in details), details


async def test_a_json_array_body_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/users", json=[1, 2])
    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["error"]["details"]] == [["body"]]


async def test_endpoints_without_parameters_refuse_any(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    response = await client.get("/api/v1/users/me?verbose=1", headers=ann.api_key)
    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["error"]["details"]] == [["query", "verbose"]]
    body = {"email": unique_email(), "password": PASSWORD, "name": "Q"}
    assert (await client.post("/api/v1/users?invite=x", json=body)).status_code == 422


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/users", content=b'{"email": "a@', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


async def test_a_form_body_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/users", data={"email": "a@example.com"})
    assert response.status_code == 415


async def test_me_with_a_session_and_with_an_api_key(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    for headers in (ann.session, ann.api_key, {"Authorization": f"Bearer {ann.key}"}):
        response = await client.get("/api/v1/users/me", headers=headers)
        assert response.status_code == 200
        assert response.json()["id"] == ann.id
        assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer nds_" + "x" * 43},
        {"API-Key": "nd_not-a-key"},
        {"API-Key": "nd_" + "A" * 48},
    ],
)
async def test_me_without_valid_credentials_is_401_with_a_challenge(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/users/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")

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


@pytest.mark.parametrize(
    "name",
    [
        "Ann\r\nBcc: eve@example.com",
        "Ann\n",
        "\tAnn",
        "A\x00n",
        "Ann\x1b[2J",
        "A\x7fn",
        "A\x85n",
        "A\x9f",
    ],
)
async def test_a_name_with_control_characters_is_422(client: httpx.AsyncClient, name: str) -> None:
    body = {"email": unique_email(), "password": PASSWORD, "name": name}
    response = await client.post("/api/v1/users", json=body)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["error"]["details"]
    assert detail["loc"] == ["body", "name"]
    assert "control characters" in detail["message"]


async def test_names_in_any_script_with_inner_spaces_are_accepted(
    client: httpx.AsyncClient,
) -> None:
    for name in ("Zoë O'Brien-Łukasz", "山田 太郎", "Ann\u00a0Lee"):
        assert (await register(client, name=name))["name"] == name


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

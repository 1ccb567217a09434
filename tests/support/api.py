"""Small builders for API tests: a registered user, a session token, an API key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

PASSWORD = "correct horse battery"


@dataclass
class Account:
    id: int
    email: str
    name: str
    token: str
    key: str

    @property
    def session(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def api_key(self) -> dict[str, str]:
        return {"API-Key": self.key}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


async def register(http: httpx.AsyncClient, email: str | None = None, name: str = "Ann") -> Any:
    response = await http.post(
        "/api/v1/users", json={"email": email or unique_email(), "password": PASSWORD, "name": name}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def login(http: httpx.AsyncClient, email: str) -> str:
    response = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def account(http: httpx.AsyncClient, name: str = "Ann") -> Account:
    user = await register(http, name=name)
    token = await login(http, user["email"])
    response = await http.post(
        "/api/v1/api-keys", json={"name": "tests"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.text
    return Account(user["id"], user["email"], user["name"], token, response.json()["key"])


async def publish(http: httpx.AsyncClient, who: Account, **fields: Any) -> Any:
    body = {"title": "A title", "content": "Some content.", **fields}
    response = await http.post("/api/v1/articles", json=body, headers=who.api_key)
    assert response.status_code == 201, response.text
    return response.json()

"""service.web.api.auth: login sessions in Redis, logout effective at once."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
from redis.asyncio import Redis

from tests.support.api import PASSWORD, account, register, unique_email
from tests.support.databases import ServerStack


async def test_login_gives_an_opaque_bearer_token_with_its_expiry(
    client: httpx.AsyncClient,
) -> None:
    user = await register(client)
    response = await client.post(
        "/api/v1/auth/login", json={"email": user["email"].upper(), "password": PASSWORD}
    )
    assert response.status_code == 200
    # The answer holds a credential: no cache may keep it.
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["token"].startswith("nds_")
    expires = datetime.fromisoformat(body["expires_at"])
    assert datetime.now(UTC) + timedelta(days=6) < expires < datetime.now(UTC) + timedelta(days=8)


async def test_wrong_password_and_unknown_email_get_the_same_401(
    client: httpx.AsyncClient,
) -> None:
    user = await register(client)
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": user["email"], "password": "wrong password!"}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": unique_email(), "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert wrong.json()["error"]["code"] == unknown.json()["error"]["code"] == "invalid_login"


async def test_the_token_is_kept_in_redis_only_as_a_hash(
    client: httpx.AsyncClient, stack: ServerStack
) -> None:
    ann = await account(client)
    redis = Redis.from_url(stack.redis_url)
    try:
        digest = hashlib.sha256(ann.token.encode()).hexdigest()
        # The user's id and creation time (service.domain.login_sessions), nothing secret.
        stored = await redis.get(f"session:{digest}")
        assert stored is not None
        user_id, created = stored.decode().split(":")
        assert user_id == str(ann.id) and created.isdigit()
        assert 0 < await redis.ttl(f"session:{digest}") <= 7 * 24 * 3600
        assert await redis.keys(f"*{ann.token}*") == []
    finally:
        await redis.aclose()


async def test_logout_ends_the_session_at_once(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    assert (await client.get("/api/v1/users/me", headers=ann.session)).status_code == 200
    response = await client.post("/api/v1/auth/logout", headers=ann.session)
    assert response.status_code == 204
    assert response.content == b"" and "content-type" not in response.headers
    assert (await client.get("/api/v1/users/me", headers=ann.session)).status_code == 401
    # Logging out twice: the token is already gone.
    assert (await client.post("/api/v1/auth/logout", headers=ann.session)).status_code == 401
    # The user's API key is untouched.
    assert (await client.get("/api/v1/users/me", headers=ann.api_key)).status_code == 200


async def test_logout_needs_a_session_not_an_api_key(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    response = await client.post("/api/v1/auth/logout", headers=ann.api_key)
    assert response.status_code == 401


async def test_login_validates_its_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/login", json={"email": "x@example.com"})
    assert response.status_code == 422
    response = await client.post(
        "/api/v1/auth/login",
        content=b"email=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415

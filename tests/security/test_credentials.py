"""Limits per user, not per credential (service.web.endpoint, service.domain.api_keys,
service.domain.login_sessions, service.web.auth): writes count per user across every key and
session, keys and sessions per user are capped, and failed authentication is limited per
client before it costs a query."""

from __future__ import annotations

import httpx

from service.domain.credentials import new_api_key
from tests.security.conftest import StartServer
from tests.support.api import PASSWORD, login, register

ARTICLE = {"title": "A title", "content": "Some content."}


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": f"{address}, 127.0.0.1"}


async def _new_key(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post(
        "/api/v1/api-keys", json={"name": "k"}, headers={"Authorization": f"Bearer {token}"}
    )


async def test_writes_count_per_user_across_all_credentials(serve: StartServer) -> None:
    server = serve(RATE_LIMIT_WRITE="5/day")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        user = await register(http)
        token = await login(http, user["email"])
        keys = [(await _new_key(http, token)).json()["key"] for _ in range(2)]  # 2 writes
        statuses = [
            (
                await http.post("/api/v1/articles", json=ARTICLE, headers={"API-Key": keys[0]})
            ).status_code
            for _ in range(4)
        ]
        assert statuses == [201, 201, 201, 429]
        # Another key, or the session, of the same user: the same budget, spent.
        other_key = await http.post("/api/v1/articles", json=ARTICLE, headers={"API-Key": keys[1]})
        assert other_key.status_code == 429
        session = await http.post(
            "/api/v1/articles", json=ARTICLE, headers={"Authorization": f"Bearer {token}"}
        )
        assert session.status_code == 429
        assert session.headers["Retry-After"]


async def test_api_keys_per_user_are_capped(serve: StartServer) -> None:
    server = serve(MAX_API_KEYS_PER_USER="2")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        user = await register(http)
        token = await login(http, user["email"])
        first, second, third = [await _new_key(http, token) for _ in range(3)]
        assert (first.status_code, second.status_code) == (201, 201)
        assert third.status_code == 409, third.text
        assert third.json()["error"]["code"] == "too_many_api_keys"
        # Revoking one frees its slot.
        revoked = await http.delete(
            f"/api/v1/api-keys/{first.json()['id']}", headers={"Authorization": f"Bearer {token}"}
        )
        assert revoked.status_code == 204
        assert (await _new_key(http, token)).status_code == 201


async def test_a_login_past_the_session_cap_ends_the_oldest_session(serve: StartServer) -> None:
    server = serve(MAX_SESSIONS_PER_USER="2")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        user = await register(http)
        tokens = [await login(http, user["email"]) for _ in range(3)]

        async def me(token: str) -> int:
            answer = await http.get(
                "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
            )
            return answer.status_code

        assert [await me(token) for token in tokens] == [401, 200, 200]


async def test_failed_authentication_is_limited_per_client(serve: StartServer) -> None:
    server = serve(RATE_LIMIT_AUTH_FAILURES="3/day", TRUSTED_PROXIES="127.0.0.1/32")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        user = await register(http)
        token = await login(http, user["email"])
        real_key = (await _new_key(http, token)).json()["key"]
        guesser, other = _from("198.51.100.23"), _from("192.0.2.77")
        statuses = []
        for _ in range(4):
            made_up, _prefix = new_api_key()  # a valid checksum: only a query could refuse it
            answer = await http.post(
                "/api/v1/articles", json=ARTICLE, headers={**guesser, "API-Key": made_up}
            )
            statuses.append(answer.status_code)
        assert statuses == [401, 401, 401, 429]
        # Past the limit the client is refused whatever it presents...
        refused = await http.post(
            "/api/v1/articles", json=ARTICLE, headers={**guesser, "API-Key": real_key}
        )
        assert refused.status_code == 429
        right_password = await http.post(
            "/api/v1/auth/login",
            json={"email": user["email"], "password": PASSWORD},
            headers=guesser,
        )
        assert right_password.status_code == 429
        # ...and other clients are not.
        allowed = await http.post(
            "/api/v1/articles", json=ARTICLE, headers={**other, "API-Key": real_key}
        )
        assert allowed.status_code == 201, allowed.text

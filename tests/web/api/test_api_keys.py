"""service.web.api.api_keys: issued once, listed without secrets, revoked at once."""

from __future__ import annotations

import asyncpg
import httpx

from service.domain.credentials import api_key_prefix
from tests.support.api import account


async def test_a_key_is_shown_once_and_stored_only_as_a_hash(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    ann = await account(client)
    created = await client.post("/api/v1/api-keys", json={"name": "laptop"}, headers=ann.session)
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    assert api_key_prefix(body["key"]) == body["prefix"]
    assert body["key"].startswith("nd_") and len(body["key"]) == 51
    listed = await client.get("/api/v1/api-keys", headers=ann.session)
    keys = listed.json()["api_keys"]
    assert [k["name"] for k in keys] == ["tests", "laptop"]
    assert all(set(k) == {"id", "name", "prefix", "created_at"} for k in keys)
    stored = await pg.fetchrow("SELECT * FROM api_keys WHERE id = $1", body["id"])
    assert body["key"] not in str(dict(stored))
    assert len(stored["key_hash"]) == 32


async def test_managing_keys_needs_a_session_token(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    assert (await client.get("/api/v1/api-keys", headers=ann.api_key)).status_code == 401
    response = await client.post("/api/v1/api-keys", json={"name": "x"}, headers=ann.api_key)
    assert response.status_code == 401


async def test_a_revoked_key_stops_working_at_once(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    assert (await client.get("/api/v1/users/me", headers=ann.api_key)).status_code == 200
    key_id = (await client.get("/api/v1/api-keys", headers=ann.session)).json()["api_keys"][0]["id"]
    revoked = await client.delete(f"/api/v1/api-keys/{key_id}", headers=ann.session)
    assert revoked.status_code == 204
    assert revoked.content == b"" and "content-type" not in revoked.headers
    assert (await client.get("/api/v1/users/me", headers=ann.api_key)).status_code == 401
    assert (await client.get("/api/v1/api-keys", headers=ann.session)).json()["api_keys"] == []
    # Revoking again, or a key that does not exist: 404.
    assert (
        await client.delete(f"/api/v1/api-keys/{key_id}", headers=ann.session)
    ).status_code == 404


async def test_nobody_can_revoke_another_users_key(client: httpx.AsyncClient) -> None:
    ann, bob = await account(client), await account(client, name="Bob")
    ann_key = (await client.get("/api/v1/api-keys", headers=ann.session)).json()["api_keys"][0]
    response = await client.delete(f"/api/v1/api-keys/{ann_key['id']}", headers=bob.session)
    assert response.status_code == 404
    assert (await client.get("/api/v1/users/me", headers=ann.api_key)).status_code == 200


async def test_a_key_with_a_wrong_checksum_is_refused(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    last = ann.key[-1]
    tampered = ann.key[:-1] + ("A" if last != "A" else "B")
    assert api_key_prefix(tampered) is None
    response = await client.get("/api/v1/users/me", headers={"API-Key": tampered})
    assert response.status_code == 401


async def test_key_names_are_validated(client: httpx.AsyncClient) -> None:
    ann = await account(client)
    for body in ({}, {"name": ""}, {"name": "x" * 101}, {"name": "ok", "scope": "all"}):
        response = await client.post("/api/v1/api-keys", json=body, headers=ann.session)
        assert response.status_code == 422, body

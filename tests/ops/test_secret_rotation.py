"""Rotating SECRET_KEY, as deploy/README.md's Procedures describe it: nobody is logged out
(session tokens and API keys are random secrets stored as SHA-256 hashes, no key involved);
what the key signs, the password reset tokens, is refused once it changes, and a reset token
made with the new key works."""

from __future__ import annotations

import secrets
import time

import asyncpg
import httpx

from service.domain.password_reset import make_token
from tests.conftest import LiveServers
from tests.support.api import account

OLD_KEY = secrets.token_urlsafe(48)
NEW_KEY = secrets.token_urlsafe(48)


async def _reset_token(pg: asyncpg.Connection, key: str, user_id: int) -> str:
    """A reset token as the worker mails it, signed with ``key``."""
    password_hash = await pg.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id)
    return make_token(key, user_id=user_id, password_hash=password_hash, ttl=3600, now=time.time())


async def test_a_new_secret_key_keeps_sessions_and_keys_and_voids_reset_tokens(
    live_server: LiveServers, pg: asyncpg.Connection
) -> None:
    before = live_server(SECRET_KEY=OLD_KEY)
    async with httpx.AsyncClient(base_url=before.url, timeout=30) as http:
        ann = await account(http)
        mailed = await _reset_token(pg, OLD_KEY, ann.id)
    before.stop()

    after = live_server(SECRET_KEY=NEW_KEY, log="after.log")
    async with httpx.AsyncClient(base_url=after.url, timeout=30) as http:
        assert (await http.get("/api/v1/users/me", headers=ann.session)).status_code == 200
        assert (await http.get("/api/v1/users/me", headers=ann.api_key)).status_code == 200

        confirm = "/api/v1/auth/reset-password/confirm"
        refused = await http.post(confirm, json={"token": mailed, "new_password": "x" * 16})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "invalid_token"

        fresh = await _reset_token(pg, NEW_KEY, ann.id)
        accepted = await http.post(confirm, json={"token": fresh, "new_password": "y" * 16})
        assert accepted.status_code == 204, accepted.text

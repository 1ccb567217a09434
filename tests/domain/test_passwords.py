"""service.domain.passwords: argon2id, verified off the loop, rehashed when parameters change."""

from __future__ import annotations

import asyncio
import threading

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher

from service.core.errors import Unavailable
from service.domain.passwords import (
    PasswordHashing,
    hash_password,
    needs_rehash,
    verify_password,
)
from tests.support.api import PASSWORD, register


async def test_hash_and_verify() -> None:
    hashed = await hash_password("a long password")
    assert hashed.startswith("$argon2id$")
    assert await verify_password(hashed, "a long password")
    assert not await verify_password(hashed, "another password")
    assert not await verify_password(None, "a long password")
    assert not await verify_password("not a hash", "a long password")
    assert not needs_rehash(hashed)


async def test_login_rehashes_a_hash_made_with_old_parameters(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    user = await register(client)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    assert needs_rehash(weak)
    await pg.execute("UPDATE users SET password_hash = $1 WHERE id = $2", weak, user["id"])
    response = await client.post(
        "/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD}
    )
    assert response.status_code == 200
    stored = await pg.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"])
    assert stored != weak and not needs_rehash(stored)


async def test_a_call_that_waits_too_long_for_a_hashing_thread_is_unavailable() -> None:
    hashing = PasswordHashing(1, wait_seconds=0.05)
    release = threading.Event()
    try:
        busy = asyncio.ensure_future(hashing.run(release.wait, 10))  # holds the only thread
        await asyncio.sleep(0.01)
        with pytest.raises(Unavailable, match="Too many password checks"):
            await hashing.run(str, "never run")
        release.set()
        assert await busy is True
        assert await hashing.run(str, "runs now") == "runs now"  # the slot is free again
    finally:
        release.set()
        hashing.close()

"""service.domain.login_sessions: tokens in Redis under their hash, with a TTL, revocable one or
all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from service.domain.login_sessions import (
    born,
    create_session,
    end_all_sessions,
    end_session,
    session_owner,
    session_user,
)
from tests.support.databases import ServerStack


@pytest.fixture
async def redis(stack: ServerStack) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    yield client
    await client.aclose()


async def test_a_session_lives_until_it_ends(redis: Redis) -> None:
    token, _ = await create_session(redis, user_id=901, ttl=60)
    assert await session_user(redis, token) == 901
    await end_session(redis, token=token, user_id=901)
    assert await session_user(redis, token) is None


async def test_ending_all_sessions_of_a_user_spares_the_others(redis: Redis) -> None:
    mine = [(await create_session(redis, user_id=902, ttl=60))[0] for _ in range(3)]
    theirs, _ = await create_session(redis, user_id=903, ttl=60)
    assert await end_all_sessions(redis, user_id=902) == 3
    assert [await session_user(redis, token) for token in mine] == [None, None, None]
    assert await session_user(redis, theirs) == 903


async def test_malformed_or_unknown_tokens_resolve_to_nobody(redis: Redis) -> None:
    assert await session_user(redis, "nds_" + "x" * 43) is None
    assert await session_user(redis, "not-a-token") is None


async def test_a_session_expires_with_its_ttl(redis: Redis) -> None:
    token, expires_at = await create_session(redis, user_id=904, ttl=60)
    from service.domain.credentials import digest

    assert 0 < await redis.ttl(f"session:{digest(token).hex()}") <= 60
    assert expires_at.tzinfo is not None


async def test_a_session_names_its_user_by_id_and_creation_time(redis: Redis) -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    token, _ = await create_session(redis, user_id=905, ttl=60, user_created_at=created)
    assert await session_owner(redis, token) == (905, born(created))
    assert await session_user(redis, token) == 905
    old_style, _ = await create_session(redis, user_id=906, ttl=60)  # as stored before
    assert await session_owner(redis, old_style) == (906, None)

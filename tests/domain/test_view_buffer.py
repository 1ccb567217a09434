"""service.domain.view_buffer: views Redis could not take are kept and counted once, later.

A "slow Redis" here is a real one, paused with SIGSTOP: commands sent meanwhile wait in its
socket and are applied when it resumes, after the client has given up on them (the case
where a retry could count twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.cli.embedded import EmbeddedRedis
from service.core import keys
from service.domain.view_buffer import ViewBuffer
from service.infra.guard import BreakerOpen, RedisGuard
from tests.conftest import LiveServers
from tests.support.api import account, publish
from tests.support.live import LiveServer


@pytest.fixture
async def redis(own_redis: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis.url())
    yield client
    await client.aclose()


@contextlib.contextmanager
def paused(server: EmbeddedRedis) -> Iterator[None]:
    """Redis stopped in its tracks (SIGSTOP): it accepts bytes but answers nothing."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


async def pending(redis: Redis, article_id: int) -> int:
    return int(await redis.hget(keys.VIEWS_PENDING, str(article_id)) or 0)  # type: ignore[misc]


async def test_buffered_views_are_moved_into_the_pending_hash(redis: Redis) -> None:
    buffer = ViewBuffer(limit=100)
    for article_id in (1, 1, 2, 1):
        assert buffer.add(article_id)
    assert len(buffer) == 4
    guard = RedisGuard(timeout=5, breaker_seconds=0.1)
    assert await buffer.move(redis, guard) == 4
    assert (await pending(redis, 1), await pending(redis, 2)) == (3, 1)
    assert len(buffer) == 0
    assert await buffer.move(redis, guard) == 0  # nothing left: no call


async def test_a_move_whose_answer_was_lost_is_not_applied_twice(
    own_redis: EmbeddedRedis, redis: Redis
) -> None:
    buffer = ViewBuffer(limit=100)
    for _ in range(7):
        buffer.add(5)
    guard = RedisGuard(timeout=0.3, breaker_seconds=0.1)
    with paused(own_redis):
        with pytest.raises(TimeoutError):
            await buffer.move(redis, guard)  # sent, then given up on: Redis applies it later
        buffer.add(5)  # a view buffered meanwhile goes into the next move
    assert len(buffer) == 8
    await asyncio.sleep(0.2)  # the breaker's pause
    assert await buffer.move(redis, guard) == 7  # the timed-out batch again, same token
    assert await pending(redis, 5) == 7  # applied once, when Redis resumed
    assert await buffer.move(redis, guard) == 1
    assert await pending(redis, 5) == 8
    assert len(buffer) == 0


async def test_an_open_breaker_keeps_the_views_for_the_next_try(
    own_redis: EmbeddedRedis, redis: Redis
) -> None:
    buffer = ViewBuffer(limit=100)
    buffer.add(9)
    guard = RedisGuard(timeout=0.3, breaker_seconds=60)
    own_redis.stop()
    with pytest.raises(RedisConnectionError):
        await buffer.move(redis, guard)
    with pytest.raises(BreakerOpen):
        await buffer.move(redis, guard)
    own_redis.start()
    # At shutdown the last move goes through even while the breaker is open.
    await buffer.close(redis, guard)
    assert await pending(redis, 9) == 1
    assert len(buffer) == 0


def test_past_the_bound_views_are_dropped_not_held() -> None:
    buffer = ViewBuffer(limit=3)
    assert [buffer.add(1) for _ in range(5)] == [True, True, True, False, False]
    assert len(buffer) == 3


@pytest.fixture
def server_on_own_redis(own_redis: EmbeddedRedis, live_server: LiveServers) -> LiveServer:
    return live_server(REDIS_URL=own_redis.url(), CACHE_TIMEOUT="0.3", CACHE_BREAKER_SECONDS="1")


async def test_views_read_while_redis_is_stalled_are_counted_when_it_answers_again(
    own_redis: EmbeddedRedis, redis: Redis, server_on_own_redis: LiveServer
) -> None:
    async with httpx.AsyncClient(base_url=server_on_own_redis.url, timeout=60) as http:
        author = await account(http)
        article = await publish(http, author)
        path = f"/api/v1/articles/{article['id']}"
        before = await pending(redis, article["id"])
        with paused(own_redis):
            for _ in range(12):  # served from PostgreSQL; each view lands in the buffer
                assert (await http.get(path)).status_code == 200
        # Counted once Redis answers (the retry runs every second): exactly 12, none twice.
        for _ in range(300):
            if await pending(redis, article["id"]) - before >= 12:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # a second retry would show up as a double count
        assert await pending(redis, article["id"]) - before == 12
    log = server_on_own_redis.log_path.read_text()
    assert "buffered view(s) of 1 article(s) counted" in log
    assert "not counted" not in log

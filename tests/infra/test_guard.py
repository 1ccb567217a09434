"""service.infra.guard: a failing Redis opens the breaker, which then skips calls at once."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.cli.embedded import free_port
from service.infra.guard import BreakerOpen, RedisGuard
from tests.support.databases import ServerStack


async def test_a_failure_opens_the_breaker_and_later_calls_are_skipped() -> None:
    dead = Redis(port=free_port(), socket_connect_timeout=1)  # nothing listens there
    guard = RedisGuard(timeout=2, breaker_seconds=60)
    calls = 0

    async def ping() -> object:
        nonlocal calls
        calls += 1
        return await dead.ping()

    with pytest.raises(RedisConnectionError):
        await guard.call(ping)
    assert not guard.allows()
    with pytest.raises(BreakerOpen):
        await guard.call(ping)
    assert calls == 1  # the second call never reached Redis
    await dead.aclose()


async def test_a_call_past_its_timeout_fails_and_opens_the_breaker(stack: ServerStack) -> None:
    redis = Redis.from_url(stack.redis_url)
    guard = RedisGuard(timeout=0.05, breaker_seconds=60)
    with pytest.raises(TimeoutError):
        await guard.call(lambda: redis.blpop(["guard:never"], timeout=5))
    assert not guard.allows()
    await redis.aclose()


async def test_the_breaker_lets_a_probe_through_after_its_pause(stack: ServerStack) -> None:
    redis = Redis.from_url(stack.redis_url)
    guard = RedisGuard(timeout=2, breaker_seconds=0.01)
    guard.breaker.failed(RedisConnectionError("earlier"))
    guard.breaker.open_until -= 1  # the pause is over
    assert await guard.call(redis.ping) is True
    await redis.aclose()

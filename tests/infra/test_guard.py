"""service.infra.guard: a failing Redis opens the breaker, which then skips calls at once; a
call that ran out of time because its own event loop was behind does not.

A "slow Redis" here is a real one paused with SIGSTOP; a "lagging loop" is one held with
``time.sleep`` (in the test's loop, or in a live server's through ``/_test/block``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.cli.embedded import EmbeddedRedis, free_port
from service.infra.guard import BreakerOpen, LaggedOut, RedisGuard
from service.infra.loop_lag import LoopLag
from tests.conftest import PROBE_APP, LiveServers
from tests.support.api import register, unique_email
from tests.support.databases import ServerStack
from tests.support.live import LiveServer
from tests.support.metrics import ascrape


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


def hold_the_loop(seconds: float) -> None:
    """Block the running event loop on purpose, as a long callback would."""
    time.sleep(seconds)


@contextlib.contextmanager
def paused(server: EmbeddedRedis) -> Iterator[None]:
    """Redis stopped in its tracks (SIGSTOP): it accepts bytes but answers nothing."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


@pytest.fixture
async def measured() -> AsyncIterator[LoopLag]:
    """The test loop's lag, measured as the API's lifespan measures its own."""
    lag = LoopLag()
    lag.start()
    yield lag
    await lag.stop()


@pytest.fixture
async def redis(own_redis: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis.url())
    assert await client.ping()  # connected before any test pauses the server
    yield client
    await client.aclose()


async def test_a_paused_redis_opens_the_breaker_while_the_loop_keeps_up(
    own_redis: EmbeddedRedis, redis: Redis, measured: LoopLag
) -> None:
    guard = RedisGuard(timeout=0.2, breaker_seconds=60, lag=measured)
    with paused(own_redis), pytest.raises(TimeoutError) as raised:
        await guard.call(redis.ping)
    assert not isinstance(raised.value, LaggedOut)
    assert not guard.allows()


async def test_a_call_held_up_by_a_blocked_loop_succeeds_and_the_breaker_stays_closed(
    redis: Redis, measured: LoopLag
) -> None:
    guard = RedisGuard(timeout=0.2, breaker_seconds=60, lag=measured)
    # Redis holds the BLPOP for 0.5 s and answers while this loop is blocked: the answer
    # waits in the socket, and the call's budget runs out on the clock, not on the loop.
    call = asyncio.create_task(
        guard.call(lambda: redis.blpop(["guard:empty"], timeout=0.5))  # type: ignore[arg-type, return-value]
    )
    await asyncio.sleep(0.05)  # the command is sent and in flight
    hold_the_loop(1.5)
    assert await call is None  # BLPOP's answer when nothing came
    assert guard.allows()
    assert not guard.breaker.tripped


async def test_a_call_that_outlasts_its_stretch_in_a_blocked_loop_fails_alone(
    own_redis: EmbeddedRedis, redis: Redis, measured: LoopLag
) -> None:
    guard = RedisGuard(timeout=0.2, breaker_seconds=60, lag=measured, stretch=3)
    with paused(own_redis):
        call = asyncio.create_task(guard.call(redis.ping))
        for _ in range(3):
            await asyncio.sleep(0)  # the command is sent and in flight
        hold_the_loop(0.2 * 3 + 0.6)  # past the longest the call may be stretched
        with pytest.raises(LaggedOut):
            await call
    assert guard.allows()  # this process's lag, not a Redis failure
    assert await guard.call(redis.ping) is True


@pytest.fixture
def lagging(own_redis: EmbeddedRedis, live_server: LiveServers) -> LiveServer:
    """A server with the production Redis budget (CACHE_TIMEOUT 0.25 s) and a tight login
    limit (an hour window: windows are aligned to the clock, and a test must not straddle two),
    plus the probe that blocks its loop."""
    return live_server(
        PROBE_APP,
        REDIS_URL=own_redis.url(),
        CACHE_TIMEOUT="0.25",
        CACHE_BREAKER_SECONDS="60",
        RATE_LIMIT_LOGIN_EMAIL="5/hour",
    )


async def test_a_saturated_loop_neither_opens_the_breaker_nor_lets_logins_past_the_limit(
    lagging: LiveServer,
) -> None:
    async with httpx.AsyncClient(base_url=lagging.url, timeout=60) as http:
        email = unique_email("target")
        await register(http, email)

        async def block_the_loop() -> None:
            for _ in range(3):
                response = await http.post("/_test/block", params={"ms": "400"})
                assert response.status_code == 200

        async def wrong_login(wave: int) -> int:
            await asyncio.sleep(wave * 0.1)
            body = {"email": email, "password": "not the password at all"}
            return (await http.post("/api/v1/auth/login", json=body)).status_code

        blockers = [asyncio.create_task(block_the_loop()) for _ in range(2)]
        statuses = await asyncio.gather(*(wrong_login(i // 2) for i in range(20)))
        await asyncio.gather(*blockers)

        assert sorted(statuses) == [401] * 5 + [429] * 15, (statuses, lagging.log())
        metrics = await ascrape(http)
        assert metrics.total("redis_breaker_opens_total") == 0
        assert metrics.total("redis_breaker_open") == 0
    assert "Redis unavailable" not in lagging.log()

"""A rate limit is one count per client for the whole fleet: requests of one client spread
over two instances and nginx, concurrently, on the fast path (cache hits) and through Flask
(list pages), pass exactly as many times as the limit allows; every other one is a 429 with
``Retry-After``."""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest

from tests.conftest import LiveServers, Proxies
from tests.support.api import account, publish
from tests.support.fleet import Fleet, clients, start

LIMIT = 8
REQUESTS = 3 * LIMIT
# A day's window (aligned to UTC midnight): the burst cannot straddle two windows unless it
# runs in the last minute of the day, which the test waits out.
WINDOW = 24 * 3600
MARGIN = 60  # seconds before a window ends in which the test does not start its burst


@pytest.fixture(scope="module")
def fleet(module_live_server: LiveServers, module_nginx: Proxies) -> Fleet:
    return start(module_live_server, module_nginx, RATE_LIMIT_READ=f"{LIMIT}/day")


def _client_address() -> str:
    """A client address new on every run, so a Redis kept from an earlier run holds no count
    for it."""
    return f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


async def test_a_limit_is_counted_once_across_instances(fleet: Fleet) -> None:
    async with clients(fleet) as (a, b, edge):
        ann = await account(a)
        article = await publish(a, ann)
        url = f"/api/v1/articles/{article['id']}"
        # Cached by a client of its own, so the limited client's article reads are hits that
        # the fast path answers (and counts) before Flask.
        warm = await b.get(url, headers={"X-Forwarded-For": _client_address()})
        assert warm.status_code == 200, warm.text

        left = WINDOW - time.time() % WINDOW
        if left < MARGIN:
            await asyncio.sleep(left + 1)
        # A and B trust 127.0.0.1, so the client's address is the one it forwards, whether it
        # calls an instance directly or through nginx (which appends 127.0.0.1 after it).
        client = {"X-Forwarded-For": _client_address()}
        targets = (a, b, edge)
        paths = (url, "/api/v1/articles?per_page=1")

        async def one(i: int) -> httpx.Response:
            return await targets[i % 3].get(paths[i % 2], headers=client)

        answers = await asyncio.gather(*(one(i) for i in range(REQUESTS)))

    statuses = [answer.status_code for answer in answers]
    assert sorted(set(statuses)) == [200, 429], statuses
    assert statuses.count(200) == LIMIT, statuses
    assert statuses.count(429) == REQUESTS - LIMIT, statuses
    # Passed ones on every path: hits answered before Flask and pages answered by it.
    passed = [answer for answer in answers if answer.status_code == 200]
    assert all(answer.headers["RateLimit-Limit"] == str(LIMIT) for answer in passed)
    remaining = sorted(int(answer.headers["RateLimit-Remaining"]) for answer in passed)
    assert remaining == list(range(LIMIT)), remaining  # each count given once
    for refused in (answer for answer in answers if answer.status_code == 429):
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 0 < int(refused.headers["Retry-After"]) <= WINDOW
        assert refused.headers["RateLimit-Remaining"] == "0"

"""Rate limits kept in Redis, so every worker and instance counts together.

Fixed windows aligned to the clock: ``rl:<name>:<identity>:<window number>`` is incremented
per request and expires with its window (one Lua call, atomic). Answers carry
``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds); a refused
request gets 429 with ``Retry-After``.

While Redis is unreachable, limits fail open: requests are served uncounted and a warning is
logged, so a Redis outage does not take the API down with it. Each call is bounded by
``CACHE_TIMEOUT`` and a failure opens the same breaker as the cache, so a dead or hanging
Redis costs one short wait, not one per request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, request
from pydantic import IPvAnyNetwork
from redis.exceptions import RedisError

from service import db
from service.errors import APIError
from service.settings import Settings, parse_rate

log = logging.getLogger(__name__)

_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def client_ip() -> str:
    """The client's address: ``REMOTE_ADDR``, or from ``X-Forwarded-For`` when the direct peer
    is a trusted proxy (see ``resolve_client_ip``)."""
    settings: Settings = current_app.extensions["newsdesk.settings"]
    return resolve_client_ip(
        str(request.environ.get("REMOTE_ADDR", "")),
        request.headers.get("X-Forwarded-For", ""),
        settings.trusted_proxies,
    )


def resolve_client_ip(remote: str, forwarded_for: str, trusted: Sequence[IPvAnyNetwork]) -> str:
    """``remote``, or when it is a trusted proxy the right-most ``forwarded_for`` hop that is
    not itself a trusted proxy (hops left of a malformed one are not trusted)."""

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in trusted)

    if not trusted or not is_trusted(remote):
        return remote
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    for hop in reversed([h for h in hops if h]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # garbage from beyond our proxies: trust nothing further left
        if not is_trusted(hop):
            return hop
    return remote


@dataclass(frozen=True)
class Counter:
    """One rate-limit counter: its Redis key, window and limit."""

    name: str
    key: str
    limit: int
    window: int
    rate: str
    reset: int  # seconds until the current window ends


def counter(name: str, identity: str, rate: str) -> Counter:
    """The counter of the current window: windows are aligned to the clock, so the key names
    its window and the time to reset needs no extra Redis call."""
    limit, window = parse_rate(rate)
    now = time.time()
    index = int(now // window)
    reset = max(1, int((index + 1) * window - now))
    return Counter(name, f"rl:{name}:{identity}:{index}", limit, window, rate, reset)


async def enforce(name: str, identity: str, rate: str) -> None:
    """Count one request against ``rate`` for ``identity``; 429 when over the limit."""
    await enforce_counter(counter(name, identity, rate))


async def enforce_counter(which: Counter) -> None:
    """``enforce`` for a ``Counter`` already built.

    Shares the cache's breaker: while Redis is known to be failing, limits are skipped at
    once instead of waiting on a dead server for every request."""
    res = db.resources()
    assert res.cache is not None
    breaker = res.cache.breaker
    if not breaker.allows():
        return
    try:
        async with asyncio.timeout(res.settings.cache_timeout):
            count = await res.cache.redis.eval(_HIT, 1, which.key, str(which.window))  # type: ignore[misc]
    except (RedisError, OSError, TimeoutError) as exc:
        breaker.failed(exc)
        log.warning("rate limit %s not enforced, Redis unavailable: %s", which.name, exc)
        return
    apply_count(which, int(count))


def apply_count(which: Counter, count: int) -> None:
    """Record the RateLimit headers for ``which`` at ``count``; 429 when over the limit.

    (Split from ``enforce`` for callers that counted in a Redis call of their own: the cache
    counts reads in the same round trip as its lookup.)"""
    limit, rate, ttl = which.limit, which.rate, which.reset
    remaining = max(0, limit - int(count))
    headers = {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": str(max(int(ttl), 0)),
    }
    tightest: dict[str, str] | None = g.get("rate_limit_headers")
    if tightest is None or remaining <= int(tightest["RateLimit-Remaining"]):
        g.rate_limit_headers = headers
    if int(count) > limit:
        raise APIError(
            429,
            "rate_limited",
            f"Too many requests: the limit is {rate}. Retry after {ttl} seconds.",
            headers={**headers, "Retry-After": str(max(int(ttl), 1))},
        )


def _add_headers(response: Response) -> Response:
    headers: dict[str, Any] | None = g.get("rate_limit_headers")
    if headers:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    app.after_request(_add_headers)

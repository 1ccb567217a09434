"""Rate limits kept in Redis, so every worker and instance counts together.

Fixed windows aligned to the clock: a counter per window (``service.core.keys.rate_limit``)
is incremented per request and expires with its window (one Lua call, atomic). The window's
end is known from the clock, so the time to reset costs no extra Redis call.

While Redis is unreachable (or the guard's breaker is open), what happens depends on the
limit. The limits that stand between an attacker and credentials (``FAIL_CLOSED``: logins by
address and by e-mail, registrations, password reset requests and confirmations) fail closed:
the request is refused with ``Unavailable`` (503 with ``Retry-After``) and not processed, since
an uncounted login is a free password guess. Logins need Redis for their session anyway, and a
per-process fallback counter would multiply each limit by the number of processes. The
ordinary read and write limits fail open: requests are served uncounted and a warning is
logged, so a Redis outage does not take the API down with it. Each call goes through the
process's ``RedisGuard`` (``CACHE_TIMEOUT`` of loop time and the breaker shared with the cache),
so a dead or hanging Redis costs one short wait, not one per request, and a timeout the
process's own lag caused does not open the breaker.

No HTTP here: ``service.web.rate_limits`` turns the outcome into ``RateLimit-*`` headers and
``RateLimited`` into a 429; the ASGI fast path does the same for cache hits.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import IPvAnyNetwork
from redis.asyncio import Redis

from service.core import keys
from service.core.errors import REDIS_FAILURES, RateLimited, Unavailable
from service.core.settings import parse_rate
from service.infra.guard import RedisGuard

log = logging.getLogger(__name__)

# The limits that are never skipped: when they cannot be counted, the request is refused.
FAIL_CLOSED = frozenset(
    {
        "login-ip",
        "login-email",
        "register-ip",
        "reset-ip",
        "reset-email",
        "reset-address",
        "reset-confirm-ip",
    }
)

_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


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


@functools.lru_cache(maxsize=4096)
def client_bucket(ip: str, ipv6_prefix: int) -> str:
    """Whose budget a client address spends: an IPv4 address itself (an IPv4-mapped IPv6
    one as IPv4), an IPv6 address by its network of ``ipv6_prefix`` bits (a client is
    usually given a whole /64, 2^64 addresses that would each get a fresh bucket), written
    ``<network>/<prefix>``. Anything else is returned as it is.

    Remembered for the last 4,096 addresses: parsing one costs about 4 µs, as much as the
    rest of a cache hit's own Python work before its Redis call."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
    return str(address)


@dataclass(frozen=True)
class Counter:
    """One rate-limit counter: its Redis key, window and limit."""

    name: str
    key: str
    limit: int
    window: int
    rate: str
    reset: int  # seconds until the current window ends

    def remaining(self, count: int) -> int:
        return max(0, self.limit - count)

    def headers(self, count: int) -> dict[str, str]:
        """The ``RateLimit-*`` header values after ``count`` requests in this window."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining(count)),
            "RateLimit-Reset": str(self.reset),
        }

    def check(self, count: int) -> None:
        """``RateLimited`` when ``count`` is over the limit."""
        if count > self.limit:
            raise RateLimited(
                f"Too many requests: the limit is {self.rate}. Retry after {self.reset} seconds.",
                retry_after=self.reset,
            )


def counter(name: str, identity: str, rate: str) -> Counter:
    """The counter of the current window of limit ``name`` for ``identity``."""
    limit, window = parse_rate(rate)
    now = time.time()
    index = int(now // window)
    reset = max(1, int((index + 1) * window - now))
    return Counter(name, keys.rate_limit(name, identity, index), limit, window, rate, reset)


async def current(redis: Redis, guard: RedisGuard, which: Counter) -> int | None:
    """The count of ``which`` so far, without counting; None when Redis is unavailable (a
    check of failures fails open: the request is authenticated as usual)."""
    try:
        value = await guard.call(lambda: redis.get(which.key))
    except REDIS_FAILURES as exc:
        log.warning("rate limit %s not checked, Redis unavailable: %s", which.name, exc)
        return None
    return int(value or 0)


async def forget(redis: Redis, guard: RedisGuard, which: Counter) -> None:
    """Drop ``which``'s count (a success ends a run of failures); best effort."""
    try:
        await guard.call(lambda: redis.delete(which.key))
    except REDIS_FAILURES as exc:
        log.warning("rate limit %s not reset, Redis unavailable: %s", which.name, exc)


async def hit(redis: Redis, guard: RedisGuard, which: Counter) -> int | None:
    """Count one request in ``which``; the count after it. When Redis is unavailable: for a
    limit in ``FAIL_CLOSED`` ``Unavailable`` (fail closed), for any other None (the limit is
    not enforced: fail open)."""
    try:
        count = await guard.call(lambda: redis.eval(_HIT, 1, which.key, str(which.window)))  # type: ignore[arg-type,return-value]
    except REDIS_FAILURES as exc:
        if which.name in FAIL_CLOSED:
            log.warning("rate limit %s cannot be checked, request refused: %s", which.name, exc)
            raise Unavailable(
                "The rate limit of this request cannot be checked right now; try again shortly."
            ) from None
        log.warning("rate limit %s not enforced, Redis unavailable: %s", which.name, exc)
        return None
    return int(count)

"""Rate limits in HTTP: the client's address, 429 in the envelope, ``RateLimit-*`` headers.

Counting is ``service.domain.rate_limits``; this module names who is counted (the client's
bucket: its IP, from ``X-Forwarded-For`` only behind a trusted proxy, an IPv6 address by its
``RATE_LIMIT_IPV6_PREFIX`` network) and adds the headers of the tightest limit the request
was counted against to its response.

Failed authentication is limited per client bucket (``RATE_LIMIT_AUTH_FAILURES``): a client
past it is refused (429) before its credential costs a query or a hash, and every failure
(a wrong password, an unknown key or token) counts.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request

from service.domain import rate_limits
from service.domain.rate_limits import Counter
from service.infra.guard import RedisGuard
from service.infra.metrics import RATE_LIMIT_REFUSALS
from service.web import context

log = logging.getLogger(__name__)
_warned_untrusted_proxy = False


def client_ip() -> str:
    """The client's address: ``REMOTE_ADDR``, or from ``X-Forwarded-For`` when the direct peer
    is a trusted proxy (``service.domain.rate_limits.resolve_client_ip``)."""
    settings = context.settings()
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded and not settings.trusted_proxies and settings.env == "production":
        _warn_untrusted_proxy()
    return rate_limits.resolve_client_ip(
        str(request.environ.get("REMOTE_ADDR", "")), forwarded, settings.trusted_proxies
    )


def _warn_untrusted_proxy() -> None:
    global _warned_untrusted_proxy
    if not _warned_untrusted_proxy:
        _warned_untrusted_proxy = True
        log.warning(
            "requests carry X-Forwarded-For but TRUSTED_PROXIES is empty: every client behind "
            "the proxy shares the proxy's rate limits; set TRUSTED_PROXIES to its addresses"
        )


def client_bucket() -> str:
    """Whose per-client limits this request spends (``rate_limits.client_bucket``)."""
    return rate_limits.client_bucket(client_ip(), context.settings().rate_limit_ipv6_prefix)


def auth_failures() -> Counter:
    """This client's counter of failed authentications."""
    return rate_limits.counter(
        "auth-failures", client_bucket(), context.settings().rate_limit_auth_failures
    )


async def refuse_if_over(which: Counter) -> None:
    """429 when ``which`` is already past its limit (counts nothing; fails open)."""
    current = await rate_limits.current(context.clients().hot_redis, _guard(), which)
    if current is not None and current >= which.limit:
        RATE_LIMIT_REFUSALS.labels(which.name).inc()
        which.check(current + 1)


async def count(which: Counter) -> int | None:
    """One more in ``which``; the count after it (None: Redis unavailable, and unless
    ``which`` fails closed, nothing is refused for it)."""
    return await rate_limits.hit(context.clients().hot_redis, _guard(), which)


async def reset_counter(which: Counter) -> None:
    """Drop ``which``'s count (best effort)."""
    await rate_limits.forget(context.clients().hot_redis, _guard(), which)


def _guard() -> RedisGuard:
    return context.resources().guard


async def enforce(name: str, identity: str, rate: str) -> None:
    """Count one request against ``rate`` for ``identity``; 429 when over the limit."""
    await enforce_counter(rate_limits.counter(name, identity, rate))


async def enforce_counter(which: Counter) -> None:
    """``enforce`` for a ``Counter`` already built. While Redis is unavailable the security
    limits refuse with 503 and the others fail open (``service.domain.rate_limits``)."""
    counted = await count(which)
    if counted is not None:
        apply_count(which, counted)


def apply_count(which: Counter, count: int) -> None:
    """Keep ``which``'s headers when it is the tightest limit so far; 429 past the limit.

    (Split from ``enforce`` for callers that counted in a Redis call of their own: the cache
    counts reads in the same round trip as its lookup.)"""
    state = context.request_state()
    tightest = state.rate_limit_headers
    if tightest is None or which.remaining(count) <= int(tightest["RateLimit-Remaining"]):
        state.rate_limit_headers = which.headers(count)
    if count > which.limit:
        RATE_LIMIT_REFUSALS.labels(which.name).inc()
    which.check(count)


def _add_headers(response: Response) -> Response:
    state = context.existing_request_state()
    if state is not None and state.rate_limit_headers:
        for name, value in state.rate_limit_headers.items():
            response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    app.after_request(_add_headers)

"""Rate limits in HTTP: the client's address, 429 in the envelope, ``RateLimit-*`` headers.

Counting is ``service.domain.rate_limits``; this module names who is counted (the client IP,
from ``X-Forwarded-For`` only behind a trusted proxy) and adds the headers of the tightest
limit the request was counted against to its response.
"""

from __future__ import annotations

from flask import Flask, Response, request

from service.domain import rate_limits
from service.domain.rate_limits import Counter
from service.infra.metrics import RATE_LIMIT_REFUSALS
from service.web import context


def client_ip() -> str:
    """The client's address: ``REMOTE_ADDR``, or from ``X-Forwarded-For`` when the direct peer
    is a trusted proxy (``service.domain.rate_limits.resolve_client_ip``)."""
    return rate_limits.resolve_client_ip(
        str(request.environ.get("REMOTE_ADDR", "")),
        request.headers.get("X-Forwarded-For", ""),
        context.settings().trusted_proxies,
    )


async def enforce(name: str, identity: str, rate: str) -> None:
    """Count one request against ``rate`` for ``identity``; 429 when over the limit."""
    await enforce_counter(rate_limits.counter(name, identity, rate))


async def enforce_counter(which: Counter) -> None:
    """``enforce`` for a ``Counter`` already built. While Redis is unavailable the security
    limits refuse with 503 and the others fail open (``service.domain.rate_limits``)."""
    res = context.resources()
    assert res.cache is not None
    count = await rate_limits.hit(res.cache.redis, res.guard, which)
    if count is not None:
        apply_count(which, count)


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

"""Cached GET responses: the body from ``service.infra.cache``, with ``X-Cache``, ``ETag``, 304
and ``Cache-Control``. Cache fills read the primary: a replica lagging behind a write could
otherwise store an old row under the write's new generation.

Entries are stored as ``service.core.keys.pack_entry`` makes them (ETag and body), the same
bytes the ASGI fast path serves on a hit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence

from flask import Response, request
from werkzeug.http import unquote_etag

from service.core import keys
from service.domain.rate_limits import Counter
from service.infra.cache import Count
from service.web import context
from service.web.rate_limits import apply_count, enforce_counter

Build = Callable[[], Awaitable[tuple[bytes, str] | None]]


def body_etag(body: bytes) -> str:
    """A weak ETag naming the content of a list body."""
    return 'W/"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"'


async def cached_response(
    endpoint: str,
    *,
    generations: Sequence[str],
    template: str,
    ttl: int,
    build: Build,
    rate_limit: Counter | None = None,
) -> Response | None:
    """The response for a cacheable GET, or None when ``build`` found nothing (a 404).

    ``rate_limit`` is counted in the cache lookup's own Redis round trip (a hit costs one)."""
    cache = context.cache()
    count: Count | None = None
    if rate_limit is not None:
        if cache.usable():
            count = Count(rate_limit.key, rate_limit.window)
        else:
            await enforce_counter(rate_limit)

    async def compute() -> bytes | None:
        built = await build()
        return None if built is None else keys.pack_entry(built[1], built[0])

    stored, outcome = await cache.fetch(
        endpoint,
        generations=generations,
        template=template,
        ttl=ttl,
        compute=compute,
        count=count,
        on_count=(lambda n: apply_count(rate_limit, n)) if rate_limit else None,
    )
    if stored is None:
        return None
    raw_etag, body = keys.unpack_entry(stored)
    etag = raw_etag.decode("latin-1")
    headers = [
        ("ETag", etag),
        ("X-Cache", outcome),
        ("Cache-Control", f"public, max-age={context.settings().http_max_age}"),
    ]
    tag, _weak = unquote_etag(etag)
    conditional = tag is not None and "If-None-Match" in request.headers
    if conditional and request.if_none_match.contains_weak(tag):
        return Response(status=304, headers=headers)
    return Response(body, mimetype="application/json", headers=headers)


def invalidate_after_commit(*generation_keys: str) -> None:
    """Move these generations on once the request's transaction commits."""
    cache = context.cache()
    context.after_commit(lambda: cache.invalidate(generation_keys))

"""Cached GET responses: the body from ``service.infra.cache``, with ``X-Cache``, ``ETag``, 304
and ``Cache-Control``. Cache fills read the primary: a replica lagging behind a write could
otherwise store an old row under the write's new generation.

Entries are stored as ``service.core.keys.pack_entry`` makes them (ETag and body), the same
bytes the ASGI fast path serves on a hit, answered by the same function
(``service.infra.cached_answer``). One over ``CACHE_MAX_ENTRY_BYTES`` is answered the
same way and not stored (``X-Cache: MISS`` every time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence

from flask import Response, request

from service.core import keys
from service.domain.articles import IfMatch
from service.domain.rate_limits import Counter
from service.infra import db_errors
from service.infra.cache import STALE, Count, Quota, StaleIfError
from service.infra.cached_answer import cached_answer
from service.web import context
from service.web.rate_limits import apply_count, enforce_counter

Build = Callable[[], Awaitable[tuple[bytes, str] | None]]


def parse_if_match(value: str) -> IfMatch:
    """An ``If-Match`` field value (RFC 9110, 13.1.1): ``*``, or a list of entity tags, of
    which only the strong ones (``"..."``) can ever match. Weak tags (``W/"..."``) and items
    that are not entity tags (unquoted text) are dropped: a condition naming none matches
    nothing."""
    if value.strip() == "*":
        return IfMatch(any_tag=True)
    tags = {
        item[1:-1]
        for item in (part.strip() for part in value.split(","))
        if len(item) >= 2 and item[0] == item[-1] == '"' and '"' not in item[1:-1]
    }
    return IfMatch(tags=frozenset(tags))


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
    stale_key: str | None = None,
    quota: Quota | None = None,
) -> Response | None:
    """The response for a cacheable GET, or None when ``build`` found nothing (a 404).

    With ``stale_key``, the last body stored is kept there for ``CACHE_STALE_SECONDS`` and
    answered (``X-Cache: STALE``) when the database cannot be reached and the current entry
    is missing. With ``quota``, the entry is stored only within it (``Quota``).

    ``rate_limit`` is counted in the cache lookup's own Redis round trip (a hit costs one),
    or on its own when the cache has a Redis of its own (rate limits stay on REDIS_URL)."""
    cache = context.cache()
    count: Count | None = None
    if rate_limit is not None:
        if cache.usable() and cache.inline_counters:
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
        stale=None
        if stale_key is None
        else StaleIfError(stale_key, context.settings().cache_stale_seconds, db_errors.unreachable),
        quota=quota,
    )
    if outcome == STALE:
        await context.abandon_transaction()
    if stored is None:
        return None
    answer = cached_answer(
        stored,
        outcome=outcome,
        if_none_match=request.headers.get("If-None-Match"),
        max_age=context.settings().http_max_age,
    )
    if answer.status == 304:
        return Response(status=304, headers=answer.headers)
    return Response(answer.body, mimetype="application/json", headers=answer.headers)


def invalidate_after_commit(*generation_keys: str) -> None:
    """Move these generations on once the request's transaction commits."""
    cache = context.cache()
    context.after_commit(lambda: cache.invalidate(generation_keys))

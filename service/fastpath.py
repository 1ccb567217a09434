"""Cache hits answered before Flask: ``GET /api/v1/articles/<id>`` and ``/articles/popular``.

A cache hit needs no routing, no view and no model work: the stored entry already holds the
final ETag and body (``service.cache``). ``CachedReads`` recognises these two routes in the
ASGI scope, peeks at the cache in one Redis round trip (the read rate limit counted in the
same call, as on the full path) and, on a hit, sends the stored bytes with the headers the
Flask view would have sent: ``ETag``, ``X-Cache: HIT``, ``Cache-Control``, ``RateLimit-*``,
``X-Request-ID`` and the security headers, or a 304 for a matching ``If-None-Match``.

Everything else falls through to Flask unchanged, and a peek that misses takes no lock and
counts nothing, so the full path then behaves as if the peek had not happened:

* a miss (the view computes the entry under the stampede lock);
* a request over its rate limit (Flask answers the 429; the refused request is counted a
  second time there, which changes nothing for a client already over the limit);
* the cache disabled or its breaker open (Flask answers with ``X-Cache: BYPASS``), or a Redis
  error during the peek (which opens the breaker);
* any query string, a method other than GET, or a CORS request when CORS is configured.

A hit on an article answered 200 also counts its view in that round trip (``service.views``).

The response is identical to the one Flask sends for the same hit; a test compares the two.
"""

from __future__ import annotations

import re
from typing import Any

from redis.exceptions import RedisError
from werkzeug.http import parse_etags, unquote_etag

from service import ratelimit
from service.api.articles import POPULAR_ENTRY, article_entry
from service.cache import Count
from service.openapi import MAX_ID
from service.request_id import choose_request_id, current_request_id
from service.resources import Resources
from service.views import count_view, view_of
from service.web import SECURITY_HEADERS

_ARTICLE = re.compile(r"/api/v1/articles/([1-9][0-9]{0,18})")
_POPULAR = "/api/v1/articles/popular"
_SECURITY = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]


class CachedReads:
    """The ASGI fast path for cache hits (see the module docstring).

    ``await fast_path(scope, send)`` answers the request and returns True, or returns False
    having sent nothing."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    def _route(self, scope: dict[str, Any]) -> tuple[str, list[str], str, int | None] | None:
        """The endpoint name, generations, key template and article id (None for the ranking)
        of a cacheable GET, or None."""
        if scope["method"] != "GET" or scope.get("query_string"):
            return None
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root:
            if not path.startswith(root):
                return None
            path = path[len(root) :]
        if path == _POPULAR:
            return "popular", *POPULAR_ENTRY, None
        match = _ARTICLE.fullmatch(path)
        if match is None:
            return None
        article_id = int(match.group(1))
        if article_id > MAX_ID:
            return None
        return "article", *article_entry(article_id), article_id

    async def __call__(self, scope: dict[str, Any], send: Any) -> bool:
        route = self._route(scope)
        if route is None:
            return False
        endpoint, generations, template, article_id = route
        res = self.resources
        cache = res.cache
        if cache is None or not cache.enabled or not cache.breaker.allows():
            return False
        settings = res.settings
        request_id = forwarded = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                forwarded = value if forwarded is None else forwarded + b"," + value
            elif name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"origin" and settings.cors_origins:
                return False  # flask-cors decides the CORS headers
            elif name in (b"content-length", b"transfer-encoding"):
                return False  # a GET with a body: Flask's path reads and bounds it
        client = scope.get("client")
        remote = str(client[0]) if client else ""
        if settings.trusted_proxies:
            ip = ratelimit.resolve_client_ip(
                remote, (forwarded or b"").decode("latin-1"), settings.trusted_proxies
            )
        else:
            ip = remote
        limit = ratelimit.counter("read", ip, settings.rate_limit_read)
        # A view is counted in the lookup itself, unless the answer may be a 304.
        count_view_in_lookup = (
            article_id is not None and if_none_match is None and res.record_view is None
        )
        try:
            hit = await cache.peek(
                endpoint,
                generations=generations,
                template=template,
                count=Count(limit.key, limit.window, limit.limit),
                on_hit=view_of(article_id) if count_view_in_lookup and article_id else None,
            )
        except (RedisError, OSError, TimeoutError):
            return False  # the breaker is open now: Flask serves it with X-Cache: BYPASS
        if hit is None:
            return False
        stored, count = hit
        if count > limit.limit:
            return False  # Flask answers the 429
        request_id = choose_request_id(request_id)
        current_request_id.set(request_id)
        raw_etag, _, body = stored.partition(b"\n")
        headers = [
            (b"etag", raw_etag),
            (b"x-cache", b"HIT"),
            (b"cache-control", b"public, max-age=%d" % settings.http_max_age),
        ]
        status = 200
        if if_none_match is not None:
            tag, _weak = unquote_etag(raw_etag.decode("latin-1"))
            if tag is not None and parse_etags(if_none_match).contains_weak(tag):
                status = 304
        if status == 200:
            if article_id is not None and not count_view_in_lookup:
                await count_view(article_id, res)
            headers.append((b"content-type", b"application/json"))
            headers.append((b"content-length", b"%d" % len(body)))
        headers += [
            (b"ratelimit-limit", b"%d" % limit.limit),
            (b"ratelimit-remaining", b"%d" % max(0, limit.limit - count)),
            (b"ratelimit-reset", b"%d" % limit.reset),
            (b"x-request-id", request_id.encode("latin-1")),
            *_SECURITY,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body if status == 200 else b""})
        return True

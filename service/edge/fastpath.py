"""Cache hits answered before Flask: ``GET /api/v1/articles/<id>``, ``/articles/popular`` and
the front pages of ``/api/v1/articles`` (page 1 to 5, by tag; ``list_route``).

A cache hit needs no routing, no view and no model work: the stored entry already holds the
final ETag and body (``service.infra.cache``). ``CachedReads``, an ASGI middleware around
the adapter, recognises these two routes in the ASGI scope, peeks at the cache in one Redis
round trip (the read rate limit counted in the same call, as on the full path) and, on a
hit, sends the stored bytes with the headers the Flask view would have sent: ``ETag``,
``X-Cache: HIT``, ``Cache-Control``, ``RateLimit-*``, ``X-Request-ID`` and the security
headers, or a 304 for a matching ``If-None-Match``.

Everything else falls through to Flask unchanged, and a peek that misses takes no lock and
counts nothing, so the full path then behaves as if the peek had not happened:

* a miss (the view computes the entry under the stampede lock);
* a request over its rate limit (Flask answers the 429; the refused request is counted a
  second time there, which changes nothing for a client already over the limit);
* the cache disabled or its breaker open (Flask answers with ``X-Cache: BYPASS``), or a Redis
  error during the peek (which opens the breaker);
* any query string (but a front page's), a method other than GET, or a CORS request when
  CORS is configured.

A hit on an article answered 200 also counts its view in that round trip
(``service.domain.view_counts``). When the cache has a Redis of its own (``CACHE_REDIS_URL``),
the peek counts nothing there: a hit then counts its read limit and its view on ``REDIS_URL``
(a round trip each), where Flask counts them too.

The status and cache headers come from the function Flask's path uses too
(``service.infra.cached_answer``); a test compares the two responses.
A hit writes the Flask route template of what it answered into the scope
(``ROUTE_SCOPE_KEY``), so request metrics label a hit and a miss of the same route alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from redis.asyncio import Redis

from service.core import keys, routes
from service.core.errors import REDIS_FAILURES
from service.core.request_id import bind_request_id
from service.core.types import (
    MAX_ID,
    ROUTE_SCOPE_KEY,
    SECURITY_HEADERS,
    ASGIApp,
    Receive,
    Scope,
    Send,
)
from service.domain import rate_limits
from service.domain.schemas import ArticleListQuery
from service.domain.view_counts import ViewCounter
from service.greenlet_asgi import drain
from service.infra.cache import HIT, Count, HitCount
from service.infra.cached_answer import CachedAnswer, cached_answer
from service.infra.resources import Resources

_ARTICLE = re.compile(re.escape(routes.ARTICLES) + r"/([1-9][0-9]{0,18})")
_POPULAR = routes.POPULAR_ARTICLES
_LIST = routes.ARTICLES
# List pages the fast path answers: a news site's front pages, not the long tail.
FAST_PAGES = 5
_PER_PAGE: int = ArticleListQuery.model_fields["per_page"].default
_PLAIN_NUMBER = re.compile(r"[1-9][0-9]{0,3}")
_SECURITY = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]


@dataclass(frozen=True)
class Route:
    """A cacheable GET: its cache endpoint name, entry, and article id (None: the ranking)."""

    endpoint: str
    generations: list[str]
    template: str
    article_id: int | None


@dataclass
class Headers:
    """The request headers the fast path reads; ``usable`` is False when Flask must answer."""

    request_id: str | None = None
    forwarded_for: str = ""
    if_none_match: str | None = None
    usable: bool = True


def route(scope: Scope) -> Route | None:
    """The cacheable GET ``scope`` asks for, or None."""
    if scope["method"] != "GET":
        return None
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root:
        if not path.startswith(root):
            return None
        path = path[len(root) :]
    query: bytes = scope.get("query_string", b"")
    if path == _LIST:
        return list_route(query)
    if query:
        return None
    if path == _POPULAR:
        return Route("popular", *keys.POPULAR_ENTRY, None)
    match = _ARTICLE.fullmatch(path)
    if match is None or int(match.group(1)) > MAX_ID:
        return None
    article_id = int(match.group(1))
    return Route("article", *keys.article_entry(article_id), article_id)


def list_route(query: bytes) -> Route | None:
    """The list page a front page asks for: no query string (page 1), or only ``page`` (1 to
    ``FAST_PAGES``, plain digits), ``per_page`` (plain digits) and ``tag``, each at most once.
    Anything else, a cursor, a search or an author among them, goes to Flask.

    The page is named as Flask's list view names it (``keys.list_digest``); values are not
    checked here: a value Flask would refuse, or spell otherwise, names an entry that was
    never stored, so the peek misses and Flask answers."""
    if not query:
        return _FRONT_PAGE
    try:
        pairs = parse_qsl(
            query.decode("ascii"), keep_blank_values=True, strict_parsing=True, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        return None
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names) or not set(names) <= {"page", "per_page", "tag"}:
        return None
    page, per_page, tag = 1, _PER_PAGE, None
    for name, value in pairs:
        if name == "tag":
            tag = value
        elif not _PLAIN_NUMBER.fullmatch(value):
            return None
        elif name == "page":
            page = int(value)
        else:
            per_page = int(value)
    if page > FAST_PAGES:
        return None
    return _list(page, per_page, tag)


def _list(page: int, per_page: int, tag: str | None) -> Route:
    digest = keys.list_digest(page=page, per_page=per_page, tag=tag)
    return Route("list", *keys.list_entry(digest), None)


# The page asked for most, named once (its cache name is fixed).
_FRONT_PAGE = _list(1, _PER_PAGE, None)


def read_headers(scope: Scope, *, cors: bool) -> Headers:
    """What the fast path needs of the headers; unusable for a CORS request (when CORS is
    on, flask-cors decides its headers) or a GET with a body (Flask reads and bounds it)."""
    found = Headers()
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            found.request_id = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            text = value.decode("latin-1")
            found.forwarded_for = (
                text if not found.forwarded_for else f"{found.forwarded_for},{text}"
            )
        elif name == b"if-none-match":
            found.if_none_match = value.decode("latin-1")
        elif (name == b"origin" and cors) or name in (b"content-length", b"transfer-encoding"):
            found.usable = False
    return found


class CachedReads:
    """ASGI middleware: answers cache hits of ``route`` itself, passes everything else to
    ``app`` (see the module docstring). ``routes`` maps each cache endpoint it answers
    (``article``, ``popular``) to the app's route template for it."""

    def __init__(
        self,
        app: ASGIApp,
        resources: Resources,
        views: ViewCounter,
        *,
        routes: Mapping[str, str],
    ) -> None:
        self.app = app
        self.resources = resources
        self.views = views
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not await self.answer(scope, send):
            await self.app(scope, receive, send)

    async def answer(self, scope: Scope, send: Send) -> bool:
        """Send the cached response and return True, or return False having sent nothing."""
        found = route(scope)
        cache = self.resources.cache
        if found is None or cache is None or not cache.usable():
            return False
        headers = read_headers(scope, cors=bool(self.resources.settings.cors_origins))
        if not headers.usable:
            return False
        limit = self._read_limit(scope, headers)
        inline = cache.inline_counters  # else the cache has a Redis of its own: count apart
        # A view is counted in the lookup itself, unless the answer may be a 304.
        view: HitCount | None = None
        if inline and found.article_id is not None and headers.if_none_match is None:
            view = self.views.on_hit(found.article_id)
        try:
            hit = await cache.peek(
                found.endpoint,
                generations=found.generations,
                template=found.template,
                count=Count(limit.key, limit.window, limit.limit) if inline else None,
                on_hit=view,
            )
        except REDIS_FAILURES:
            return False  # the breaker is open now: Flask serves it with X-Cache: BYPASS
        if hit is None:
            return False  # a miss: Flask computes it
        stored, count = hit
        if not inline:  # the read limit on REDIS_URL, as Flask counts it (None: failing open)
            counted = await rate_limits.hit(self._hot_redis(), self.resources.guard, limit)
        else:
            counted = count
        if counted is not None and counted > limit.limit:
            return False  # over the limit: Flask answers the 429
        answer = cached_answer(
            stored,
            outcome=HIT,
            if_none_match=headers.if_none_match,
            max_age=self.resources.settings.http_max_age,
        )
        if answer.status == 200 and found.article_id is not None and view is None:
            await self.views.record(self.resources, found.article_id)
        scope[ROUTE_SCOPE_KEY] = self.routes[found.endpoint]
        rate_headers = {} if counted is None else limit.headers(counted)
        await self._send(send, answer, rate_headers, headers.request_id)
        return True

    def _hot_redis(self) -> Redis:
        return self.resources.clients.hot_redis

    def _read_limit(self, scope: Scope, headers: Headers) -> rate_limits.Counter:
        settings = self.resources.settings
        client = scope.get("client")
        ip = rate_limits.resolve_client_ip(
            str(client[0]) if client else "", headers.forwarded_for, settings.trusted_proxies
        )
        bucket = rate_limits.client_bucket(ip, settings.rate_limit_ipv6_prefix)
        return rate_limits.counter("read", bucket, settings.rate_limit_read)

    async def _send(
        self,
        send: Send,
        answer: CachedAnswer,
        rate_headers: dict[str, str],
        request_id: str | None,
    ) -> None:
        """``answer`` with what the Flask path adds to it: the body's type and length, the
        rate-limit, request-id and security headers."""
        rid = bind_request_id(request_id)
        headers = [
            (name.lower().encode(), value.encode("latin-1")) for name, value in answer.headers
        ]
        if answer.status == 200:
            headers.append((b"content-type", b"application/json"))
            headers.append((b"content-length", b"%d" % len(answer.body)))
        headers += [(name.lower().encode(), value.encode()) for name, value in rate_headers.items()]
        headers += [(b"x-request-id", rid.encode("latin-1")), *_SECURITY]
        if drain.active():  # the worker is stopping (service.greenlet_asgi.drain)
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

"""Articles: publish, read, edit (author only, with ETag/If-Match), delete, list, rank."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, request
from pydantic import BaseModel

from service.core import keys, routes
from service.core.errors import InvalidInput, NotFound
from service.core.types import ArticleStatus
from service.domain import articles as data
from service.domain import rate_limits, search, view_counts
from service.domain.callers import Caller
from service.domain.schemas import (
    ArticleCreate,
    ArticleCursorPage,
    ArticleListPage,
    ArticleListQuery,
    ArticlePage,
    ArticlePublic,
    ArticleUpdate,
    ArticleViews,
    PopularArticles,
)
from service.infra import queue
from service.infra.cache import Quota
from service.web import context
from service.web.endpoint import Link, endpoint, json_response
from service.web.http_cache import (
    Build,
    body_etag,
    cached_response,
    invalidate_after_commit,
    parse_if_match,
)
from service.web.rate_limits import client_bucket, enforce_counter

bp = Blueprint("articles", __name__, url_prefix=routes.ARTICLES)

LISTS = keys.ARTICLES_GENERATION
# What a client may do next with the article it created: its id is in the body.
CREATED_LINKS = {
    name: Link(
        operation_id=target,
        parameters={"article_id": "$response.body#/id"},
        description=f"The article created ({what}); its id is in the body and in `Location`.",
    )
    for name, target, what in (
        ("GetArticle", "get_article", "read it"),
        ("GetArticleViews", "get_article_views", "its view count"),
        ("UpdateArticle", "update_article", "change it"),
        ("DeleteArticle", "delete_article", "delete it"),
    )
}
NEXT_PAGE = Link(
    operation_id="list_articles",
    parameters={"cursor": "$response.body#/next_cursor"},
    description="The next page, by keyset, while `next_cursor` is not null (give the same "
    "`per_page` and filters).",
)


def _etag(article: ArticlePublic) -> str:
    """The strong ETag of the representation (``data.entity_tag``): version and processing
    status (views are not part of it)."""
    return f'"{data.entity_tag(article)}"'


def _with_etag(article: ArticlePublic, status: int = 200) -> Response:
    response = json_response(article, status)
    response.headers["ETag"] = _etag(article)
    return response


def _if_match() -> data.IfMatch | None:
    """The request's ``If-Match`` condition (None: no header). Only its strong tags can match;
    the domain compares them whole with the article's current tag (412 when none does)."""
    value = request.headers.get("If-Match")
    return None if value is None else parse_if_match(value)


def process_after_commit(article: ArticlePublic) -> None:
    """Once the write commits, enqueue processing of a pending article
    (``service.domain.processing``; if Redis cannot take the job, the sweeper finds the article
    later)."""
    if article.status != ArticleStatus.PENDING:
        return
    res = context.resources()
    job_id = keys.process_job_id(article.id, article.version)

    async def enqueue() -> None:
        await queue.enqueue(res, "process_article", article.id, article.version, job_id=job_id)

    context.after_commit(enqueue)


def _read_limit() -> rate_limits.Counter:
    """Reads per client IP, counted in the cache lookup's round trip."""
    return rate_limits.counter("read", client_bucket(), context.settings().rate_limit_read)


def _search_limit() -> rate_limits.Counter:
    """Searches per client IP (``RATE_LIMIT_SEARCH``), on top of the read limit: a search that
    misses the cache costs the database far more than any other read. Every request with
    ``q`` counts, hits included (the ASGI fast path never answers a query string, so each one
    reaches the view), which keeps the limit one a client can predict."""
    return rate_limits.counter("search", client_bucket(), context.settings().rate_limit_search)


def _search_terms(q: str) -> str:
    """``q`` as a full-text query, under ``SEARCH_MIN_PREFIX`` and ``SEARCH_MAX_TERMS``."""
    settings = context.settings()
    return search.search_query(
        q, min_prefix=settings.search_min_prefix, max_terms=settings.search_max_terms
    )


async def _cached(
    endpoint: str,
    entry: tuple[list[str], str],
    ttl: int,
    build: Build,
    stale_key: str | None = None,
    quota: Quota | None = None,
) -> Response | None:
    """The cached response of ``entry`` (generations, key template), read rate limit counted."""
    generations, template = entry
    return await cached_response(
        endpoint,
        generations=generations,
        template=template,
        ttl=ttl,
        build=build,
        rate_limit=_read_limit(),
        stale_key=stale_key,
        quota=quota,
    )


def _body_and_etag(model: BaseModel) -> tuple[bytes, str]:
    """A list-like body and its weak content ETag."""
    body = model.model_dump_json().encode()
    return body, body_etag(body)


@bp.post("")
@endpoint(
    body=ArticleCreate,
    response=ArticlePublic,
    status=201,
    auth=True,
    rate="write",
    errors=(401, 429, 503),
    tags=["articles"],
    operation_id="create_article",
    headers=("ETag", "Location"),
    links=CREATED_LINKS,
)
async def create(body: ArticleCreate, caller: Caller) -> Response:
    """Publish an article. It starts ``pending`` until its summary and keywords are made."""
    article = await data.create_article(
        context.db_session(),
        author=caller.user,
        title=body.title,
        content=body.content,
        tags=body.tags,
    )
    invalidate_after_commit(LISTS)
    process_after_commit(article)
    response = _with_etag(article, 201)
    response.headers["Location"] = routes.article_path(article.id)
    return response


@bp.get("")
@endpoint(
    query=ArticleListQuery,
    response=ArticleListPage,
    cached=True,
    errors=(429, 503),
    tags=["articles"],
    links={"NextPage": NEXT_PAGE},
)
async def list_articles(query: ArticleListQuery) -> Response:
    """Articles, newest first: offset pages (``page``) or keyset pages (``cursor``).

    The answer's ``kind`` says which: ``offset`` (``page``, or neither parameter) or
    ``cursor``; asking for both is a 422.

    Offset pages reach the first 10,000 articles; ``total`` is exact up to 1,000 matches and
    PostgreSQL's estimate beyond (``total_is_estimate``). Every page carries ``next_cursor``,
    which continues at constant cost however deep, and is null on the last page. Filters:
    ``author_id``, ``tag`` and ``q`` (words at the start of title words, any case). Cached
    (``X-Cache``), with an ``ETag``.

    A search (``q``) is bounded: each word at least ``SEARCH_MIN_PREFIX`` characters (2 by
    default), at most ``SEARCH_MAX_TERMS`` words (4), else a 422 ``validation_error``; one
    that runs longer than ``SEARCH_TIMEOUT_MS`` is stopped and answered 422
    ``search_too_broad`` (narrow it: the same request would be stopped again); and requests
    with ``q`` count against ``RATE_LIMIT_SEARCH`` as well as the read limit.
    """
    if query.cursor is not None and query.page is not None:
        raise InvalidInput.at(
            ["query", "cursor"], "Use either page or cursor, not both.", why="conflicts with page"
        )
    # Bad input is refused before the cache is consulted.
    after = None if query.cursor is None else data.decode_cursor(query.cursor)
    terms = None if query.q is None else _search_terms(query.q)
    filters = data.Filters(author_id=query.author_id, tag=query.tag, terms=terms)
    if query.q is not None:
        await enforce_counter(_search_limit())

    async def build() -> tuple[bytes, str]:
        return _body_and_etag(await _list_page(query, filters))

    settings = context.settings()
    entry = keys.list_entry(_list_digest(query, after, terms))
    quota = Quota(keys.LIST_ENTRIES, settings.cache_max_list_keys)
    response = await _cached("list", entry, settings.cache_ttl_list, build, quota=quota)
    assert response is not None
    return response


def _list_digest(
    query: ArticleListQuery, after: tuple[datetime, int] | None, terms: str | None
) -> str:
    """The cache's name for a list query, one per page whatever its spelling: parameters in
    any order, defaults given or not (``page=1``, ``per_page=20``), a cursor by the position
    it decodes to, a search by the terms it searches for. Any other spelling would be another
    entry for the same page (``CACHE_MAX_LIST_KEYS`` bounds them all the same)."""
    return keys.list_digest(
        page=None if after is not None else (query.page or 1),
        per_page=query.per_page,
        after=None if after is None else (after[0].isoformat(), after[1]),
        author_id=query.author_id,
        tag=query.tag,
        terms=terms,
    )


async def _list_page(
    query: ArticleListQuery, filters: data.Filters
) -> ArticlePage | ArticleCursorPage:
    # Cache fills read the primary (see service.web.http_cache). A list is one statement per
    # page and one for the total, each in a round trip of its own without a transaction; a
    # search runs in the request's transaction, which carries its own statement timeout.
    if filters.terms is None:
        return await _page(context.reads(), query, filters)
    session = context.db_session()
    async with search.bounded(session, _search_timeout_ms()):
        return await _page(session, query, filters)


def _search_timeout_ms() -> int:
    """``SEARCH_TIMEOUT_MS``, never longer than the general ``DB_STATEMENT_TIMEOUT_MS``, which
    the search's own replaces for its statements."""
    settings = context.settings()
    general = settings.db_statement_timeout_ms or settings.search_timeout_ms
    return min(settings.search_timeout_ms, general)


async def _page(
    session: data.Statements, query: ArticleListQuery, filters: data.Filters
) -> ArticlePage | ArticleCursorPage:
    if query.cursor is not None:
        after = await data.list_after(
            session, filters=filters, cursor=query.cursor, per_page=query.per_page
        )
        return ArticleCursorPage(articles=after.articles, next_cursor=after.next_cursor)
    page = query.page or 1
    found = await data.list_page(session, filters=filters, page=page, per_page=query.per_page)
    return ArticlePage(
        articles=found.articles,
        total=found.total,
        total_is_estimate=found.estimated,
        pages=-(-found.total // query.per_page),
        current_page=page,
        next_cursor=found.next_cursor,
    )


@bp.get("/popular")
@endpoint(
    response=PopularArticles,
    cached=True,
    errors=(429, 503),
    tags=["articles"],
    operation_id="popular_articles",
)
async def popular() -> Response:
    """The 10 most viewed articles. Cached (``X-Cache``), with an ``ETag``."""

    async def build() -> tuple[bytes, str]:
        return _body_and_etag(PopularArticles(articles=await data.most_viewed(context.reads())))

    ttl = context.settings().cache_ttl_popular
    response = await _cached("popular", keys.POPULAR_ENTRY, ttl, build)
    assert response is not None
    return response


@bp.get("/<id:article_id>")
@endpoint(
    response=ArticlePublic,
    cached=True,
    errors=(404, 429, 503),
    tags=["articles"],
    operation_id="get_article",
)
async def read(article_id: int) -> Response:
    """One article, with an ``ETag`` naming its version. Cached (``X-Cache``)."""

    async def build() -> tuple[bytes, str] | None:
        article = await data.get_article(context.reads(), article_id)
        if article is None:
            return None
        return article.model_dump_json().encode(), _etag(article)

    ttl = context.settings().cache_ttl_article
    stale_key = keys.article_stale(article_id)
    response = await _cached("article", keys.article_entry(article_id), ttl, build, stale_key)
    if response is None:
        raise NotFound(f"Article {article_id} does not exist.")
    if response.status_code == 200:
        await context.views().record(context.resources(), article_id)
    return response


@bp.get("/<id:article_id>/views")
@endpoint(
    response=ArticleViews,
    errors=(404, 429, 503),
    tags=["articles"],
    operation_id="get_article_views",
)
async def views(article_id: int) -> ArticleViews:
    """An article's view count: those flushed into PostgreSQL plus those still in Redis (a
    view is counted when its read is answered; a flush in progress may hold a few back).
    Not cached, and reading it is not a view."""
    await enforce_counter(_read_limit())
    # Redis first: the flush state it reports decides whether the replica may answer
    # (read-your-writes across a flush, service.domain.view_counts).
    pending = await view_counts.pending(context.resources(), article_id)
    stored = await view_counts.stored_views(
        context.read_db_session(), context.db_session, article_id, pending
    )
    if stored is None:
        raise NotFound(f"Article {article_id} does not exist.")
    return ArticleViews(id=article_id, views=stored + pending.views)


@bp.patch("/<id:article_id>")
@endpoint(
    body=ArticleUpdate,
    response=ArticlePublic,
    auth=True,
    rate="write",
    errors=(401, 403, 404, 412, 429, 503),
    tags=["articles"],
    operation_id="update_article",
    headers=("ETag",),
)
async def edit(article_id: int, body: ArticleUpdate, caller: Caller) -> Response:
    """Change some fields (author only). Send ``If-Match`` with the ETag you read to be sure
    nobody changed the article since; a stale one gets 412. The ETag is compared whole
    (strong comparison): it also moves when the view count or processing status changes."""
    changes = body.changes()
    if not changes:
        raise InvalidInput.at(
            ["body"], "Nothing to change: send at least one field.", why="no field to change"
        )
    article = await data.update_article(
        context.db_session(),
        article_id=article_id,
        caller=caller.user,
        changes=changes,
        if_match=_if_match(),
    )
    invalidate_after_commit(keys.article_generation(article_id), LISTS)
    process_after_commit(article)
    return _with_etag(article)


@bp.delete("/<id:article_id>")
@endpoint(
    status=204,
    auth=True,
    rate="write",
    errors=(401, 403, 404, 412, 429, 503),
    tags=["articles"],
    operation_id="delete_article",
)
async def remove(article_id: int, caller: Caller) -> None:
    """Delete an article (author only); ``If-Match`` is honoured as for edits."""
    await data.delete_article(
        context.db_session(), article_id=article_id, caller=caller.user, if_match=_if_match()
    )
    invalidate_after_commit(keys.article_generation(article_id), LISTS)
    context.after_commit(lambda: context.cache().forget(keys.article_stale(article_id)))

"""Articles: publish, read, edit (author only, with ETag/If-Match), delete, list, rank."""

from __future__ import annotations

import hashlib

from flask import Blueprint, Response, request

from service import articles as data
from service import db, processing, queue, ratelimit
from service.api.cached import body_etag, cached_response, invalidate_after_commit
from service.auth import authenticate
from service.errors import APIError
from service.openapi import endpoint, json_response
from service.ratelimit import client_ip, enforce
from service.schemas import (
    ArticleCreate,
    ArticleCursorPage,
    ArticleListQuery,
    ArticlePage,
    ArticlePublic,
    ArticleUpdate,
    PopularArticles,
)
from service.views import count_view

bp = Blueprint("articles", __name__, url_prefix="/api/v1/articles")

LISTS = data.LISTS_GENERATION
_generation = data.article_generation


def article_entry(article_id: int) -> tuple[list[str], str]:
    """The generations and key template of one article's cache entry."""
    return [_generation(article_id)], f"cache:{{e}}:article:{article_id}:{{g1}}"


POPULAR_ENTRY = ([LISTS], "cache:{e}:popular:{g1}")


def _etag(article: ArticlePublic) -> str:
    """Names the representation: the version (edits), the view count and the processing
    status (both change without an edit). ``If-Match`` compares the version part only."""
    return f'"{article.version}-{article.views}-{article.status}"'


def _with_etag(article: ArticlePublic, status: int = 200) -> Response:
    response = json_response(article, status)
    response.headers["ETag"] = _etag(article)
    return response


def _if_match() -> int | None:
    """The version ``If-Match`` requires (None: no condition); 412 for a foreign ETag."""
    if "If-Match" not in request.headers:
        return None
    condition = request.if_match
    if condition.star_tag:
        return None
    for tag in condition.as_set():
        version = tag.split("-", 1)[0]
        if version.isdigit():
            return int(version)
    raise APIError(412, "precondition_failed", "If-Match names no version of this article.")


def process_after_commit(article: ArticlePublic) -> None:
    """Once the write commits, enqueue processing of a pending article (``service.processing``;
    if Redis cannot take the job, the sweeper finds the article later)."""
    if article.status != "pending":
        return
    res = db.resources()
    job_id = processing.job_id(article.id, article.version)

    async def enqueue() -> None:
        await queue.enqueue(res, "process_article", article.id, article.version, job_id=job_id)

    db.after_commit(enqueue)


def _read_limit() -> ratelimit.Counter:
    """Reads per client IP, counted in the cache lookup's round trip."""
    return ratelimit.counter("read", client_ip(), db.resources().settings.rate_limit_read)


@bp.post("")
@endpoint(
    body=ArticleCreate,
    response=ArticlePublic,
    status=201,
    auth=True,
    errors=(401, 429, 503),
    tags=["articles"],
)
async def create(body: ArticleCreate) -> Response:
    """Publish an article. It starts ``pending`` until its summary and keywords are made."""
    caller = await authenticate()
    await enforce("write", caller.rate_key, db.resources().settings.rate_limit_write)
    article = await data.create_article(
        db.session(), author=caller.user, title=body.title, content=body.content, tags=body.tags
    )
    invalidate_after_commit(LISTS)
    process_after_commit(article)
    response = _with_etag(article, 201)
    response.headers["Location"] = f"/api/v1/articles/{article.id}"
    return response


@bp.get("")
@endpoint(query=ArticleListQuery, response=ArticlePage, errors=(304, 429), tags=["articles"])
async def list_articles(query: ArticleListQuery) -> Response:
    """Articles, newest first: offset pages (``page``) or keyset pages (``cursor``).

    Offset pages reach the first 10,000 articles; ``total`` is exact up to 1,000 matches and
    PostgreSQL's estimate beyond (``total_is_estimate``). Every page carries ``next_cursor``,
    which continues at constant cost however deep. Filters: ``author_id``, ``tag`` and ``q``
    (words at the start of title words, any case). Cached (``X-Cache``), with an ``ETag``.
    """
    if query.cursor is not None and query.page is not None:
        raise APIError(
            422,
            "validation_error",
            "Use either page or cursor, not both.",
            [{"loc": ["query", "cursor"], "message": "conflicts with page", "type": "value_error"}],
        )
    # Bad input is refused before the cache is consulted.
    if query.cursor is not None:
        data.decode_cursor(query.cursor)
    if query.q is not None:
        data.search_query(query.q)
    filters = data.Filters(author_id=query.author_id, tag=query.tag, q=query.q)

    async def build() -> tuple[bytes, str]:
        page = await _list_page(query, filters)
        body = page.model_dump_json().encode()
        return body, body_etag(body)

    key = hashlib.blake2b(query.model_dump_json().encode(), digest_size=12).hexdigest()
    response = await cached_response(
        "list",
        generations=[LISTS],
        template=f"cache:{{e}}:list:{{g1}}:{key}",
        ttl=db.resources().settings.cache_ttl_list,
        build=build,
        rate_limit=_read_limit(),
    )
    assert response is not None
    return response


async def _list_page(
    query: ArticleListQuery, filters: data.Filters
) -> ArticlePage | ArticleCursorPage:
    session = db.session()  # cache fills read the primary (see service.api.cached)
    if query.cursor is not None:
        items = await data.list_after(
            session, filters=filters, cursor=query.cursor, per_page=query.per_page
        )
        return ArticleCursorPage(
            articles=items, next_cursor=data.next_cursor(items, query.per_page)
        )
    page = query.page or 1
    items, total, estimated = await data.list_page(
        session, filters=filters, page=page, per_page=query.per_page
    )
    return ArticlePage(
        articles=items,
        total=total,
        total_is_estimate=estimated,
        pages=-(-total // query.per_page),
        current_page=page,
        next_cursor=data.next_cursor(items, query.per_page),
    )


@bp.get("/popular")
@endpoint(response=PopularArticles, errors=(304, 429), tags=["articles"])
async def popular() -> Response:
    """The 10 most viewed articles. Cached (``X-Cache``), with an ``ETag``."""

    async def build() -> tuple[bytes, str]:
        ranking = PopularArticles(articles=await data.most_viewed(db.session()))
        body = ranking.model_dump_json().encode()
        return body, body_etag(body)

    generations, template = POPULAR_ENTRY
    response = await cached_response(
        "popular",
        generations=generations,
        template=template,
        ttl=db.resources().settings.cache_ttl_popular,
        build=build,
        rate_limit=_read_limit(),
    )
    assert response is not None
    return response


@bp.get("/<id:article_id>")
@endpoint(response=ArticlePublic, errors=(304, 404, 429), tags=["articles"])
async def read(article_id: int) -> Response:
    """One article, with an ``ETag`` naming its version. Cached (``X-Cache``)."""

    async def build() -> tuple[bytes, str] | None:
        article = await data.get_article(db.session(), article_id)
        if article is None:
            return None
        return article.model_dump_json().encode(), _etag(article)

    generations, template = article_entry(article_id)
    response = await cached_response(
        "article",
        generations=generations,
        template=template,
        ttl=db.resources().settings.cache_ttl_article,
        build=build,
        rate_limit=_read_limit(),
    )
    if response is None:
        raise APIError(404, "not_found", f"Article {article_id} does not exist.")
    if response.status_code == 200:
        await count_view(article_id)
    return response


@bp.patch("/<id:article_id>")
@endpoint(
    body=ArticleUpdate,
    response=ArticlePublic,
    auth=True,
    errors=(401, 403, 404, 412, 429, 503),
    tags=["articles"],
)
async def edit(article_id: int, body: ArticleUpdate) -> Response:
    """Change some fields (author only). Send ``If-Match`` with the ETag you read to be sure
    nobody changed the article since; a stale one gets 412."""
    caller = await authenticate()
    await enforce("write", caller.rate_key, db.resources().settings.rate_limit_write)
    changes = body.changes()
    if not changes:
        raise APIError(422, "validation_error", "Nothing to change: send at least one field.")
    article = await data.update_article(
        db.session(),
        article_id=article_id,
        caller=caller.user,
        changes=changes,
        if_match=_if_match(),
    )
    invalidate_after_commit(_generation(article_id), LISTS)
    process_after_commit(article)
    return _with_etag(article)


@bp.delete("/<id:article_id>")
@endpoint(status=204, auth=True, errors=(401, 403, 404, 412, 429, 503), tags=["articles"])
async def remove(article_id: int) -> None:
    """Delete an article (author only); ``If-Match`` is honoured as for edits."""
    caller = await authenticate()
    await enforce("write", caller.rate_key, db.resources().settings.rate_limit_write)
    await data.delete_article(
        db.session(), article_id=article_id, caller=caller.user, if_match=_if_match()
    )
    invalidate_after_commit(_generation(article_id), LISTS)

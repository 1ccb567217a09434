"""Article data functions (no HTTP): create, read, update, delete, list and rank.

Lists are newest first, ``(published_at, id)`` descending, which the index
``ix_articles_newest`` (and ``ix_articles_author_newest`` per author) serves directly:

- offset pages (``page``/``per_page``) for the guide's shape, limited to the first
  ``MAX_OFFSET`` rows, with a ``total`` that is exact up to ``EXACT_COUNT_LIMIT`` articles and
  PostgreSQL's estimate beyond (``total_is_estimate``), so no request counts a big table;
- keyset pages (``cursor``): ``WHERE (published_at, id) < (cursor)``, the same cost at any
  depth.

Both read one row more than the page holds: the page's ``next_cursor`` is None when nothing
follows it, so a client walking the list stops without asking for an empty page.

Edits and deletes may carry an ``IfMatch`` condition on the article's entity tag
(``entity_tag``), compared whole and strongly (RFC 9110): a tag differing in any part is stale.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import (
    ClauseElement,
    Executable,
    Integer,
    Result,
    Select,
    bindparam,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles

from service.core.errors import Forbidden, InvalidInput, NotFound, StaleVersion
from service.core.types import MAX_ID, ArticleStatus
from service.domain.models import Article, User
from service.domain.schemas import ArticleFields, ArticlePublic, ArticleSummary, Author
from service.infra.driver_reads import Query
from service.infra.reads import Reads


class Statements(Protocol):
    """Where the read functions run their statements: the request's ``AsyncSession`` (in its
    transaction), or one-statement reads without one (``service.infra.reads.Reads``: one round
    trip each, the committed state)."""

    async def execute(self, statement: Executable, /) -> Result[Any]: ...


EXACT_COUNT_LIMIT = 1_000
MAX_OFFSET = 10_000
POPULAR_SIZE = 10

_SUMMARY_COLUMNS = (
    Article.id,
    Article.title,
    Article.summary,
    Article.keywords,
    Article.tags,
    Article.status,
    Article.processing_error,
    Article.views,
    Article.published_at,
    Article.updated_at,
    Article.version,
    Article.author_id,
    User.name.label("author_name"),
)


@dataclass(frozen=True)
class Filters:
    """What a list is narrowed to. ``terms`` is a search as ``search.search_query`` writes it
    (checked against the search rules once, by whoever built it)."""

    author_id: int | None = None
    tag: str | None = None
    terms: str | None = None


@dataclass(frozen=True)
class Slice:
    """One page of a list, and the cursor of the page after it (None: nothing follows)."""

    articles: list[ArticleSummary]
    next_cursor: str | None


@dataclass(frozen=True)
class OffsetSlice(Slice):
    """An offset page, with the number of matching articles (``estimated``: PostgreSQL's
    estimate, not a count)."""

    total: int
    estimated: bool


@dataclass(frozen=True)
class IfMatch:
    """An ``If-Match`` condition: the strong entity tags it names, or ``any_tag`` (``*``).

    Weak tags are never listed: a weak tag matches no ``If-Match`` (RFC 9110, 13.1.1)."""

    tags: frozenset[str] = frozenset()
    any_tag: bool = False

    def holds(self, current: str) -> bool:
        """Strong comparison: the whole tag, character for character."""
        return self.any_tag or current in self.tags


def entity_tag(article: Article | ArticleFields) -> str:
    """The opaque entity tag (unquoted) of an article's representation: its version (edits)
    and processing status (which changes without an edit). Views are not part of the
    representation, so reading an article never changes its tag."""
    return f"{article.version}-{article.status}"


_FIELDS = (
    "id",
    "title",
    "summary",
    "keywords",
    "tags",
    "status",
    "processing_error",
    "published_at",
    "updated_at",
    "version",
)


def _fields(source: Any) -> dict[str, Any]:
    """The shared fields of a result row or an ``Article``, by attribute name."""
    return {name: getattr(source, name) for name in _FIELDS}


def _summary(row: Any) -> ArticleSummary:
    author = Author(id=row.author_id, name=row.author_name)
    return ArticleSummary(**_fields(row), views=row.views, author=author)


def _public(row: Any) -> ArticlePublic:
    author = Author(id=row.author_id, name=row.author_name)
    return ArticlePublic(**_fields(row), content=row.content, author=author)


def _filtered(stmt: Any, filters: Filters) -> Any:
    if filters.author_id is not None:
        stmt = stmt.where(Article.author_id == filters.author_id)
    if filters.tag is not None:
        stmt = stmt.where(Article.tags.contains([filters.tag]))
    if filters.terms is not None:
        stmt = stmt.where(Article.title_search.op("@@")(func.to_tsquery("simple", filters.terms)))
    return stmt


def _newest(filters: Filters) -> Select[Any]:
    stmt = select(*_SUMMARY_COLUMNS).join(User, User.id == Article.author_id)
    newest: Select[Any] = _filtered(stmt, filters).order_by(
        Article.published_at.desc(), Article.id.desc()
    )
    return newest


# --- cursors ------------------------------------------------------------------------------


def encode_cursor(published_at: datetime, article_id: int) -> str:
    raw = orjson.dumps({"t": published_at.isoformat(), "i": article_id})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The position a cursor points after; 422 for anything that is not one of ours.

    Every field is checked against what its column can hold before it reaches PostgreSQL: the
    id within ``BIGINT`` ids (``MAX_ID``), the time zone-aware and representable in UTC (a
    ``0001-01-01T00:00:00+14:00`` is year 0 in UTC, which no driver can send)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = orjson.loads(raw)
        published_at = datetime.fromisoformat(data["t"])
        article_id = data["i"]
        if (
            type(article_id) is not int
            or not 0 < article_id <= MAX_ID
            or published_at.tzinfo is None
        ):
            raise ValueError(article_id)
        published_at = published_at.astimezone(UTC)  # OverflowError past year 1 or 9999
    except (
        ValueError,
        TypeError,
        KeyError,
        OverflowError,
        binascii.Error,
        orjson.JSONDecodeError,
    ):
        raise InvalidInput.at(
            ["query", "cursor"],
            "The cursor is not valid; start again without it.",
            code="invalid_cursor",
            why="not a cursor",
        ) from None
    return published_at, article_id


# --- writes -----------------------------------------------------------------------------


async def create_article(
    session: AsyncSession, *, author: User, title: str, content: str, tags: list[str]
) -> ArticlePublic:
    article = Article(author_id=author.id, title=title, content=content, tags=tags)
    session.add(article)
    await session.flush()
    await session.refresh(article)
    return _public_from(article, author.name)


def _public_from(article: Article, author_name: str) -> ArticlePublic:
    author = Author(id=article.author_id, name=author_name)
    return ArticlePublic(**_fields(article), content=article.content, author=author)


async def _owned_for_update(
    session: AsyncSession, *, article_id: int, caller_id: int, if_match: IfMatch | None
) -> Article:
    article = await session.get(Article, article_id, with_for_update=True)
    if article is None:
        raise NotFound(f"Article {article_id} does not exist.")
    if article.author_id != caller_id:
        raise Forbidden("Only the author may change this article.")
    if if_match is not None and not if_match.holds(entity_tag(article)):
        raise StaleVersion(
            f'The article has changed: its ETag is now "{entity_tag(article)}"; fetch it again.'
        )
    return article


async def update_article(
    session: AsyncSession,
    *,
    article_id: int,
    caller: User,
    changes: dict[str, Any],
    if_match: IfMatch | None,
) -> ArticlePublic:
    """Apply ``changes`` as the author; bumps ``version``; new text goes back to pending."""
    article = await _owned_for_update(
        session, article_id=article_id, caller_id=caller.id, if_match=if_match
    )
    values: dict[str, Any] = dict(changes)
    values["version"] = Article.version + 1
    values["updated_at"] = func.now()
    if "title" in changes or "content" in changes:
        values["status"] = ArticleStatus.PENDING
        values["summary"] = None
        values["keywords"] = []
    await session.execute(update(Article).where(Article.id == article.id).values(**values))
    await session.refresh(article)
    return _public_from(article, caller.name)


async def delete_article(
    session: AsyncSession, *, article_id: int, caller: User, if_match: IfMatch | None
) -> None:
    article = await _owned_for_update(
        session, article_id=article_id, caller_id=caller.id, if_match=if_match
    )
    await session.delete(article)


# --- reads ------------------------------------------------------------------------------


# The two hottest reads, compiled once and run by the driver (``Reads.row``/``Reads.rows``).
_ARTICLE_BY_ID = Query(
    select(*_SUMMARY_COLUMNS, Article.content)
    .join(User, User.id == Article.author_id)
    .where(Article.id == bindparam("article_id", type_=Article.id.type))
)
_MOST_VIEWED = Query(
    select(*_SUMMARY_COLUMNS)
    .join(User, User.id == Article.author_id)
    .order_by(Article.views.desc(), Article.id.desc())
    .limit(bindparam("limit", type_=Integer))
)


async def get_article(reads: Reads, article_id: int) -> ArticlePublic | None:
    """The article as committed, read in one round trip on the driver; None if it is gone."""
    row = await reads.row(_ARTICLE_BY_ID, article_id=article_id)
    return _public(row) if row is not None else None


@dataclass(frozen=True)
class _ListQueries:
    """A list's statements for the driver (``Reads.rows``), one set per filter shape (by
    author, by tag, both, neither; a search stays with its session, whose transaction carries
    the search's statement timeout): the offset page, the keyset page after a position, and
    the count capped at EXACT_COUNT_LIMIT + 1."""

    page: Query
    after: Query
    capped_count: Query


def _shape(stmt: Any, by_author: bool, by_tag: bool) -> Any:
    if by_author:
        stmt = stmt.where(Article.author_id == bindparam("author_id", type_=Article.author_id.type))
    if by_tag:
        stmt = stmt.where(Article.tags.contains(bindparam("tags", type_=Article.tags.type)))
    return stmt


def _list_queries(by_author: bool, by_tag: bool) -> _ListQueries:
    newest = _shape(
        select(*_SUMMARY_COLUMNS).join(User, User.id == Article.author_id), by_author, by_tag
    ).order_by(Article.published_at.desc(), Article.id.desc())
    page = newest.limit(bindparam("limit", type_=Integer)).offset(
        bindparam("offset", type_=Integer)
    )
    position = tuple_(
        bindparam("after_at", type_=Article.published_at.type),
        bindparam("after_id", type_=Article.id.type),
    )
    after = newest.where(tuple_(Article.published_at, Article.id) < position).limit(
        bindparam("limit", type_=Integer)
    )
    capped = _shape(select(Article.id), by_author, by_tag).limit(bindparam("cap", type_=Integer))
    return _ListQueries(
        Query(page), Query(after), Query(select(func.count()).select_from(capped.subquery()))
    )


_LIST_QUERIES = {
    (by_author, by_tag): _list_queries(by_author, by_tag)
    for by_author in (False, True)
    for by_tag in (False, True)
}


def _for_driver(filters: Filters) -> tuple[_ListQueries, dict[str, Any]]:
    """The queries of ``filters``' shape (without a search) and the parameters naming it."""
    queries = _LIST_QUERIES[filters.author_id is not None, filters.tag is not None]
    return queries, _shape_params(filters)


def _shape_params(filters: Filters) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if filters.author_id is not None:
        params["author_id"] = filters.author_id
    if filters.tag is not None:
        params["tags"] = [filters.tag]
    return params


async def list_page(
    session: Statements, *, filters: Filters, page: int, per_page: int
) -> OffsetSlice:
    """One offset page, the total and whether the total is an estimate. Through ``Reads``
    without a search, the page and the count run on the driver (``driver_reads``): one round
    trip each, no SQLAlchemy result in between."""
    offset = (page - 1) * per_page
    if offset + per_page > MAX_OFFSET:
        raise InvalidInput.at(
            ["query", "page"],
            f"Offset pages stop at {MAX_OFFSET} articles; use next_cursor to go further.",
            code="page_too_deep",
            why="too deep",
        )
    if isinstance(session, Reads) and filters.terms is None:
        queries, shape = _for_driver(filters)
        rows: Any = await session.rows(queries.page, **shape, limit=per_page + 1, offset=offset)
        counted = await session.row(queries.capped_count, **shape, cap=EXACT_COUNT_LIMIT + 1)
        assert counted is not None  # a count has one row
        total, estimated = await _total(session, filters, int(counted[0]))
    else:
        rows = (await session.execute(_newest(filters).limit(per_page + 1).offset(offset))).all()
        total, estimated = await count_articles(session, filters)
    page_slice = slice_of([_summary(row) for row in rows], per_page)
    return OffsetSlice(page_slice.articles, page_slice.next_cursor, total, estimated)


async def list_after(
    session: Statements, *, filters: Filters, cursor: str | None, per_page: int
) -> Slice:
    """One keyset page after ``cursor`` (from the newest when None); through ``Reads``
    without a search, read on the driver as ``list_page`` is."""
    position = None if cursor is None else decode_cursor(cursor)
    rows: Any
    if isinstance(session, Reads) and filters.terms is None:
        queries, shape = _for_driver(filters)
        if position is None:
            rows = await session.rows(queries.page, **shape, limit=per_page + 1, offset=0)
        else:
            at, article_id = position
            rows = await session.rows(
                queries.after, **shape, after_at=at, after_id=article_id, limit=per_page + 1
            )
        return slice_of([_summary(row) for row in rows], per_page)
    stmt = _newest(filters)
    if position is not None:
        stmt = stmt.where(tuple_(Article.published_at, Article.id) < position)
    rows = (await session.execute(stmt.limit(per_page + 1))).all()
    return slice_of([_summary(row) for row in rows], per_page)


def slice_of(fetched: list[ArticleSummary], per_page: int) -> Slice:
    """The page in ``fetched`` (up to ``per_page + 1`` rows, in list order): its first
    ``per_page`` articles, and a cursor after the last of them only if a row follows."""
    articles = fetched[:per_page]
    if len(fetched) <= per_page:
        return Slice(articles, None)
    last = articles[-1]
    return Slice(articles, encode_cursor(last.published_at, last.id))


class Explain(Executable, ClauseElement):
    """``EXPLAIN (FORMAT JSON) <statement>``, keeping the statement's bound parameters."""

    inherit_cache = False

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement


@compiles(Explain, "postgresql")
def _compile_explain(element: Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + str(compiler.process(element.statement, **kw))


async def count_articles(session: Statements, filters: Filters) -> tuple[int, bool]:
    """Exact when at most ``EXACT_COUNT_LIMIT`` articles match (a count bounded by a LIMIT);
    beyond, PostgreSQL's estimate: the table's ``reltuples`` unfiltered, the planner's row
    estimate filtered. Either way a request never counts a big table."""
    capped = _filtered(select(Article.id), filters).limit(EXACT_COUNT_LIMIT + 1).subquery()
    exact = int((await session.execute(select(func.count()).select_from(capped))).scalar_one())
    return await _total(session, filters, exact)


async def _total(session: Statements, filters: Filters, exact: int) -> tuple[int, bool]:
    """The total from a count capped at EXACT_COUNT_LIMIT + 1: itself when at most the limit,
    else PostgreSQL's estimate (``count_articles``)."""
    if exact <= EXACT_COUNT_LIMIT:
        return exact, False
    if filters == Filters():
        estimate = (
            await session.execute(
                text("SELECT reltuples::bigint FROM pg_class WHERE oid = 'articles'::regclass")
            )
        ).scalar_one()
    else:
        plan = (await session.execute(Explain(_filtered(select(Article.id), filters)))).scalar_one()
        if isinstance(plan, str):
            plan = orjson.loads(plan)
        estimate = plan[0]["Plan"]["Plan Rows"]
    return max(int(estimate), exact), True


async def most_viewed(reads: Reads, limit: int = POPULAR_SIZE) -> list[ArticleSummary]:
    """The ``limit`` most viewed articles (the counts flushed to the table so far)."""
    return [_summary(row) for row in await reads.rows(_MOST_VIEWED, limit=limit)]

"""service.infra.driver_reads: a compiled query run by asyncpg on a pooled connection gives the
rows SQLAlchemy gives, sends the statement alone, refuses types it would convert differently,
and fails as SQLAlchemy fails: its errors are SQLAlchemy's, a lost connection is invalidated
(and the pool reconnects), a cancelled read leaves no connection behind."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Enum, Integer, Numeric, Text, bindparam, cast, func, insert, literal, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession

from service.cli.embedded import free_port
from service.core.types import ArticleStatus
from service.domain import articles
from service.domain.models import Article, User
from service.infra import db_errors
from service.infra.driver_reads import Query
from service.infra.reads import Reads
from tests.support.watched_pool import Watched, watched_engine


@pytest.fixture
async def article_id(watched: Watched) -> int:
    """An article with a summary, keywords and tags, by an author of its own."""
    async with AsyncSession(watched.engine) as session, session.begin():
        author = (
            await session.execute(
                insert(User)
                .values(email=f"{uuid.uuid4().hex}@example.org", name="Ann", password_hash="x")
                .returning(User.id)
            )
        ).scalar_one()
        return int(
            (
                await session.execute(
                    insert(Article)
                    .values(
                        author_id=author,
                        title="Driver reads",
                        content="Body text.",
                        summary="A summary.",
                        keywords=["driver", "reads"],
                        tags=["tech", "db"],
                        status="processed",
                    )
                    .returning(Article.id)
                )
            ).scalar_one()
        )


@pytest.fixture
async def tagged(watched: Watched) -> tuple[int, str]:
    """An author with seven articles, five of them under a tag of their own, and one more
    article under that tag by someone else: (the author's id, the tag)."""
    tag = f"t{uuid.uuid4().hex[:8]}"
    async with AsyncSession(watched.engine) as session, session.begin():
        ids = []
        for name in ("Ann", "Bob"):
            email = f"{uuid.uuid4().hex}@example.org"
            ids.append(
                (
                    await session.execute(
                        insert(User)
                        .values(email=email, name=name, password_hash="x")
                        .returning(User.id)
                    )
                ).scalar_one()
            )
        rows = [
            {"author_id": ids[0], "title": f"A{n}", "content": "x", "tags": [tag] * (n < 5)}
            for n in range(7)
        ]
        rows.append({"author_id": ids[1], "title": "B", "content": "x", "tags": [tag, "other"]})
        await session.execute(insert(Article), rows)
    return ids[0], tag


@pytest.mark.parametrize("by_author", [False, True])
@pytest.mark.parametrize("by_tag", [False, True])
async def test_a_list_page_through_the_driver_is_the_sessions(
    watched: Watched, tagged: tuple[int, str], by_author: bool, by_tag: bool
) -> None:
    """Each filter shape's page and count, read by the driver (``Reads``), equal what the
    same page reads through a session; the driver sends the page and the capped count alone.
    The same for keyset pages (``list_after``), each one SELECT."""
    author, tag = tagged
    filters = articles.Filters(author_id=author if by_author else None, tag=tag if by_tag else None)
    reads = Reads(watched.engine)
    for page in (1, 2):
        async with AsyncSession(watched.engine) as session:
            expected = await articles.list_page(session, filters=filters, page=page, per_page=3)
        watched.sent.clear()
        found = await articles.list_page(reads, filters=filters, page=page, per_page=3)
        assert found == expected
        await asyncio.sleep(0)  # asyncpg calls its query loggers soon after, not at once
        assert len(watched.sent) == 2 and all(sql.startswith("SELECT") for sql in watched.sent)
    if by_author or by_tag:
        assert (
            found.total == {(True, False): 7, (False, True): 6, (True, True): 5}[by_author, by_tag]
        )
        assert not found.estimated
    # Keyset pages: the first, then after each page's cursor, to the end of the list or four.
    cursor: str | None = None
    walked = 0
    while walked < 4:
        walked += 1
        async with AsyncSession(watched.engine) as session:
            keyset = await articles.list_after(session, filters=filters, cursor=cursor, per_page=2)
        watched.sent.clear()
        by_driver = await articles.list_after(reads, filters=filters, cursor=cursor, per_page=2)
        assert by_driver == keyset
        await asyncio.sleep(0)
        assert len(watched.sent) == 1 and watched.sent[0].startswith("SELECT")
        cursor = keyset.next_cursor
        if cursor is None:
            break
    assert walked >= 3  # five articles at least, two a page: a first page and two after it


async def test_the_article_read_gives_what_sqlalchemy_gives(
    watched: Watched, article_id: int
) -> None:
    reads = Reads(watched.engine)
    found = await articles.get_article(reads, article_id)
    assert found is not None
    assert found.keywords == ["driver", "reads"] and found.tags == ["tech", "db"]
    assert found.author.name == "Ann" and found.published_at.tzinfo is not None
    # The same statement through SQLAlchemy, row for row, value type for value type.
    by_driver = await reads.row(articles._ARTICLE_BY_ID, article_id=article_id)
    assert by_driver is not None
    statement = articles._ARTICLE_BY_ID.statement
    by_sqlalchemy = (await reads.execute(statement, {"article_id": article_id})).one()
    assert dict(by_driver) == dict(by_sqlalchemy._mapping)
    assert [type(v) for v in by_driver.values()] == [type(v) for v in by_sqlalchemy]
    assert articles._public(by_driver) == articles._public(by_sqlalchemy)
    assert by_driver.title == by_driver["title"] == by_driver[1] == "Driver reads"
    with pytest.raises(AttributeError):
        _ = by_driver.no_such_column
    assert await articles.get_article(reads, 2**62) is None


async def test_the_popular_list_is_the_rows_in_views_order(
    watched: Watched, article_id: int
) -> None:
    reads = Reads(watched.engine)
    top = await articles.most_viewed(reads, limit=3)
    expected = (
        await reads.execute(
            select(Article.id).order_by(Article.views.desc(), Article.id.desc()).limit(3)
        )
    ).scalars()
    assert [a.id for a in top] == list(expected)


async def test_a_read_sends_its_statement_alone(watched: Watched, article_id: int) -> None:
    reads = Reads(watched.engine)
    await articles.get_article(reads, article_id)  # the connection opened, the statement prepared
    watched.sent.clear()
    for _ in range(5):
        await articles.get_article(reads, article_id)
    # asyncpg's logger shows each query the connection runs: the SELECT, five times, and no
    # BEGIN, ROLLBACK or ping around it.
    assert [q.split()[0] for q in watched.sent] == ["SELECT"] * 5
    assert watched.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


ASYNCPG = asyncpg_dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it unannotated


def test_types_sqlalchemy_would_convert_are_refused() -> None:
    status = Enum(ArticleStatus)  # a str from asyncpg, an ArticleStatus from SQLAlchemy
    enum_column = Query(select(cast(literal("pending"), status).label("status")))
    with pytest.raises(ValueError, match="column status"):
        enum_column.compiled(ASYNCPG)
    number = Query(select(cast(literal(1.5), Numeric(asdecimal=False)).label("n")))
    with pytest.raises(ValueError, match="column n"):
        number.compiled(ASYNCPG)
    enum_parameter = Query(select(literal(1, Integer)).where(bindparam("s", type_=status) == "x"))
    with pytest.raises(ValueError, match="parameter s"):
        enum_parameter.compiled(ASYNCPG)
    # JSON is decoded by the codec SQLAlchemy installs on the connection: the same either way.
    assert Query(select(cast(literal("{}"), JSONB).label("doc"))).compiled(ASYNCPG)


async def test_parameters_are_checked_by_name(watched: Watched) -> None:
    reads = Reads(watched.engine)
    query = Query(select(bindparam("n", type_=Integer).label("n"), literal("x", Text).label("s")))
    row = await reads.row(query, n=7)
    assert row is not None and (row.n, row.s) == (7, "x")
    with pytest.raises(TypeError, match="missing parameter n"):
        await reads.row(query)
    with pytest.raises(TypeError, match="no parameter named m"):
        await reads.row(query, n=1, m=2)


async def test_a_statement_error_is_sqlalchemys_and_keeps_the_connection(
    watched: Watched,
) -> None:
    reads = Reads(watched.engine)
    divide = Query(select(func.mod(literal(1, Integer), bindparam("d", type_=Integer)).label("q")))
    await reads.row(divide, d=1)
    opened = watched.opened
    with pytest.raises(sa_exc.DBAPIError) as raised:
        await reads.row(divide, d=0)
    assert db_errors.invalid_value(raised.value)  # 22012: division by zero, a 422 elsewhere
    assert not db_errors.unreachable(raised.value)
    assert not raised.value.connection_invalidated
    assert (await reads.row(divide, d=2)) is not None
    assert watched.opened == opened  # the connection was kept


async def _backend_pids(reads: Reads) -> set[int]:
    """The server pids of the pool's connections (each read asks one of them)."""
    pid = Query(select(func.pg_backend_pid().label("pid")))
    found = set()
    for _ in range(4):
        row = await reads.row(pid)
        assert row is not None
        found.add(int(row.pid))
    return found


async def test_a_lost_connection_is_a_disconnect_and_the_pool_reconnects(
    watched: Watched, pg: asyncpg.Connection
) -> None:
    reads = Reads(watched.engine)
    pids = await _backend_pids(reads)
    opened = watched.opened
    for pid in pids:  # the pool's connections, killed from outside
        await pg.execute("SELECT pg_terminate_backend($1)", pid)
    with pytest.raises(Exception) as raised:
        await reads.row(Query(select(literal(1, Integer).label("one"))))
    error = raised.value
    assert isinstance(error, sa_exc.DBAPIError), repr(error)
    assert error.connection_invalidated
    assert db_errors.unreachable(error)  # answered 503 by the API
    # The next reads reconnect: the killed connections were invalidated with the pool.
    for _ in range(4):
        assert await reads.row(Query(select(literal(1, Integer).label("one")))) is not None
    assert watched.opened > opened
    assert watched.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_an_unreachable_database_is_unreachable() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    gone = watched_engine(url, db_pool_size=1, db_connect_timeout=2)
    try:
        with pytest.raises(Exception) as raised:
            await Reads(gone.engine).row(Query(select(literal(1, Integer).label("one"))))
        assert db_errors.unreachable(raised.value), repr(raised.value)
    finally:
        await gone.engine.dispose()


async def test_a_cancelled_read_leaves_no_connection_behind(watched: Watched) -> None:
    reads = Reads(watched.engine)
    one = Query(select(literal(1, Integer).label("one")))
    await reads.row(one)
    assert watched.opened == 1  # the pool holds one connection: the sleep below takes it
    sleep = Query(select(func.pg_sleep(bindparam("s", type_=Integer)).label("slept")))
    task = asyncio.create_task(reads.row(sleep, s=30))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert watched.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    row: Any = await reads.row(one)
    assert row.one == 1
    # Served by a new connection: the one cancelled mid-statement was closed, not pooled.
    assert watched.opened == 2

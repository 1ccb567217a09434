"""service.cli.seed and the data commands of ``python -m service``, against the real test database.

The plan tests seed 100,000 articles into a database of their own and EXPLAIN the statements
the article endpoints really run: they call the data functions of ``service.domain.articles`` on an
AsyncSession and capture the SQL and parameters SQLAlchemy sends. Each statement is planned
twice: with its parameter values (a custom plan, what PostgreSQL uses for a prepared
statement's first executions) and as a generic plan (``plan_cache_mode =
force_generic_plan``), which it may switch to once the app has run a statement five times.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from service.cli.seed import SEED_SPAN, TAGS, plain_url, seed_articles, seed_email
from service.core.settings import normalise_database_url
from service.domain import articles as data
from service.domain.credentials import api_key_prefix, digest
from service.domain.search import search_query
from service.infra.reads import Reads
from tests.support.databases import ROOT, ServerStack, migrate

SEEDED = 100_000
DEEP = 90_000  # the cursor page starts this many articles down the list
PASSWORD = "correct-horse-battery"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def cli(url: str, *args: str, password: str | None = None) -> Ran:
    """``python -m service ARGS`` in a child process, with ``DATABASE_URL=url``."""
    env = {k: v for k, v in os.environ.items() if k != "NEWSDESK_PASSWORD"}
    env["DATABASE_URL"] = url
    if password is not None:
        env["NEWSDESK_PASSWORD"] = password
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


@pytest.fixture
def fresh_url(stack: ServerStack) -> str:
    url = stack.new_database("newsdesk_seed")
    migrate(url)
    return url


@pytest.fixture
async def fresh_pg(fresh_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_url(fresh_url))
    yield conn
    await conn.close()


# --- create-user, create-api-key ----------------------------------------------------------


async def test_create_user_prints_the_id_and_create_api_key_prints_a_working_key_once(
    fresh_url: str, fresh_pg: asyncpg.Connection
) -> None:
    made = await cli(
        fresh_url, "create-user", "--email", "Ada@Example.COM", "--name", " Ada ", password=PASSWORD
    )
    assert made.returncode == 0, made.stderr
    user_id = int(made.stdout.strip())
    user = await fresh_pg.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
    assert (user["email"], user["name"]) == ("ada@example.com", "Ada")
    assert user["password_hash"].startswith("$argon2id$")

    issued = await cli(fresh_url, "create-api-key", "--email", "ADA@example.com", "--name", "ci")
    assert issued.returncode == 0, issued.stderr
    lines = dict(line.split(": ", 1) for line in issued.stdout.strip().splitlines())
    key, prefix = lines["key"], lines["prefix"]
    assert api_key_prefix(key) == prefix
    row = await fresh_pg.fetchrow("SELECT * FROM api_keys WHERE prefix = $1", prefix)
    assert (row["user_id"], row["name"], bytes(row["key_hash"])) == (user_id, "ci", digest(key))
    assert key not in issued.stderr  # shown once, on stdout only


async def test_create_user_with_a_taken_email_exits_1_with_a_message_and_no_traceback(
    fresh_url: str, fresh_pg: asyncpg.Connection
) -> None:
    first = await cli(
        fresh_url, "create-user", "--email", "bo@example.com", "--name", "Bo", password=PASSWORD
    )
    assert first.returncode == 0, first.stderr
    again = await cli(
        fresh_url, "create-user", "--email", "BO@example.com", "--name", "Bo", password=PASSWORD
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    assert again.stdout == ""
    assert await fresh_pg.fetchval("SELECT count(*) FROM users") == 1


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (("create-user", "--email", "cy@example.com", "--name", "Cy"), "short", "password"),
        (("create-user", "--email", "not-an-email", "--name", "Cy"), PASSWORD, "email"),
        (("create-user", "--email", "cy@example.com", "--name", "Cy"), None, "no password"),
        (("create-api-key", "--email", "nobody@example.com", "--name", "k"), None, "no user"),
    ],
    ids=["short-password", "bad-email", "no-password", "unknown-email"],
)
async def test_invalid_input_or_an_unknown_user_exits_1_with_a_message_and_no_traceback(
    fresh_url: str, args: tuple[str, ...], password: str | None, message: str
) -> None:
    ran = await cli(fresh_url, *args, password=password)
    assert ran.returncode == 1
    assert message in ran.stderr
    assert "Traceback" not in ran.stderr
    if password is not None:
        assert password not in ran.stderr  # a rejected password is never echoed


# --- seed ---------------------------------------------------------------------------------


async def test_seed_command_inserts_the_articles_asked_for_by_100_seed_authors(
    fresh_url: str, fresh_pg: asyncpg.Connection
) -> None:
    ran = await cli(fresh_url, "seed", "--count", "2000", "--no-progress")
    assert ran.returncode == 0, ran.stderr
    assert "seeded 2000 articles" in ran.stdout
    stats = await fresh_pg.fetchrow(
        """
        SELECT count(*) AS articles,
               count(DISTINCT published_at) AS instants,
               min(published_at) AS oldest,
               max(published_at) AS newest,
               bool_and(updated_at = published_at AND version = 1) AS fresh,
               bool_and(views BETWEEN 0 AND 100000) AS views_in_range,
               bool_and(cardinality(tags) <= 3 AND tags <@ $1::text[]) AS known_tags,
               count(*) FILTER (WHERE status = 'processed' AND summary <> ''
                                AND cardinality(keywords) > 0) AS processed,
               count(DISTINCT title) AS titles
        FROM articles
        """,
        list(TAGS),
    )
    assert stats["articles"] == stats["instants"] == 2000
    assert stats["fresh"] and stats["views_in_range"] and stats["known_tags"]
    assert stats["processed"] > 1600  # most are processed, with a summary and keywords
    assert stats["titles"] > 1900  # varied, not a handful of repeats
    now = datetime.now(UTC)
    assert now - SEED_SPAN - timedelta(days=1) < stats["oldest"] < now - SEED_SPAN / 2
    assert now - timedelta(days=30) < stats["newest"] <= now
    authors = await fresh_pg.fetch(
        "SELECT DISTINCT email FROM users JOIN articles ON articles.author_id = users.id"
    )
    assert {row["email"] for row in authors} <= {seed_email(n) for n in range(1, 101)}
    assert await fresh_pg.fetchval("SELECT count(*) FROM users") == 100


async def test_seeding_again_reuses_the_seed_authors_and_accepts_any_url_spelling(
    fresh_url: str, fresh_pg: asyncpg.Connection
) -> None:
    sqlalchemy_url = normalise_database_url(fresh_url)  # postgresql+asyncpg://
    postgres_url = plain_url(fresh_url).replace("postgresql://", "postgres://", 1)
    assert await seed_articles(sqlalchemy_url, count=300, authors=5, progress=False) == 300
    assert await seed_articles(postgres_url, count=200, authors=8, progress=False) == 200
    assert await fresh_pg.fetchval("SELECT count(*) FROM articles") == 500
    assert await fresh_pg.fetchval("SELECT count(*) FROM users") == 8
    assert await seed_articles(fresh_url, count=0, authors=8, progress=False) == 0


# --- query plans on 100,000 articles ------------------------------------------------------


@dataclass
class Seeded:
    url: str
    author_id: int
    deep_cursor: str


@pytest.fixture(scope="module")
def plans_url(stack: ServerStack) -> str:
    url = stack.new_database("newsdesk_plans")
    migrate(url)
    return url


@pytest.fixture(scope="module")
async def seeded(plans_url: str) -> Seeded:
    assert await seed_articles(plans_url, count=SEEDED, progress=False) == SEEDED
    conn = await asyncpg.connect(plain_url(plans_url))
    try:
        row = await conn.fetchrow(
            "SELECT published_at, id FROM articles ORDER BY published_at DESC, id DESC "
            "OFFSET $1 LIMIT 1",
            DEEP,
        )
        author_id = await conn.fetchval("SELECT id FROM users WHERE email = $1", seed_email(7))
    finally:
        await conn.close()
    return Seeded(plans_url, author_id, data.encode_cursor(row["published_at"], row["id"]))


@pytest.fixture
async def plans_pg(seeded: Seeded) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_url(seeded.url))
    yield conn
    await conn.close()


Call = Callable[[AsyncSession, Seeded], Awaitable[object]]


async def sent_statements(seeded: Seeded, call: Call) -> list[tuple[str, tuple[Any, ...]]]:
    """The SQL and parameters ``call`` sends (the app's own statements): SQLAlchemy's, and the
    driver reads' (``service.infra.driver_reads``), which asyncpg's query logger sees (it does
    not see SQLAlchemy's prepared statements, only its BEGIN and ROLLBACK, left out)."""
    engine = create_async_engine(normalise_database_url(seeded.url))
    sent: list[tuple[str, tuple[Any, ...]]] = []

    def capture(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        sent.append((sql, tuple(params or ())))

    def driver(dbapi_connection: Any, record: Any) -> None:
        def logged(query: Any) -> None:
            if query.query.rstrip(";").split()[0] not in ("BEGIN", "ROLLBACK", "COMMIT"):
                sent.append((query.query, tuple(query.args or ())))

        dbapi_connection.driver_connection.add_query_logger(logged)

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    event.listen(engine.sync_engine.pool, "connect", driver)
    try:
        async with AsyncSession(engine) as session:
            await call(session, seeded)
    finally:
        await engine.dispose()
    # count_articles' planner estimate is itself an EXPLAIN: nothing to plan there.
    return [(sql, params) for sql, params in sent if not sql.startswith("EXPLAIN")]


async def plan_of(
    pg: asyncpg.Connection, sql: str, params: tuple[Any, ...], mode: str
) -> dict[str, Any]:
    if mode == "custom":
        raw = await pg.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *params)
    else:
        # PREPARE ... EXECUTE with the values as literals, the plan forced generic.
        prepared = await pg.prepare(sql)
        literals = []
        for param, value in zip(prepared.get_parameters(), params, strict=True):
            sql_type = await pg.fetchval("SELECT format_type($1::oid, NULL)", param.oid)
            literals.append(await pg.fetchval(f"SELECT quote_nullable($1::{sql_type})", value))
        await pg.execute(f"PREPARE planned AS {sql}")
        try:
            await pg.execute("SET plan_cache_mode = force_generic_plan")
            raw = await pg.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE planned({', '.join(literals)})")
        finally:
            await pg.execute("DEALLOCATE planned; RESET plan_cache_mode")
    plan: dict[str, Any] = json.loads(raw)[0]["Plan"]
    return plan


def walk(
    node: dict[str, Any], above: tuple[dict[str, Any], ...] = ()
) -> Iterator[tuple[dict[str, Any], tuple[dict[str, Any], ...]]]:
    """Every node of a plan, with the nodes above it."""
    yield node, above
    for child in node.get("Plans", []):
        yield from walk(child, (*above, node))


def seq_scans_on_articles(plan: dict[str, Any]) -> list[tuple[dict[str, Any], tuple[Any, ...]]]:
    return [
        (node, above)
        for node, above in walk(plan)
        if node["Node Type"] == "Seq Scan" and node.get("Relation Name") == "articles"
    ]


def indexes_used(plan: dict[str, Any]) -> set[str]:
    return {node["Index Name"] for node, _ in walk(plan) if "Index Name" in node}


def _page(filters: data.Filters, page: int = 1) -> Call:
    async def call(session: AsyncSession, seeded: Seeded) -> object:
        return await data.list_page(session, filters=filters, page=page, per_page=20)

    return call


def _after(filters: data.Filters) -> Call:
    async def call(session: AsyncSession, seeded: Seeded) -> object:
        return await data.list_after(
            session, filters=filters, cursor=seeded.deep_cursor, per_page=20
        )

    return call


async def _popular(session: AsyncSession, seeded: Seeded) -> object:
    assert isinstance(session.bind, AsyncEngine)
    return await data.most_viewed(Reads(session.bind))


async def _by_author(session: AsyncSession, seeded: Seeded) -> object:
    filters = data.Filters(author_id=seeded.author_id)
    return await data.list_page(session, filters=filters, page=1, per_page=20)


async def _by_author_after(session: AsyncSession, seeded: Seeded) -> object:
    filters = data.Filters(author_id=seeded.author_id)
    return await data.list_after(session, filters=filters, cursor=seeded.deep_cursor, per_page=20)


NEWEST = "ix_articles_newest"
CASES: dict[str, tuple[Call, set[str]]] = {
    "newest-page-1": (_page(data.Filters()), {NEWEST}),
    "deepest-offset-page": (_page(data.Filters(), page=data.MAX_OFFSET // 20), {NEWEST}),
    "deep-cursor-page": (_after(data.Filters()), {NEWEST}),
    "popular": (_popular, {"ix_articles_popular"}),
    # ~3% of titles: walking the newest index finds 20 soon; either index will do.
    "title-search": (
        _page(data.Filters(terms=search_query("Heat pumps"))),
        {"ix_articles_title_search", NEWEST},
    ),
    # ~0.06% of titles: only the full-text index finds them cheaply.
    "rare-title-search": (
        _page(data.Filters(terms=search_query("tallinn quantum"))),
        {"ix_articles_title_search"},
    ),
    "tag-filter": (_page(data.Filters(tag="climate")), {"ix_articles_tags", NEWEST}),
    "tag-cursor-page": (_after(data.Filters(tag="climate")), {"ix_articles_tags", NEWEST}),
    "author-filter": (_by_author, {"ix_articles_author_newest"}),
    "author-cursor-page": (_by_author_after, {"ix_articles_author_newest"}),
}


@pytest.mark.parametrize("mode", ["custom", "generic"])
@pytest.mark.parametrize("case", list(CASES))
async def test_article_lists_are_served_by_an_index_never_a_seq_scan_on_articles(
    seeded: Seeded, plans_pg: asyncpg.Connection, case: str, mode: str
) -> None:
    call, expected = CASES[case]
    (page_sql, page_params), *counts = await sent_statements(seeded, call)
    plan = await plan_of(plans_pg, page_sql, page_params, mode)
    assert seq_scans_on_articles(plan) == [], json.dumps(plan, indent=1)
    assert indexes_used(plan) & expected, (indexes_used(plan), json.dumps(plan, indent=1))
    # An offset page also counts its matches, exactly up to EXACT_COUNT_LIMIT: the count may
    # read the table, but under a LIMIT of EXACT_COUNT_LIMIT + 1. Past that the total is an
    # estimate (pg_class.reltuples, or an EXPLAIN), which reads no rows.
    for sql, params in counts:
        if "reltuples" in sql or sql.startswith("EXPLAIN"):
            continue
        assert "count(*)" in sql
        assert data.EXACT_COUNT_LIMIT + 1 in params
        count_plan = await plan_of(plans_pg, sql, params, mode)
        for _, above in seq_scans_on_articles(count_plan):
            limits = [node for node in above if node["Node Type"] == "Limit"]
            assert limits, json.dumps(count_plan, indent=1)


async def test_a_title_search_matching_more_than_the_exact_count_limit_gets_an_estimate(
    seeded: Seeded,
) -> None:
    engine = create_async_engine(normalise_database_url(seeded.url))
    try:
        async with AsyncSession(engine) as session:
            filters = data.Filters(
                terms=search_query("in")
            )  # "in", "inside", "investors": ~27% of titles
            found = await data.list_page(session, filters=filters, page=1, per_page=20)
    finally:
        await engine.dispose()
    assert found.estimated and found.total > data.EXACT_COUNT_LIMIT


async def test_every_filter_beyond_the_exact_limit_gets_an_estimate(seeded: Seeded) -> None:
    """Unfiltered (reltuples), by tag and by title words (planner estimates): no error, and
    an estimate of the right order of magnitude."""
    engine = create_async_engine(normalise_database_url(seeded.url))
    try:
        async with AsyncSession(engine) as session:
            results = {}
            for name, filters in {
                "all": data.Filters(),
                "q": data.Filters(terms=search_query("in")),
            }.items():
                found = await data.list_page(session, filters=filters, page=1, per_page=20)
                results[name] = (found.total, found.estimated)
        # The same unfiltered page through the driver (Reads): its capped count, then the same
        # estimate.
        found = await data.list_page(Reads(engine), filters=data.Filters(), page=1, per_page=20)
        results["all, driver"] = (found.total, found.estimated)
    finally:
        await engine.dispose()
    all_total, all_estimated = results["all"]
    assert all_estimated and 0.5 * SEEDED <= all_total <= 2 * SEEDED
    assert results["all, driver"] == results["all"]
    assert results["q"][1] and results["q"][0] > data.EXACT_COUNT_LIMIT

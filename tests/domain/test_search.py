"""service.domain.search: the words of a search and its rules, without HTTP; and its timeout,
on a seeded database of its own: a search cut by it is ``SearchTooBroad`` and leaves the
transaction usable under its own settings, and no other error is turned into it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from service.core.errors import InvalidInput
from service.core.settings import Settings
from service.domain import articles, search
from service.infra import db_errors
from service.infra.resources import make_engine
from tests.support.databases import ServerStack
from tests.support.seeded import seeded_database

# Enough articles that a broad search's deep page reads thousands of rows: far past 1 ms.
SEEDED = 20_000
BROAD = articles.Filters(
    terms=search.search_query("co")
)  # "costs", "could", "council"...: about a third of titles
GENERAL_TIMEOUT = "15s"  # DB_STATEMENT_TIMEOUT_MS=15000, the engine's connections' own


@pytest.mark.parametrize(
    ("q", "words"),
    [
        ("Flask scal", ["flask", "scal"]),
        ("flask FLASK Flask scal", ["flask", "scal"]),  # each once
        ("covid-19, état/Étang", ["covid", "19", "état", "étang"]),
        ("snake_case", ["snake", "case"]),  # PostgreSQL's parser splits at "_" too
        ("x² ab½", ["x", "ab"]),  # not a digit of a word for PostgreSQL either
        ("İstanbul", ["istanbul"]),  # no combining dot left from lower-casing
        ("日本 word123", ["日本", "word123"]),
        ("!!! ... _", []),
    ],
)
def test_words_are_runs_of_letters_and_digits_in_lower_case(q: str, words: list[str]) -> None:
    assert search.search_words(q) == words


def test_a_search_is_every_word_as_a_prefix() -> None:
    assert search.search_query("Flask scal") == "flask:* & scal:*"
    assert search.search_query("co in co", min_prefix=2, max_terms=2) == "co:* & in:*"


def test_a_search_without_words_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as refused:
        search.search_query("!!! ... __", min_prefix=2, max_terms=4)
    assert refused.value.details == [
        {"loc": ["query", "q"], "message": "no word to search for", "type": "value_error"}
    ]


@pytest.mark.parametrize("q", ["c", "climate c", "a_b", "x²", "ab c"])
def test_a_word_shorter_than_the_minimum_is_refused_by_name(q: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        search.search_query(q, min_prefix=2, max_terms=4)
    assert refused.value.code == "validation_error"
    assert refused.value.details is not None
    (detail,) = refused.value.details
    assert detail["loc"] == ["query", "q"]
    assert detail["type"] == "search_word_too_short"
    assert "at least 2 characters" in refused.value.message


def test_more_words_than_the_maximum_are_refused_repeats_counted_once() -> None:
    assert search.search_query("flask flask flask", min_prefix=2, max_terms=1) == "flask:*"
    with pytest.raises(InvalidInput) as refused:
        search.search_query("one two three", min_prefix=2, max_terms=2)
    assert refused.value.details == [
        {"loc": ["query", "q"], "message": "3 words; at most 2", "type": "search_too_many_words"}
    ]
    assert "at most 2 different words (3 given)" in refused.value.message


def test_both_rules_are_reported_at_once() -> None:
    with pytest.raises(InvalidInput) as refused:
        search.search_query("a b c d e f g h i j", min_prefix=2, max_terms=4)
    assert refused.value.details is not None
    assert [d["type"] for d in refused.value.details] == [
        "search_word_too_short",
        "search_too_many_words",
    ]


@pytest.fixture(scope="module")
def seeded_url(stack: ServerStack) -> str:
    return seeded_database(stack, SEEDED)


@pytest.fixture
async def engine(seeded_url: str) -> AsyncIterator[AsyncEngine]:
    settings = Settings(database_url=seeded_url, db_pool_size=1, db_max_overflow=0)
    made = make_engine(settings.database_url, settings, application_name="test-search")
    yield made
    await made.dispose()


async def _timeout(session: AsyncSession) -> str:
    return str((await session.execute(text("SHOW statement_timeout"))).scalar_one())


async def _deep_page(session: AsyncSession) -> articles.OffsetSlice:
    return await articles.list_page(session, filters=BROAD, page=40, per_page=100)


async def test_a_search_past_its_timeout_is_too_broad_and_the_transaction_goes_on(
    engine: AsyncEngine,
) -> None:
    async with AsyncSession(engine) as session:
        assert await _timeout(session) == GENERAL_TIMEOUT
        with pytest.raises(search.SearchTooBroad) as cut:
            async with search.bounded(session, 1):
                await _deep_page(session)
        assert cut.value.code == "search_too_broad"
        assert cut.value.details is not None
        assert cut.value.details[0]["loc"] == ["query", "q"]
        # The same transaction answers again, under the connection's own timeout...
        assert session.in_transaction() and not session.in_nested_transaction()
        assert await _timeout(session) == GENERAL_TIMEOUT
        # ...and the same search with time enough gives its page.
        async with search.bounded(session, 60_000):
            found = await _deep_page(session)
        assert len(found.articles) == 100 and found.total > 4_000
        assert await _timeout(session) == GENERAL_TIMEOUT


async def _plan_cache_mode(session: AsyncSession) -> str:
    return str((await session.execute(text("SHOW plan_cache_mode"))).scalar_one())


async def test_the_search_settings_apply_inside_the_block_only(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session:
        async with search.bounded(session, 1234):
            assert await _timeout(session) == "1234ms"
            # Planned for its own words each time, never the prepared statement's generic plan.
            assert await _plan_cache_mode(session) == "force_custom_plan"
        assert await _timeout(session) == GENERAL_TIMEOUT
        assert await _plan_cache_mode(session) == "auto"
        await session.commit()  # nothing was left that a commit would keep


async def test_another_error_inside_the_block_is_not_a_search_error(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session:
        with pytest.raises(DBAPIError) as failed:
            async with search.bounded(session, 60_000):
                await session.execute(text("SELECT 1 / 0"))
        assert not db_errors.query_canceled(failed.value)
        assert (await session.execute(text("SELECT 2"))).scalar_one() == 2


async def test_the_general_statement_timeout_is_not_turned_into_a_search_error(
    seeded_url: str,
) -> None:
    """Outside a search, a statement cut by DB_STATEMENT_TIMEOUT_MS raises the driver's error
    as before (the API answers it like any unexpected error)."""
    settings = Settings(
        database_url=seeded_url, db_pool_size=1, db_max_overflow=0, db_statement_timeout_ms=50
    )
    engine = make_engine(settings.database_url, settings, application_name="test-search")
    try:
        async with AsyncSession(engine) as session:
            with pytest.raises(DBAPIError) as cut:
                await session.execute(text("SELECT pg_sleep(1)"))
            assert db_errors.query_canceled(cut.value)
            assert not isinstance(cut.value, InvalidInput)
    finally:
        await engine.dispose()

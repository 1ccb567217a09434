"""service.domain.processing and text_analysis: summaries and keywords, written only for the
version they were made from."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.core.settings import normalise_database_url
from service.domain import processing, text_analysis
from service.domain.text_analysis import analyse
from service.infra import db_errors
from tests.support.api import account, publish
from tests.support.databases import ServerStack, migrate, plain_url

STORY = (
    "The city council approved a new budget for cycle lanes on Tuesday. "
    "Cycle lanes will be built along the river over the next two years. "
    "Critics said the budget ignores bus services in the northern districts. "
    "The mayor promised a separate review of bus services next spring. "
    "Construction of the first cycle lanes starts in March."
)


@pytest.fixture
async def engine(stack: ServerStack) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(normalise_database_url(stack.database_url))
    yield engine
    await engine.dispose()


def test_the_summary_is_sentences_of_the_article_and_keywords_are_its_words() -> None:
    result = text_analysis.analyse("Council backs cycle lanes", STORY)
    picked = text_analysis.sentences(result.summary)
    assert len(picked) == text_analysis.SUMMARY_SENTENCES
    story = text_analysis.sentences(STORY)
    assert all(sentence in story for sentence in picked)
    assert [story.index(s) for s in picked] == sorted(story.index(s) for s in picked)
    assert 1 <= len(result.keywords) <= text_analysis.KEYWORDS
    assert any("cycle" in keyword for keyword in result.keywords)
    assert all(keyword == keyword.lower() for keyword in result.keywords)


def test_a_short_article_is_its_own_summary() -> None:
    result = text_analysis.analyse("Short", "Only one sentence here.")
    assert result.summary == "Only one sentence here."


def test_retry_delays_grow_and_are_capped() -> None:
    assert [processing.retry_delay(n) for n in (1, 2, 3, 10)] == [2, 4, 8, 60]


async def test_a_job_for_an_old_version_writes_nothing(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    pg: asyncpg.Connection,
) -> None:
    ann = await account(client)
    article = await publish(client, ann, content=STORY)
    url = f"/api/v1/articles/{article['id']}"
    final = "Final text about harbour ferries. Ferries will run every ten minutes."
    edited = await client.patch(url, json={"content": final}, headers=ann.api_key)
    assert edited.status_code == 200
    old = await processing.process(
        engine, article["id"], 1, attempt=1, max_tries=3, analyser=analyse
    )
    assert old == "skipped"
    status = await pg.fetchval("SELECT status FROM articles WHERE id = $1", article["id"])
    assert status == "pending"
    new = await processing.process(
        engine, article["id"], 2, attempt=1, max_tries=3, analyser=analyse
    )
    assert new == "processed"
    row = await pg.fetchrow("SELECT summary, status FROM articles WHERE id = $1", article["id"])
    assert row["status"] == "processed" and row["summary"] == final
    # Run twice (arq delivers at least once): nothing changes.
    assert (
        await processing.process(engine, article["id"], 2, attempt=1, max_tries=3, analyser=analyse)
        == "skipped"
    )
    shown = (await client.get(url)).json()
    assert shown["summary"] == final and shown["status"] == "processed"


async def test_failures_retry_then_end_as_failed_with_a_reason_kept_from_the_public(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    pg: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ann = await account(client)
    article = await publish(client, ann, content=STORY)

    def broken(title: str, content: str) -> text_analysis.Analysis:
        raise ValueError("analyser exploded")

    for attempt in (1, 2):
        with pytest.raises(processing.RetryLater) as retry:
            await processing.process(
                engine, article["id"], 1, attempt=attempt, max_tries=3, analyser=broken
            )
        assert retry.value.delay == processing.retry_delay(attempt)
        status = await pg.fetchval("SELECT status FROM articles WHERE id = $1", article["id"])
        assert status == "pending"
    with caplog.at_level(logging.ERROR, logger="service.domain.processing"):
        outcome = await processing.process(
            engine, article["id"], 1, attempt=3, max_tries=3, analyser=broken
        )
    assert outcome == "failed"
    assert "ValueError: analyser exploded" in caplog.text  # the worker's log has the reason
    row = await pg.fetchrow(
        "SELECT status, processing_error FROM articles WHERE id = $1", article["id"]
    )
    assert row["status"] == "failed"
    assert row["processing_error"] == "ValueError: analyser exploded"  # for the operators
    # The public article says only that processing failed: no exception text, anywhere.
    shown = await client.get(f"/api/v1/articles/{article['id']}")
    listed = await client.get("/api/v1/articles", params={"author_id": ann.id})
    assert shown.json()["status"] == "failed"
    assert shown.json()["processing_error"] == "processing failed"
    (summary,) = listed.json()["articles"]
    assert (summary["status"], summary["processing_error"]) == ("failed", "processing failed")
    for response in (shown, listed):
        assert "ValueError" not in response.text and "exploded" not in response.text


@pytest.fixture
def behind(stack: ServerStack) -> str:
    """A database lacking one column the code writes on success (``keywords``), as one behind
    a release's migration would, with a pending article (id 1, version 1)."""
    url = stack.new_database("newsdesk_processing_behind")
    migrate(url)

    async def prepare() -> None:
        conn = await asyncpg.connect(plain_url(url))
        try:
            await conn.execute("ALTER TABLE articles DROP COLUMN keywords")
            author = await conn.fetchval(
                "INSERT INTO users (email, name, password_hash) "
                "VALUES ('behind@example.org', 'Ann', 'x') RETURNING id"
            )
            await conn.execute(
                "INSERT INTO articles (id, author_id, title, content, status) "
                "VALUES (1, $1, 'Behind', $2, 'pending')",
                author,
                STORY,
            )
        finally:
            await conn.close()

    asyncio.run(prepare())
    return url


async def test_a_database_behind_the_code_leaves_the_article_pending(
    behind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every try fails on the missing column; the last one does not mark the article failed
    (that is the database's fault, not the article's): it stays pending for the sweeper."""
    engine = create_async_engine(normalise_database_url(behind))
    try:
        with pytest.raises(processing.RetryLater):
            await processing.process(engine, 1, 1, attempt=1, max_tries=2, analyser=analyse)
        with (
            caplog.at_level(logging.ERROR, logger="service.domain.processing"),
            pytest.raises(DBAPIError) as failed,
        ):
            await processing.process(engine, 1, 1, attempt=2, max_tries=2, analyser=analyse)
        assert db_errors.schema_missing(failed.value)
        assert "failed after 2 tries, left pending" in caplog.text
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(plain_url(behind))
    try:
        row = await conn.fetchrow("SELECT status, processing_error FROM articles WHERE id = 1")
    finally:
        await conn.close()
    assert (row["status"], row["processing_error"]) == ("pending", None)

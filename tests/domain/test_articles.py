"""service.domain.articles without HTTP: input it refuses raises domain errors, not statuses;
pages know whether anything follows them; If-Match conditions compare whole tags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.core.errors import InvalidInput
from service.core.types import ArticleStatus
from service.domain import articles, search
from service.domain.schemas import ArticleSummary, Author


def test_a_cursor_round_trips() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert articles.decode_cursor(articles.encode_cursor(at, 17)) == (at, 17)


# The last: a cursor naming a naive time (no time zone), as no cursor of ours does.
NAIVE = articles.encode_cursor(datetime(2026, 1, 2, 3, 4, 5), 1)


@pytest.mark.parametrize("cursor", ["garbage", "e30", NAIVE])
def test_a_foreign_cursor_is_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        articles.decode_cursor(cursor)
    assert refused.value.code == "invalid_cursor"
    assert refused.value.details and refused.value.details[0]["loc"] == ["query", "cursor"]


def test_a_search_without_words_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        search.search_query("!!! ...")
    assert search.search_query("Flask scal") == "flask:* & scal:*"


def _summaries(count: int) -> list[ArticleSummary]:
    """``count`` list entries, newest first."""
    at = datetime(2026, 1, 2, tzinfo=UTC)
    return [
        ArticleSummary(
            id=count - i,
            title=f"Entry {i}",
            summary=None,
            keywords=[],
            tags=[],
            status=ArticleStatus.PENDING,
            views=0,
            author=Author(id=1, name="Ann"),
            published_at=at - timedelta(minutes=i),
            updated_at=at,
            version=1,
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("fetched", [0, 1, 2, 3])
def test_a_page_with_nothing_after_it_has_no_next_cursor(fetched: int) -> None:
    page = articles.slice_of(_summaries(fetched), per_page=3)
    assert len(page.articles) == fetched
    assert page.next_cursor is None


def test_a_page_with_a_row_after_it_points_after_its_last_article() -> None:
    rows = _summaries(4)  # per_page + 1 were fetched: one follows
    page = articles.slice_of(rows, per_page=3)
    assert page.articles == rows[:3]
    assert page.next_cursor is not None
    assert articles.decode_cursor(page.next_cursor) == (rows[2].published_at, rows[2].id)


def test_the_entity_tag_names_version_and_status_not_views() -> None:
    (entry,) = _summaries(1)
    tag = articles.entity_tag(entry.model_copy(update={"version": 5}))
    assert tag == "5-pending"
    assert articles.entity_tag(entry.model_copy(update={"version": 5, "views": 999})) == tag


def test_if_match_compares_the_whole_tag_strongly() -> None:
    current = "5-pending"
    assert articles.IfMatch(tags=frozenset({current})).holds(current)
    assert articles.IfMatch(tags=frozenset({"4-pending", current})).holds(current)
    # Same version, another status, or a tag of another form: stale.
    assert not articles.IfMatch(tags=frozenset({"5-0-pending"})).holds(current)
    assert not articles.IfMatch(tags=frozenset({"5-processed"})).holds(current)
    assert not articles.IfMatch(tags=frozenset({"5"})).holds(current)
    assert not articles.IfMatch().holds(current)  # only weak tags, or none: never a match
    assert articles.IfMatch(any_tag=True).holds(current)

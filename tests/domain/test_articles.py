"""service.domain.articles without HTTP: input it refuses raises domain errors, not statuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.core.errors import InvalidInput
from service.domain import articles


def test_a_cursor_round_trips() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert articles.decode_cursor(articles.encode_cursor(at, 17)) == (at, 17)


@pytest.mark.parametrize("cursor", ["garbage", "e30", articles.encode_cursor(datetime.now(), 1)])
def test_a_foreign_cursor_is_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        articles.decode_cursor(cursor)
    assert refused.value.code == "invalid_cursor"
    assert refused.value.details and refused.value.details[0]["loc"] == ["query", "cursor"]


def test_a_search_without_words_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        articles.search_query("!!! ...")
    assert articles.search_query("Flask scal") == "flask:* & scal:*"

"""service.web.http_cache: ``If-Match`` field values parsed as RFC 9110 says."""

from __future__ import annotations

import pytest

from service.domain.articles import IfMatch
from service.web.http_cache import parse_if_match


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"5-1-pending"', IfMatch(tags=frozenset({"5-1-pending"}))),
        (' "a" , "b",W/"c"', IfMatch(tags=frozenset({"a", "b"}))),
        ("*", IfMatch(any_tag=True)),
        (" * ", IfMatch(any_tag=True)),
        ('W/"5-1-pending"', IfMatch()),  # weak tags never match If-Match
        ("5-1-pending", IfMatch()),  # not an entity tag
        ('"unterminated', IfMatch()),
        ("", IfMatch()),
    ],
)
def test_if_match_keeps_only_strong_entity_tags(value: str, expected: IfMatch) -> None:
    assert parse_if_match(value) == expected

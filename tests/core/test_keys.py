"""service.core.keys: key templates and the stored cache-entry format, in one place."""

from __future__ import annotations

from service.core import keys


def test_a_stored_entry_unpacks_to_its_etag_and_body() -> None:
    body = b'{"text": "two\\nlines"}\nand a raw newline'
    stored = keys.pack_entry('W/"abc"', body)
    assert keys.unpack_entry(stored) == (b'W/"abc"', body)


def test_an_article_entry_is_versioned_by_its_own_generation() -> None:
    generations, template = keys.article_entry(42)
    assert generations == [keys.article_generation(42)] == ["gen:article:42"]
    assert "{e}" in template and "{g1}" in template and ":42:" in template


def test_lists_and_the_ranking_share_the_lists_generation() -> None:
    assert keys.list_entry("d")[0] == [keys.ARTICLES_GENERATION]
    # The ranking also moves with every view flush (its own generation), lists do not.
    assert keys.POPULAR_ENTRY[0] == [keys.ARTICLES_GENERATION, keys.POPULAR_GENERATION]
    assert "{g1}" in keys.POPULAR_ENTRY[1] and "{g2}" in keys.POPULAR_ENTRY[1]
    assert keys.list_entry("d")[1] != keys.list_entry("e")[1]

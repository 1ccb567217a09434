"""service.infra.cached_answer: one answer for a stored entry, whichever path sends it."""

from __future__ import annotations

from service.core import keys
from service.infra.cached_answer import cached_answer

STORED = keys.pack_entry('W/"abc"', b'{"id":1}')


def test_a_hit_is_the_body_with_its_etag_cache_outcome_and_max_age() -> None:
    answer = cached_answer(STORED, outcome="HIT", if_none_match=None, max_age=30)
    assert answer.status == 200
    assert answer.body == b'{"id":1}'
    assert answer.headers == [
        ("ETag", 'W/"abc"'),
        ("X-Cache", "HIT"),
        ("Cache-Control", "public, max-age=30"),
    ]


def test_a_current_if_none_match_is_a_304_without_a_body_weakly_compared() -> None:
    for condition in ('"abc"', 'W/"abc"', '"x", W/"abc"', "*"):
        answer = cached_answer(STORED, outcome="MISS", if_none_match=condition, max_age=30)
        assert (answer.status, answer.body) == (304, b""), condition
        assert ("X-Cache", "MISS") in answer.headers


def test_another_etag_is_the_full_answer() -> None:
    answer = cached_answer(STORED, outcome="HIT", if_none_match='"other"', max_age=30)
    assert answer.status == 200 and answer.body == b'{"id":1}'

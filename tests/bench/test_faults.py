"""bench.faults: the accounting behind the fault table, on small hand-made records (the
suite itself is ``make faults``, not part of ``make test``)."""

from __future__ import annotations

from bench.faults import report
from bench.faults.load import (
    LIST,
    READ,
    WRITE,
    Record,
    database_backed,
    in_flight,
    lost_writes,
    recovery_seconds,
    redis_backed,
    tally,
    unanswered,
    view_difference,
    views_answered,
    written,
)


def _records() -> list[Record]:
    return [
        Record(READ, 0.0, 0.1, 200, cache="HIT", article=1),
        Record(READ, 0.2, 0.3, 200, cache="MISS", article=1),
        Record(READ, 1.0, 1.2, 503, retry_after=True, article=2),
        Record(WRITE, 1.0, 1.5, 503, retry_after=False),
        Record(LIST, 1.1, 1.3, 500),
        Record(READ, 1.4, 1.6, None, error="ReadError", article=2),
        Record(WRITE, 2.0, 2.4, 201, article=10),
        Record(READ, 2.1, 2.2, 200, cache="BYPASS", article=2),
        Record(WRITE, 2.5, 3.0, 201, article=11),
    ]


def test_answers_are_counted_by_status() -> None:
    counts = tally(_records())
    assert counts.requests == 9
    assert counts.answered == 8
    assert counts.statuses == {200: 3, 201: 2, 503: 2, 500: 1}
    assert counts.errors == {"ReadError": 1}
    assert (counts.server_errors, counts.unavailable_with_retry_after) == (3, 1)
    assert counts.internal_errors == 1
    assert counts.statuses_text() == "200: 3, 201: 2, 500: 1, 503: 2, ReadError: 1"


def test_recovery_is_the_first_answer_that_needed_the_server_after_it_was_back() -> None:
    records = _records()
    assert database_backed(records[1]) and not database_backed(records[0])
    assert database_backed(records[6]) and not database_backed(records[3])
    assert redis_backed(records[0]) and not redis_backed(records[7])
    # Down at 1.0, back at 2.0: the BYPASS read answered at 2.2 is the first from PostgreSQL.
    recovery = recovery_seconds(records, 1.0, 2.0, database_backed)
    assert recovery is not None and abs(recovery - 0.2) < 1e-9
    # Nothing went through the cache after 2.0.
    assert recovery_seconds(records, 1.0, 2.0, redis_backed) is None


def test_requests_sent_before_a_moment_without_an_answer() -> None:
    records = _records()
    assert unanswered(records, 1.5) == 1
    assert unanswered(records, 1.0) == 0
    assert in_flight(records, 1.25) == 2  # the write sent at 1.0 and the list sent at 1.1


def test_views_and_writes_are_compared_with_what_postgresql_holds() -> None:
    records = _records()
    answered = views_answered(records)
    assert answered == {1: 2, 2: 1}
    assert view_difference(answered, {1: 2, 2: 1}) == (0, 0)
    assert view_difference(answered, {1: 1, 2: 2}) == (1, 1)  # per article, not in total
    assert view_difference(answered, {3: 4}) == (3, 4)
    assert written(records) == [10, 11]
    assert lost_writes(written(records), [10, 11, 12]) == 0
    assert lost_writes(written(records), [11]) == 1


def test_the_table_has_one_row_per_fault_and_names_failed_checks() -> None:
    good = report.Row("PostgreSQL stopped", 1234, 5, 5, 0, None, 1.26, ["a | b"])
    bad = report.Row("SIGTERM", 10)
    bad.check(True, "never shown")
    bad.check(False, "2 unanswered")
    lines = report.table([good, bad]).splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("| fault | requests | 5xx | 503 with Retry-After |")
    assert lines[2] == "| PostgreSQL stopped | 1,234 | 5 | 5 | 0 | n/a | 1.3 | a / b |"
    assert "**FAILED: 2 unanswered**" in lines[3]
    text = report.document([good, bad], started="today", seconds=3, setup="Setup.")
    assert "`make faults`" in text and "SIGTERM: 2 unanswered" in text

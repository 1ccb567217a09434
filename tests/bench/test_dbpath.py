"""bench.lab.dbpath: the statements counted from PostgreSQL's log, and the verdict (the claim
itself runs a server: ``python -m bench.lab --only dbpath``)."""

from __future__ import annotations

from typing import Any

from bench.lab import dbpath

LOG = """\
14:30:01.001 UTC [101] LOG:  statement: BEGIN ISOLATION LEVEL READ COMMITTED;
14:30:01.002 UTC [101] LOG:  execute __asyncpg_stmt_1__: SELECT id, name FROM items WHERE id = $1
14:30:01.002 UTC [101] DETAIL:  parameters: $1 = '7'
14:30:01.003 UTC [101] LOG:  statement: ROLLBACK;
14:30:01.004 UTC [102] LOG:  execute <unnamed>: SELECT id, name FROM items WHERE id = $1
14:30:01.005 UTC [999] LOG:  statement: SELECT pid FROM pg_stat_activity
14:30:01.006 UTC [101] LOG:  checkpoint starting: time
"""


def test_statements_are_counted_for_the_servers_backends_only() -> None:
    assert dbpath.statements_by_pid(LOG, {101}) == 3
    assert dbpath.statements_by_pid(LOG, {101, 102}) == 4
    assert dbpath.statements_by_pid(LOG, {999}) == 1
    assert dbpath.statements_by_pid(LOG, set()) == 0


def _rows(*rates: float) -> list[dict[str, Any]]:
    statements = (3.0, 3.0, 1.0, 1.0, 1.0)
    return [
        {"path": name, "statements": count, "rps": {"median": rate}}
        for name, count, rate in zip(dbpath.PROBES, statements, rates, strict=True)
    ]


def test_the_verdict_says_what_the_figures_say() -> None:
    hello = {"path": "no database (hello)", "statements": 0.0, "rps": {"median": 3000.0}}
    faster = dbpath.verdict(_rows(1000.0, 1100.0, 1400.0, 1800.0, 2000.0), hello)
    assert faster.startswith("False: the same primary-key read served 1.80x the requests")
    assert "(1 statement per read, compiled once, run by the driver)" in faster
    assert "as through an ORM session (3 per read" in faster
    assert "0.90x the bare driver's" in faster
    assert "Core in autocommit gave 1.40x" in faster
    assert "in a transaction 1.10x" in faster
    assert "the difference is the round trips and the work around the statement" in faster
    assert "answered 3.00x as many requests with no database at all" in faster
    level = dbpath.verdict(_rows(1000.0, 1000.0, 1020.0, 1050.0, 1080.0), hello)
    assert level.startswith("True on this machine: the same primary-key read served 1.05x")
    assert "small beside the rest of the request" in level

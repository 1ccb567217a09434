"""bench.lab: the pieces its claims read figures with, on hand-made input (the lab itself is
``make bench``, not part of ``make test``)."""

from __future__ import annotations

from pathlib import Path

from bench.lab import profile, queues
from bench.lab.__main__ import CLAIMS
from bench.lab.core import parse_wrk

WRK = """Running 1s test @ http://127.0.0.1:8000/
  1 threads and 32 connections
  Latency Distribution
     50%  850.00us
     75%    1.20ms
     90%    2.00ms
     99%    1.50s
  4242 requests in 1.00s, 1.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:   4242.42
"""


def test_parse_wrk_reads_rate_latencies_and_every_error() -> None:
    assert parse_wrk(WRK) == (4242.42, 0.85, 1500.0, 6, 4242)


def test_every_claim_has_the_claim_shape() -> None:
    for module in CLAIMS.values():
        assert module.TITLE and module.CLAIM
        assert callable(module.plan) and callable(module.run) and callable(module.section)


def test_profile_charges_a_sample_to_its_innermost_layer(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks.txt"
    stacks.write_text(
        "run (asyncio/events.py:80);execute (sqlalchemy/engine.py:1);fetch (asyncpg/c.py:2) 3\n"
        "run (asyncio/events.py:80);dispatch (flask/app.py:9) 2\n"
        "run (asyncio/events.py:80);handle (h11/_connection.py:5);elsewhere (x.py:1) 1\n"
    )
    assert profile.shares([stacks]) == {
        "asyncpg driver": 3,
        "Flask dispatch + hooks": 2,
        "h11 / Hypercorn": 1,
    }


def test_profile_layer_table_gives_each_column_its_own_shares() -> None:
    table = profile.layer_table(
        {
            "ORM": {"SQLAlchemy session/engine": 3, "asyncpg driver": 1},
            "reads": {"asyncpg driver": 4},
        }
    )
    assert table == [
        "| layer | ORM | reads |",
        "| --- | ---: | ---: |",
        "| asyncpg driver | 1 (25.0%) | 4 (100.0%) |",
        "| SQLAlchemy session/engine | 3 (75.0%) | 0 (0.0%) |",
    ]


def test_queues_counts_article_reads_answered_200(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(
        '127.0.0.1 - - [x] "GET /api/v1/articles/7 1.1" 200 512\n'
        '127.0.0.1 - - [x] "GET /api/v1/articles/8 1.1" 404 80\n'
        '127.0.0.1 - - [x] "GET /api/v1/articles?per_page=20 1.1" 200 900\n'
    )
    assert queues.answered_views(log) == 1
    assert queues.answered_views(tmp_path / "none.log") == 0

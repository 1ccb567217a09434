"""bench.lab.mixed: the capacity figure (the highest rate of a run within the p99 limit) and
the verdict (the claim itself runs servers: ``python -m bench.lab --only mixed``)."""

from __future__ import annotations

from typing import Any

from bench.lab import mixed, scaling


def _run(connections: int, rps: float, p99: float) -> dict[str, float]:
    return {"connections": connections, "rps": rps, "p99_ms": p99}


def test_capacity_is_the_best_rate_within_the_limit() -> None:
    runs = [_run(1, 100, 5), _run(4, 380, 20), _run(16, 900, 49.9), _run(64, 1000, 180)]
    assert mixed.capacity(runs) == {"rps": 900, "p99_ms": 49.9, "connections": 16}
    # A faster run past the limit does not count; a slower one within it does not win.
    assert mixed.capacity([_run(2, 500, 10), _run(8, 400, 30)])["connections"] == 2
    assert mixed.capacity([_run(1, 100, 51)]) == {"rps": None, "p99_ms": None, "connections": None}


def test_the_mix_adds_up_and_its_script_takes_it() -> None:
    assert dict(scaling.thresholds(mixed.MIX)) == {
        "read": 800,
        "list": 925,
        "tag": 950,
        "write": 990,
        "login": 1000,
    }
    script = scaling.mix_lua(1, 100, "nd_key", authors=mixed.AUTHORS, mix=mixed.MIX)
    assert "if r <= 800 then" in script and "elseif r <= 990 then" in script


def _row(
    mix: str, server: str, workers: int, rps: float | None, p99: float | None = None
) -> dict[str, Any]:
    first = _run(1, 100, p99 if p99 is not None else 120)
    return {"mix": mix, "server": server, "workers": workers, "rps": rps, "p99_ms": p99,
            "connections": 8, "runs": [first]}  # fmt: skip


def test_the_verdict_names_the_best_setup_and_each_one() -> None:
    rows = [
        _row("news mix", "hypercorn", 1, 400.0, 40.0),
        _row("news mix", "granian", 2, 900.0, 45.0),
        _row("without logins", "hypercorn", 1, 500.0, 30.0),
        _row("without logins", "granian", 2, 1200.0, 48.0),
    ]
    text = mixed.verdict(rows)
    assert text.startswith("False: one instance carried the news mix at 900 req/s")
    assert "(granian, 2 workers)" in text
    assert "hypercorn, 1 worker: 400 req/s (p99 40 ms at 8 connections)" in text
    assert (
        "without logins one instance carried 1,200 req/s at p99 48 ms (granian, 2 workers" in text
    )


def test_the_verdict_says_when_the_logins_alone_exceed_the_limit() -> None:
    rows = [
        _row("news mix", "hypercorn", 1, None, 112.0),
        _row("news mix", "granian", 1, None, 119.0),
        _row("without logins", "hypercorn", 1, 610.0, 44.0),
        _row("without logins", "granian", 1, None, 60.0),
    ]
    text = mixed.verdict(rows)
    assert text.startswith("Not with logins in the mix: no setup kept the news mix's p99")
    assert "(p99 112 ms at best)" in text
    assert "without logins one instance carried 610 req/s at p99 44 ms (hypercorn, 1 worker" in text
    assert "granian, 1 worker: no run within 50 ms" in text


def test_the_verdict_and_table_say_where_the_best_setups_time_went() -> None:
    rows = [
        _row("news mix", "granian", 2, None, 115.0),
        _row("without logins", "hypercorn", 1, 800.0, 20.0),
        _row("without logins", "granian", 2, 1300.0, 21.0),
    ]
    cores = {"instance": 1.1, "PostgreSQL": 0.35, "Redis": 0.12, "wrk": 0.2, "idle": 0.15}
    spent = {
        "granian, 2 workers": {"connections": 4, "rps": 1310.0, "p99_ms": 22.0, "cores": cores},
        "hypercorn, 1 worker": {
            "connections": 2,
            "rps": 790.0,
            "p99_ms": 11.0,
            "cores": {**cores, "instance": 0.9},
        },
    }
    text = mixed.verdict(rows, spent)
    assert text.endswith(
        "; there the instance used 1.10 cores, PostgreSQL 0.35, Redis 0.12 and wrk 0.20, 0.15 idle."
    )
    assert mixed.verdict(rows).endswith("load generator.")  # nothing measured: nothing said
    table = mixed.time_table(spent)
    assert table[0].startswith("| setup (without logins) | connections | req/s (p99 ms) |")
    assert "| granian, 2 workers | 4 | 1,310 (22) | 1.10 | 0.35 | 0.12 | 0.20 | 0.15 |" in table
    assert "| hypercorn, 1 worker | 2 | 790 (11) | 0.90 |" in table[3]

"""Claim: the database path matters: how a read reaches PostgreSQL costs more than the read.

One Newsdesk server (``bench.newsdesk_app``, one Hypercorn worker, the default pool) serves
the same primary-key read five ways, 64 connections on random ids, 5 rounds of 5 s (the quick
pass: the lab's rounds of 2 s), the paths taking turns round after round, and a hello with no
database for scale. The ORM session is the request's ``AsyncSession`` (``/bench/items/<id>``:
BEGIN, the SELECT and ROLLBACK, the ORM's unit of work around them); Core in a transaction is
a Core connection of the pool (``/bench/core-tx/<id>``: the same three statements, no ORM);
Core in autocommit is ``Reads.execute`` (``/bench/core-auto/<id>``): the SELECT alone, with
SQLAlchemy's statement and result work; Newsdesk's reads are ``Reads.row``
(``/bench/reads/<id>``, ``service.infra.driver_reads``): a query compiled once, run by asyncpg
on a connection of SQLAlchemy's pool, errors mapped as SQLAlchemy maps them; the driver is
asyncpg's ``fetchrow`` on the pool's own driver connection checked out through a Core
connection (``/bench/driver/<id>``: the floor of the pool plus the driver).

Statements per read are counted by PostgreSQL itself: a second server of the same app is
started with ``log_statement = all`` set for the lab's database, each path gets 200 reads one
after another (after a few that prepare its statement), and the lines PostgreSQL logs for
that server's connections (by backend pid) are counted per path. Every statement is a round
trip here (asyncpg sends bind and execute of a prepared statement in one).

With py-spy installed, the worker is sampled during one more run of each path and the samples
are charged to layers (``bench.lab.profile.LAYERS``): where a read's time goes, path by path.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx

from bench.lab import chart, profile, serving
from bench.lab.core import (
    Lab,
    hypercorn,
    load,
    random_ids_script,
    running,
    spread,
    sql,
    summarise,
    table,
    warmups,
)
from bench.probes import ROWS

TITLE = "The database path: one primary-key read five ways"
CLAIM = "The database is the bottleneck; the code between the view and the driver does not matter."
CONNECTIONS = 64
HELLO = "/bench/hello"  # no database: the same server's ceiling, for scale
PROBES = {
    "ORM session": "/bench/items/",
    "Core, in a transaction": "/bench/core-tx/",
    "Core, autocommit": "/bench/core-auto/",
    "Newsdesk's reads (compiled, on the driver)": "/bench/reads/",
    "driver (asyncpg fetchrow)": "/bench/driver/",
}
COUNTED = 200  # reads per probe while PostgreSQL logs statements
PREPARE = 5  # reads per probe before counting: the connection made, the statement prepared
_LOGGED = re.compile(r"\[(\d+)\] LOG:  (?:statement|execute [^:]*):")


def rounds(lab: Lab) -> int:
    """More rounds than the lab's default: the paths differ by less than the machine's noise
    in a round or two."""
    return lab.mode.rounds if lab.mode.quick else max(lab.mode.rounds, 5)


def duration(lab: Lab) -> int:
    return 2 if lab.mode.quick else 5


def plan(lab: Lab) -> int:
    spied = len(PROBES) if profile.py_spy() else 0
    return (len(PROBES) + 1) * (rounds(lab) + warmups(lab)) + spied


def statements_by_pid(log: str, pids: set[int]) -> int:
    """How many statements PostgreSQL logged (``log_statement = all``) for the backends
    ``pids``, in a server log whose line prefix carries ``[pid]``."""
    return sum(1 for match in _LOGGED.finditer(log) if int(match[1]) in pids)


def _count(lab: Lab, env: dict[str, str]) -> dict[str, float]:
    """Statements PostgreSQL received per read, for each probe (see the module docstring)."""
    database = lab.database_url.rsplit("/", 1)[1]
    log_path = lab.postgres.data_dir / "server.log"
    sql(lab, f"ALTER DATABASE {database} SET log_statement = 'all'")
    try:
        server = hypercorn(
            lab, "bench.newsdesk_app:app", env, "dbpath-count", ready_path="/bench/hello"
        )
        counts: dict[str, float] = {}
        with running(server), httpx.Client(base_url=server.url, timeout=30) as http:
            for name, path in PROBES.items():
                for n in range(PREPARE):
                    http.get(f"{path}{n + 1}").raise_for_status()
                time.sleep(0.3)  # what was logged so far is in the file
                start = log_path.stat().st_size
                for n in range(COUNTED):
                    http.get(f"{path}{n % ROWS + 1}").raise_for_status()
                time.sleep(0.3)
                with open(log_path, "rb") as log:
                    log.seek(start)
                    logged = log.read().decode(errors="replace")
                pids = {
                    int(row[0])
                    for row in sql(
                        lab,
                        "SELECT pid FROM pg_stat_activity WHERE application_name = 'newsdesk-api'",
                    )
                }
                counts[name] = statements_by_pid(logged, pids) / COUNTED
    finally:
        sql(lab, f"ALTER DATABASE {database} RESET log_statement")
    return counts


def run(lab: Lab) -> dict[str, Any]:
    serving.prepare_probes(lab)
    env = lab.env()
    statements = _count(lab, env)
    scripts = {
        name: random_ids_script(lab, path, 1, ROWS, f"dbpath-{n}")
        for n, (name, path) in enumerate(PROBES.items())
    }
    server = hypercorn(lab, "bench.newsdesk_app:app", env, "dbpath", ready_path="/bench/hello")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in [*PROBES, "hello"]}

    def one_run(name: str) -> dict[str, float]:
        seconds = duration(lab)
        if name == "hello":
            return load(lab, server.url + HELLO, CONNECTIONS, pids=[server.pid], duration=seconds)
        return load(
            lab,
            server.url + "/",
            CONNECTIONS,
            script=scripts[name],
            pids=[server.pid],
            duration=seconds,
        )

    with running(server):
        for name in runs:
            lab.status(f"dbpath: {name}, warm-up")
            if warmups(lab):
                one_run(name)
        for round_no in range(rounds(lab)):
            order = list(runs) if round_no % 2 == 0 else list(runs)[::-1]
            for name in order:
                lab.status(f"dbpath: {name}, round {round_no + 1}")
                runs[name].append(one_run(name))
        layers = {}
        if profile.py_spy():
            for name, path in PROBES.items():
                lab.status(f"dbpath: {name}, py-spy")
                layers[name] = profile.spied(
                    lab,
                    server,
                    server.url + "/",
                    scripts[name],
                    f"dbpath-{path.strip('/').replace('/', '-')}",
                    connections=CONNECTIONS,
                    seconds=duration(lab),
                )
    rows = [
        {"path": name, "statements": statements[name], **summarise(runs[name])} for name in PROBES
    ]
    hello = {"path": "no database (hello)", "statements": 0.0, **summarise(runs["hello"])}
    return {
        "rows": rows,
        "hello": hello,
        "connections": CONNECTIONS,
        "counted": COUNTED,
        "layers": layers,
    }


def verdict(rows: list[dict[str, Any]], hello: dict[str, Any]) -> str:
    """From the rows (in ``PROBES`` order) and the hello row: the ORM session's rate against
    Newsdesk's reads and the driver's, with the statements each sends."""
    by = {r["path"]: r for r in rows}
    orm, core, auto, own, driver = (by[name] for name in PROBES)

    def rate(row: dict[str, Any]) -> float:
        return float(row["rps"]["median"])

    gain = rate(own) / rate(orm)
    head = "False" if gain >= 1.1 else "True on this machine"
    return (
        f"{head}: the same primary-key read served {gain:.2f}x the requests through "
        f"Newsdesk's reads ({own['statements']:.0f} statement per read, compiled once, run by "
        f"the driver) as through an ORM session ({orm['statements']:.0f} per read: BEGIN, "
        f"SELECT, ROLLBACK); {rate(own) / rate(driver):.2f}x the bare driver's; Core in "
        f"autocommit gave {rate(auto) / rate(orm):.2f}x and a Core connection in a "
        f"transaction {rate(core) / rate(orm):.2f}x. "
        + (
            "Every path runs the same query: the difference is the round trips and the work "
            "around the statement"
            if gain >= 1.1
            else "Here the path's cost is small beside the rest of the request"
        )
        + f"; the request around the read weighs more still: the same server answered "
        f"{rate(hello) / rate(orm):.2f}x as many requests with no database at all."
    )


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    rows = data["rows"]
    chart.bars(chart_path, groups={"pk-read": {r["path"]: spread(r) for r in rows}}, ylabel="req/s")
    lines = table([*rows, data["hello"]], "path", "path")
    lines += [
        "",
        "| path | statements per read (PostgreSQL's log) |",
        "| --- | --- |",
        *(f"| {r['path']} | {r['statements']:.2f} |" for r in rows),
        "",
        f"Statements counted over {data['counted']} reads per path, one after another, on a "
        "server of their own with `log_statement = all`; the load runs had it off. The hello "
        "row is the same server with no database call, for scale: the ceiling of the "
        "request path around the read.",
    ]
    if data.get("layers"):
        lines += ["", "Where the worker's time goes on each path (py-spy samples, share):", ""]
        lines += profile.layer_table(data["layers"])
    return lines, verdict(rows, data["hello"])

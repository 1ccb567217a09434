"""Claim: send reads to a read replica to scale the database.

A real streaming replica of the lab's PostgreSQL, made with ``pg_basebackup -R`` on loopback
and started beside it. Newsdesk's request read session (``context.read_db_session()``, routed by
``DATABASE_READ_URL``) serves a primary-key read (random ids, 64 connections) from two
servers side by side: reads split to the replica, and every read on the primary. Then the lag
a reader sees: a row is updated on the primary and read on the replica at once, then again
until the new value shows.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.lab import chart, serving
from bench.lab.core import (
    Lab,
    hypercorn,
    load,
    random_ids_script,
    running,
    spread,
    summarise,
    table,
    warm_up,
    warmups,
)
from bench.probes import ROWS
from service.cli.embedded import EmbeddedPostgres

TITLE = "Read replica: reads split vs all on the primary, and replication lag"
CLAIM = "Add read replicas and send reads to them to scale the database."
CONNECTIONS = 64


def plan(lab: Lab) -> int:
    return 2 * (lab.mode.rounds + warmups(lab))


def make_replica(lab: Lab) -> EmbeddedPostgres:
    """A hot standby of ``lab.postgres`` streaming from it (``pg_basebackup -R``)."""
    replica = EmbeddedPostgres(lab.work / "replica", durable=True)
    replica.max_connections = lab.postgres.max_connections  # a standby needs at least as many
    replica.data_dir.mkdir(parents=True)
    replica._prepare_user()
    replica._run(
        "pg_basebackup",
        "-h",
        "127.0.0.1",
        "-p",
        str(lab.postgres.port),
        "-U",
        "postgres",
        "-D",
        str(replica.data_dir),
        "-R",
        "-X",
        "stream",
        "-c",
        "fast",
    )
    os.chmod(replica.data_dir, 0o700)
    return replica.start()


async def _lag(primary_url: str, replica_url: str, samples: int) -> dict[str, Any]:
    primary = await asyncpg.connect(primary_url)
    replica = await asyncpg.connect(replica_url)
    stale_first = 0
    lags: list[float] = []
    try:
        for n in range(samples):
            value = f"lag probe {n} {time.time()}"
            await primary.execute("UPDATE bench_items SET name = $1 WHERE id = 1", value)
            committed = time.perf_counter()
            first = True
            while True:
                seen = await replica.fetchval("SELECT name FROM bench_items WHERE id = 1")
                if seen == value:
                    break
                if first:
                    stale_first += 1
                first = False
                if time.perf_counter() - committed > 10:
                    raise RuntimeError("the replica did not catch up within 10 s")
            lags.append((time.perf_counter() - committed) * 1000)
            await asyncio.sleep(0.05)
    finally:
        await primary.close()
        await replica.close()
    return {
        "samples": samples,
        "stale_first_reads": stale_first,
        "lag_ms_median": statistics.median(lags),
        "lag_ms_max": max(lags),
    }


def run(lab: Lab) -> dict[str, Any]:
    serving.prepare_probes(lab)  # before the base backup: the replica must have the table
    lab.status("replica: pg_basebackup")
    started = time.monotonic()
    replica = make_replica(lab)
    made = time.monotonic() - started
    try:
        replica_url = replica.url("lab")
        script = random_ids_script(lab, "/bench/items/", 1, ROWS, "replica-ids")
        app = "bench.newsdesk_app:app"
        servers = {
            "reads on the primary": hypercorn(
                lab, app, lab.env(), "primary-only", ready_path="/bench/hello"
            ),
            "reads split to the replica": hypercorn(
                lab, app, lab.env(DATABASE_READ_URL=replica_url), "split", ready_path="/bench/hello"
            ),
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        with running(*servers.values()):
            for server in servers.values():
                warm_up(lab, server.url + "/", CONNECTIONS, script=script)
            for round_no in range(lab.mode.rounds):
                names = list(servers) if round_no % 2 == 0 else list(servers)[::-1]
                for name in names:
                    lab.status(f"replica: {name}")
                    server = servers[name]
                    runs[name].append(
                        load(lab, server.url + "/", CONNECTIONS, script=script, pids=[server.pid])
                    )
        lab.status("replica: lag")
        samples = 50 if lab.mode.name == "full" else 20
        lag = asyncio.run(_lag(lab.database_url, replica_url, samples))
    finally:
        replica.stop()
    return {
        "basebackup_s": made,
        "rows": [{"setup": n, **summarise(r)} for n, r in runs.items()],
        "lag": lag,
    }


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    rows = {r["setup"]: r for r in data["rows"]}
    chart.bars(
        chart_path,
        groups={"primary-key read, 64 connections": {n: spread(r) for n, r in rows.items()}},
        ylabel="req/s",
    )
    lag = data["lag"]
    split = rows["reads split to the replica"]["rps"]["median"]
    primary = rows["reads on the primary"]["rps"]["median"]
    lines = table(data["rows"], "setup", "setup")
    lines += [
        "",
        f"Split / primary only: **{split / primary:.2f}x**. Replica made in "
        f"{data['basebackup_s']:.1f} s. Lag over {lag['samples']} writes: "
        f"{lag['stale_first_reads']} of {lag['samples']} reads made right after the commit "
        f"returned saw the old row; the new row showed after {lag['lag_ms_median']:.2f} ms "
        f"(median), {lag['lag_ms_max']:.2f} ms at worst.",
        "",
        "On this machine the replica shares the same 2 cores and disk with the primary, the "
        "API and the load generator, so it adds no capacity: the comparison shows the cost of "
        "routing, not the gain of a second database server. Newsdesk's cache fills and writes "
        "read the primary for that reason (a lagging replica could put an old row in the "
        "cache under a new generation).",
    ]
    verdict = (
        f"A replica only adds read capacity when it has hardware of its own (here "
        f"{split / primary:.2f}x on shared cores), and it is not read-your-writes: "
        f"{lag['stale_first_reads']} of {lag['samples']} reads right after a write saw the "
        "old row, so writes and anything cached must read the primary."
    )
    return lines, verdict

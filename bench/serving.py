"""Serving-model benchmark: ``python -m bench.serving`` (``make bench-serving``).

Three ways to serve the same Flask-style app, each by one Hypercorn worker (uvloop) on
loopback, against the same PostgreSQL and table:

- ``newsdesk``: this project's loop-native serving model (``bench.newsdesk_app``);
- ``flask-wsgi``: Flask's default async path, Hypercorn serving it as plain WSGI, ``NullPool``;
- ``quart``: Quart on the same Hypercorn, pooled engine.

Endpoints: a JSON hello and a primary-key read (random ids). Load: ``wrk`` with 32
connections. The apps take turns, round after round, each round starting with a different
app and each run preceded by the same 2 s warm-up, so drift on a shared machine and the order
of runs hit them alike; each figure is the median of the rounds, with min and max. Results go to
``bench/results/serving-<timestamp>.json`` and ``docs/BENCHMARKS.md``.

Environment: ``BENCH_DURATION`` (seconds per run, default 10), ``BENCH_ROUNDS`` (3),
``BENCH_CONNECTIONS`` (32), ``BENCH_DATABASE_URL`` (default: an embedded PostgreSQL).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import HypercornServer, parse_wrk, wrk, wrk_missing
from bench.common import machine as common_machine
from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REPORT = ROOT / "docs" / "BENCHMARKS.md"

APPS = {
    "newsdesk": "bench.newsdesk_app:app",
    "flask-wsgi": "bench.baselines.flask_wsgi:app",
    "quart": "bench.baselines.quart_app:app",
}
LABELS = {
    "newsdesk": "Newsdesk: Flask in a greenlet on Hypercorn's loop, shared pool",
    "flask-wsgi": "Flask's default path: Hypercorn serving WSGI, asgiref loop per view, NullPool",
    "quart": "Quart on the same Hypercorn, shared pool",
}
ENDPOINTS = {"hello": "/bench/hello", "pk-read": "/bench/items/"}
WARMUP_SECONDS = 2

RANDOM_ID_SCRIPT = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/bench/items/" .. math.random(1, {rows}))
end
"""


@dataclass
class Run:
    app: str
    endpoint: str
    round: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def Server(app_path: str, env: dict[str, str], log: Path) -> HypercornServer:
    """One Hypercorn worker (uvloop) serving a benchmarked app; ready on ``/bench/hello``."""
    return HypercornServer(
        app_path,
        env,
        log,
        ready_path="/bench/hello",
        options=["--worker-class", "uvloop", "--keep-alive", "75"],
    )


def seed(pg_url: str) -> None:
    from bench.probes import ROWS

    sql = (
        "DROP TABLE IF EXISTS bench_items; "
        "CREATE TABLE bench_items "
        "(id integer PRIMARY KEY, name text NOT NULL, body text NOT NULL); "
        "INSERT INTO bench_items SELECT i, 'item ' || i, repeat('x', 200) "
        f"FROM generate_series(1, {ROWS}) i; "
        "ANALYZE bench_items;"
    )
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def summarise(runs: list[Run]) -> list[dict[str, object]]:
    rows = []
    for endpoint in ENDPOINTS:
        for app in APPS:
            mine = [r for r in runs if r.app == app and r.endpoint == endpoint]
            rps = [r.requests_per_second for r in mine]
            rows.append(
                {
                    "endpoint": endpoint,
                    "app": app,
                    "rps_median": statistics.median(rps),
                    "rps_min": min(rps),
                    "rps_max": max(rps),
                    "p50_ms": statistics.median(r.p50_ms for r in mine),
                    "p99_ms": statistics.median(r.p99_ms for r in mine),
                    "errors": sum(r.errors for r in mine),
                    "requests": sum(r.requests for r in mine),
                }
            )
    return rows


def ratios(rows: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    def rps(app: str, endpoint: str) -> float:
        return float(
            next(r["rps_median"] for r in rows if r["app"] == app and r["endpoint"] == endpoint)  # type: ignore[arg-type]
        )

    return {
        endpoint: {
            "newsdesk/flask-wsgi": rps("newsdesk", endpoint) / rps("flask-wsgi", endpoint),
            "newsdesk/quart": rps("newsdesk", endpoint) / rps("quart", endpoint),
        }
        for endpoint in ENDPOINTS
    }


def machine() -> dict[str, str]:
    return common_machine(
        ("flask", "quart", "hypercorn", "sqlalchemy", "asyncpg", "greenlet", "uvloop")
    )


def write_report(result: dict[str, object], json_path: Path) -> None:
    rows: list[dict[str, object]] = result["summary"]  # type: ignore[assignment]
    rat: dict[str, dict[str, float]] = result["ratios"]  # type: ignore[assignment]
    cfg: dict[str, object] = result["config"]  # type: ignore[assignment]
    mach: dict[str, str] = result["machine"]  # type: ignore[assignment]
    lines = [
        "# Benchmarks",
        "",
        "## Serving models",
        "",
        f"Generated by `make bench-serving` (`python -m bench.serving`) on "
        f"{result['started']}; raw figures in `{json_path.relative_to(ROOT)}`.",
        "",
        f"Same machine ({mach['cpus']} cores, {mach['platform']}), same PostgreSQL, same table "
        f"({cfg['rows']} rows), one Hypercorn worker (uvloop) per app, "
        f"`wrk -t1 -c{cfg['connections']}` for {cfg['duration']} s per run on loopback. "
        f"The apps take turns for {cfg['rounds']} rounds; "
        "req/s is the median of the rounds (min to max in brackets), latencies are medians.",
        "",
        "| endpoint | serving model | req/s | p50 ms | p99 ms | errors |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['endpoint']} | {LABELS[str(r['app'])]} | {r['rps_median']:,.0f} "
            f"({r['rps_min']:,.0f} to {r['rps_max']:,.0f}) | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['errors']} |"
        )
    lines += ["", "Ratios (median req/s):", ""]
    for endpoint, values in rat.items():
        lines.append(
            f"- {endpoint}: Newsdesk / Flask default path = "
            f"**{values['newsdesk/flask-wsgi']:.2f}x**, "
            f"Newsdesk / Quart = **{values['newsdesk/quart']:.2f}x**"
        )
    lines += [
        "",
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in mach.items() if k not in ("cpus", "platform"))
        + ".",
        "",
        "Where two apps' min-to-max ranges overlap, their difference is within this machine's "
        "run-to-run noise (it is shared; a run's position in a round alone moved figures by "
        "10 to 20% before rounds rotated the order).",
        "",
        "What the modes are and why the default path is slow: [ARCHITECTURE.md](ARCHITECTURE.md).",
        "",
    ]
    REPORT.write_text("\n".join(lines))


def main() -> int:
    if wrk_missing():
        return 2
    duration = int(os.environ.get("BENCH_DURATION", "10"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "32"))
    from bench.probes import ROWS

    started = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    work = Path(tempfile.mkdtemp(prefix="newsdesk-bench-"))
    postgres = redis = None
    servers: dict[str, HypercornServer] = {}
    try:
        db_url = os.environ.get("BENCH_DATABASE_URL")
        if not db_url:
            postgres = EmbeddedPostgres(work / "postgres", durable=False).start()
            db_url = postgres.ensure_database("bench")
        redis = EmbeddedRedis(work / "redis", durable=False).start()
        seed(db_url)
        env = {
            "DATABASE_URL": db_url,
            "REDIS_URL": redis.url(),
            "ENV": "test",
            "PASSWORD_RESET_URL": "http://127.0.0.1/reset-password#token={token}",
            "DB_POOL_SIZE": "10",
            "LOG_LEVEL": "WARNING",
        }
        chosen = os.environ.get("BENCH_APPS", ",".join(APPS)).split(",")
        for name, path in APPS.items():
            if name not in chosen:
                continue
            servers[name] = Server(path, env, work / f"{name}.log")
        script = work / "random_id.lua"
        script.write_text(RANDOM_ID_SCRIPT.replace("{rows}", str(ROWS)))
        runs: list[Run] = []
        total = rounds * len(servers) * len(ENDPOINTS)
        names = list(servers)
        for round_no in range(1, rounds + 1):
            # Each round starts with a different app: the order a run takes in a round shows
            # up in its figure on this machine, so it must not favour any one app.
            shift = (round_no - 1) % len(names)
            order = names[shift:] + names[:shift]
            for endpoint, path in ENDPOINTS.items():
                for name in order:
                    server = servers[name]
                    done = len(runs) + 1
                    print(
                        f"[{done:>2}/{total}] round {round_no} {endpoint:<8} {name:<11}",
                        end=" ",
                        flush=True,
                    )
                    target, lua = (
                        (server.url + "/", script)
                        if endpoint == "pk-read"
                        else (server.url + path, None)
                    )
                    wrk(
                        target, WARMUP_SECONDS, connections, lua
                    )  # the same warm-up before every run
                    out = wrk(target, duration, connections, lua)
                    rps, p50, p99, errors, requests = parse_wrk(out)
                    print(
                        f"{rps:>8,.0f} req/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  "
                        f"errors {errors}",
                        flush=True,
                    )
                    runs.append(Run(name, endpoint, round_no, rps, p50, p99, errors, requests))
        if len(servers) < len(APPS):
            return 0  # a partial comparison (BENCH_APPS) writes no report
        rows = summarise(runs)
        result: dict[str, object] = {
            "started": started,
            "config": {
                "duration": duration,
                "rounds": rounds,
                "connections": connections,
                "rows": ROWS,
            },
            "machine": machine(),
            "runs": [asdict(r) for r in runs],
            "summary": rows,
            "ratios": ratios(rows),
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        json_path = RESULTS / f"serving-{started}.json"
        json_path.write_text(json.dumps(result, indent=2))
        write_report(result, json_path)
        print(json.dumps(result["ratios"], indent=2))
        print(f"wrote {json_path.relative_to(ROOT)} and {REPORT.relative_to(ROOT)}")
        return 0
    finally:
        for server in servers.values():
            server.stop()
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Metrics overhead benchmark: ``python -m bench.metrics`` (``make bench-metrics``).

What Prometheus metrics cost per request where a request costs least: a cache hit of
``GET /api/v1/articles/<id>`` answered before Flask (one Redis round trip). Three servers run
side by side on the same PostgreSQL and Redis, each one Hypercorn worker (uvloop) on loopback:

- ``metrics off``: ``METRICS_ENABLED=false`` (no middleware, no counting);
- ``metrics on``: as ``python -m service serve`` runs it, values in memory-mapped files in a
  ``PROMETHEUS_MULTIPROC_DIR`` (the production mode);
- ``metrics on, in memory``: no multiprocess directory (one process's registry), to show what
  the files cost.

``wrk -t1 -c32`` on one article id (every request a hit); the scenarios take turns for
``BENCH_ROUNDS`` rounds (order rotated), each run after a 2 s warm-up; medians, and the on/off
ratio of every round. Besides requests per second, each run records the server worker's CPU
time per request (user + system, from the kernel): on a machine busy with other work,
throughput swings with what else runs, while the CPU a request costs stays put. Writes
``bench/results/metrics-<timestamp>.json`` and ``docs/METRICS.md``.

PostgreSQL and Redis are embedded servers unless ``BENCH_DATABASE_URL`` (a server; the
benchmark uses its own database, ``BENCH_DATABASE``, default ``newsdesk_bench_metrics``) and
``BENCH_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/11``, flushed first) are set;
``BENCH_PORT`` gives the first of three consecutive ports for the servers.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import psutil
import redis

from bench.common import ROOT, HypercornServer, machine, parse_wrk, prepare, wrk, wrk_missing
from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis

ARTICLES = 1_000
REPORT = ROOT / "docs" / "METRICS.md"
OFF, ON, MEMORY = "metrics off", "metrics on", "metrics on, in memory"


async def _ensure_database(server_url: str, name: str) -> str:
    """``name`` on the PostgreSQL server of ``server_url`` (created if missing); its URL."""
    plain = server_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(plain)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return plain.rsplit("/", 1)[0] + "/" + name


def _worker_cpu(server: HypercornServer) -> float:
    """CPU seconds (user + system) used so far by the server's Hypercorn worker processes."""
    total = 0.0
    for child in psutil.Process(server.proc.pid).children():
        if "spawn_main" in " ".join(child.cmdline()):
            times = child.cpu_times()
            total += times.user + times.system
    return total


def _filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (tmpfs, ext4, overlay...)."""
    mounts = psutil.disk_partitions(all=True)
    best = max(
        (m for m in mounts if str(path).startswith(m.mountpoint)),
        key=lambda m: len(m.mountpoint),
    )
    return best.fstype


def _server(env: dict[str, str], log: Path, port: int | None) -> HypercornServer:
    return HypercornServer(
        "service.asgi:app",
        env,
        log,
        ready_path="/healthz",
        options=["--worker-class", "uvloop", "--keep-alive", "75"],
        port=port,
    )


def main() -> int:
    if wrk_missing():
        return 2
    duration = int(os.environ.get("BENCH_DURATION", "10"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    first_port = int(os.environ["BENCH_PORT"]) if os.environ.get("BENCH_PORT") else None
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    work = Path(tempfile.mkdtemp(prefix="newsdesk-bench-metrics-"))
    postgres = redis_server = None
    servers: dict[str, HypercornServer] = {}
    try:
        if os.environ.get("BENCH_DATABASE_URL"):
            name = os.environ.get("BENCH_DATABASE", "newsdesk_bench_metrics")
            db_url = asyncio.run(_ensure_database(os.environ["BENCH_DATABASE_URL"], name))
        else:
            postgres = EmbeddedPostgres(work / "postgres", durable=False).start()
            db_url = postgres.ensure_database("metrics")
        if os.environ.get("BENCH_REDIS_URL"):
            redis_url = os.environ["BENCH_REDIS_URL"]
        else:
            redis_server = EmbeddedRedis(work / "redis", durable=False).start()
            redis_url = redis_server.url()
        with redis.Redis.from_url(redis_url) as client:
            client.flushdb()
        prepare(db_url, ARTICLES)
        env = {
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "ENV": "test",
            "PASSWORD_RESET_URL": "http://127.0.0.1/reset-password#token={token}",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_READ": "100000000/minute",
            "CACHE_TTL_ARTICLE": "3600",
        }
        multiproc = work / "multiproc"
        multiproc.mkdir()
        variants = {
            OFF: {**env, "METRICS_ENABLED": "false"},
            ON: {**env, "METRICS_ENABLED": "true", "PROMETHEUS_MULTIPROC_DIR": str(multiproc)},
            MEMORY: {**env, "METRICS_ENABLED": "true"},
        }
        for index, (name, variant_env) in enumerate(variants.items()):
            port = first_port + index if first_port else None
            servers[name] = _server(variant_env, work / f"{index}.log", port)
        path = "/api/v1/articles/1"
        for server in servers.values():  # the first fills the entry; then every one hits
            for _ in range(2):
                response = httpx.get(server.url + path, timeout=10)
            assert response.headers["x-cache"] == "HIT", response.headers
        names = list(variants)
        runs: list[dict[str, object]] = []
        for round_no in range(1, rounds + 1):
            shift = (round_no - 1) % len(names)
            for name in names[shift:] + names[:shift]:
                url = servers[name].url + path
                wrk(url, 2, 32)
                cpu_before = _worker_cpu(servers[name])
                rps, p50, p99, errors, requests = parse_wrk(wrk(url, duration, 32))
                cpu_us = (_worker_cpu(servers[name]) - cpu_before) / requests * 1e6
                print(
                    f"round {round_no} {name:<22} {rps:>8,.0f} req/s  p50 {p50:6.2f} ms  "
                    f"p99 {p99:6.2f} ms  CPU {cpu_us:6.1f} us/request  errors {errors}",
                    flush=True,
                )
                runs.append(
                    {
                        "scenario": name,
                        "round": round_no,
                        "rps": rps,
                        "p50_ms": p50,
                        "p99_ms": p99,
                        "cpu_us_per_request": cpu_us,
                        "errors": errors,
                        "requests": requests,
                    }
                )
        counted = httpx.get(servers[ON].url + "/metrics", timeout=10).text
        result = summarise(runs, names, rounds)
        result.update(
            started=started,
            duration=duration,
            rounds=rounds,
            database="server" if postgres is None else "embedded",
            machine=machine(("flask", "hypercorn", "redis", "uvloop", "prometheus_client")),
            hits_counted=_hits(counted),
            multiproc_filesystem=_filesystem(multiproc),
        )
        (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
        json_path = ROOT / "bench" / "results" / f"metrics-{started}.json"
        json_path.write_text(json.dumps(result, indent=2))
        write_report(result, json_path)
        print(json.dumps(result["ratios"], indent=2))
        return 0
    finally:
        for server in servers.values():
            server.stop()
        if redis_server is not None:
            redis_server.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(work, ignore_errors=True)


def _hits(exposition: str) -> float:
    """The fast-path hits the "on" server counted: proof the runs measured hits."""
    for line in exposition.splitlines():
        if line.startswith("cache_lookups_total{") and 'outcome="hit"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def summarise(runs: list[dict[str, object]], names: list[str], rounds: int) -> dict[str, object]:
    summary = {}
    for name in names:
        mine = [r for r in runs if r["scenario"] == name]
        rps = [float(r["rps"]) for r in mine]  # type: ignore[arg-type]
        summary[name] = {
            "rps": statistics.median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "p50_ms": statistics.median(float(r["p50_ms"]) for r in mine),  # type: ignore[arg-type]
            "p99_ms": statistics.median(float(r["p99_ms"]) for r in mine),  # type: ignore[arg-type]
            "cpu_us": statistics.median(float(r["cpu_us_per_request"]) for r in mine),  # type: ignore[arg-type]
            "errors": sum(int(r["errors"]) for r in mine),  # type: ignore[call-overload]
        }

    def rps_of(name: str, round_no: int) -> float:
        [run] = [r for r in runs if r["scenario"] == name and r["round"] == round_no]
        return float(run["rps"])  # type: ignore[arg-type]

    per_round = [
        {
            "round": n,
            "on/off": rps_of(ON, n) / rps_of(OFF, n),
            "in memory/off": rps_of(MEMORY, n) / rps_of(OFF, n),
        }
        for n in range(1, rounds + 1)
    ]
    ratios = {
        "on/off (medians)": summary[ON]["rps"] / summary[OFF]["rps"],
        "on/off (median of rounds)": statistics.median(r["on/off"] for r in per_round),
        "in memory/off (medians)": summary[MEMORY]["rps"] / summary[OFF]["rps"],
        "CPU per request on - off (us, medians)": summary[ON]["cpu_us"] - summary[OFF]["cpu_us"],
        "CPU per request on/off (medians)": summary[ON]["cpu_us"] / summary[OFF]["cpu_us"],
    }
    return {"runs": runs, "summary": summary, "per_round": per_round, "ratios": ratios}


def write_report(result: dict[str, object], json_path: Path) -> None:
    summary: dict[str, dict[str, float]] = result["summary"]  # type: ignore[assignment]
    ratios: dict[str, float] = result["ratios"]  # type: ignore[assignment]
    per_round: list[dict[str, float]] = result["per_round"]  # type: ignore[assignment]
    runs: list[dict[str, float | str]] = result["runs"]  # type: ignore[assignment]
    mach: dict[str, str] = result["machine"]  # type: ignore[assignment]
    lines = [
        "# Metrics overhead",
        "",
        f"Generated by `make bench-metrics` (`python -m bench.metrics`) on {result['started']}; "
        f"raw figures in `{json_path.relative_to(ROOT)}`.",
        "",
        f"{mach['cpus']} cores, prometheus_client {mach['prometheus_client']}; PostgreSQL and "
        f"Redis: {result['database']}. Each server one Hypercorn worker (uvloop); "
        f"`wrk -t1 -c32 -d{result['duration']}s` on `GET /api/v1/articles/1`, every request a "
        "cache hit answered before Flask (the cheapest request, so the largest relative cost); "
        f"{result['rounds']} rounds, order rotated, each run after a 2 s warm-up; medians "
        "(min to max).",
        "",
        "| scenario | req/s | p50 ms | p99 ms | worker CPU per request | errors |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | {row['rps']:,.0f} ({row['rps_min']:,.0f} to {row['rps_max']:,.0f}) | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['cpu_us']:.1f} µs | "
            f"{int(row['errors'])} |"
        )
    lines += [
        "",
        "Every round (the runs' order rotated from round to round): req/s, and the worker's CPU "
        "per request.",
        "",
        "| round | " + " | ".join(summary) + " | on/off req/s | on/off CPU |",
        "| --- " * (len(summary) + 3) + "|",
    ]
    for entry in per_round:
        n = int(entry["round"])
        mine = {r["scenario"]: r for r in runs if r["round"] == n}
        cells = [
            f"{float(mine[name]['rps']):,.0f} ({float(mine[name]['cpu_us_per_request']):.0f} µs)"
            for name in summary
        ]
        cpu_ratio = float(mine[ON]["cpu_us_per_request"]) / float(mine[OFF]["cpu_us_per_request"])
        lines.append(
            f"| {n} | " + " | ".join(cells) + f" | {entry['on/off']:.3f} | {cpu_ratio:.3f} |"
        )
    lines += [
        "",
        f"- metrics on / off: **{ratios['on/off (medians)']:.3f}x** (medians); "
        f"{ratios['on/off (median of rounds)']:.3f}x (median of the rounds' ratios)",
        f"- metrics on in memory / off: {ratios['in memory/off (medians)']:.3f}x",
        f"- worker CPU per request, on / off: "
        f"**{ratios['CPU per request on/off (medians)']:.3f}x** "
        f"(+{ratios['CPU per request on - off (us, medians)']:.1f} µs)",
        f'- hits counted by the "on" server: {result["hits_counted"]:,.0f}',
        "",
        '"On" is the production mode: every worker writes its values to memory-mapped files in '
        f"`PROMETHEUS_MULTIPROC_DIR` (here on {result['multiproc_filesystem']}) so that "
        "`/metrics` sums them. Per request: one counter and one histogram at the ASGI level "
        "(`service/serving/metrics.py`) and one cache counter.",
        "",
    ]
    REPORT.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())

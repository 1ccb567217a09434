"""Claim: instrument every request with Prometheus metrics; what it costs goes unnoticed.

What metrics cost per request where a request costs least: a cache hit of
``GET /api/v1/articles/1`` answered before Flask (one Redis round trip). Three Newsdesk
servers side by side on the same PostgreSQL and Redis, one Hypercorn worker each: metrics off
(``METRICS_ENABLED=false``: no middleware, no counting); on as ``python -m service serve``
runs them, values in memory-mapped files in a ``PROMETHEUS_MULTIPROC_DIR`` (production); and
on in memory (no multiprocess directory: one process's registry, to show what the files
cost). 32 connections on the one article (every request a hit), the scenarios taking turns in
an order rotated each round. Besides req/s, each run records the server worker's CPU time per
request (user + system, from the kernel): on a busy shared machine throughput swings with what
else runs, while the CPU a request costs stays put.
"""

from __future__ import annotations

import contextlib
import statistics
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.lab import chart
from bench.lab.core import (
    Lab,
    Process,
    hypercorn,
    load,
    running,
    seeded,
    spread,
    summarise,
    table,
    warm_up,
    warmups,
)

TITLE = "Metrics: what Prometheus counting costs a cache hit"
CLAIM = "Instrument every request with Prometheus metrics; the overhead is negligible."
CONNECTIONS = 32
PATH = "/api/v1/articles/1"
OFF, ON, MEMORY = "metrics off", "metrics on", "metrics on, in memory"


def plan(lab: Lab) -> int:
    return 3 * (lab.mode.rounds + warmups(lab))


def _cpu(server: Process) -> float:
    """CPU seconds (user + system) used so far by the server's worker processes."""
    root = psutil.Process(server.pid)
    total = 0.0
    for proc in root.children(recursive=True) or [root]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def _filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (tmpfs, ext4, overlay...)."""
    mounts = [m for m in psutil.disk_partitions(all=True) if str(path).startswith(m.mountpoint)]
    return max(mounts, key=lambda m: len(m.mountpoint)).fstype if mounts else "unknown"


def _hits(exposition: str) -> float:
    """The fast-path hits the "on" server counted: proof the runs measured hits."""
    for line in exposition.splitlines():
        if line.startswith("cache_lookups_total{") and 'outcome="hit"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def run(lab: Lab) -> dict[str, Any]:
    seeded(lab)
    multiproc = lab.work / "multiproc"
    multiproc.mkdir(exist_ok=True)
    env = lab.env(CACHE_TTL_ARTICLE="3600")
    variants = {
        OFF: {**env, "METRICS_ENABLED": "false"},
        ON: {**env, "METRICS_ENABLED": "true", "PROMETHEUS_MULTIPROC_DIR": str(multiproc)},
        MEMORY: {**env, "METRICS_ENABLED": "true"},
    }
    servers = {
        name: hypercorn(lab, "service.asgi:app", variant, f"metrics-{number}")
        for number, (name, variant) in enumerate(variants.items())
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    names = list(servers)
    with running(*servers.values()):
        for name, server in servers.items():  # the first read fills the entry; then hits
            for _ in range(2):
                response = httpx.get(server.url + PATH, timeout=10)
            if response.headers.get("x-cache") != "HIT":
                raise RuntimeError(f"{name}: not a cache hit: {dict(response.headers)}")
            warm_up(lab, server.url + PATH, CONNECTIONS)
        for round_no in range(lab.mode.rounds):
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                lab.status(f"metrics: {name}")
                server = servers[name]
                before = _cpu(server)
                figures = load(lab, server.url + PATH, CONNECTIONS, pids=[server.pid])
                figures["cpu_us"] = (_cpu(server) - before) / max(figures["requests"], 1) * 1e6
                runs[name].append(figures)
        counted = httpx.get(servers[ON].url + "/metrics", timeout=10).text
    rows = [
        {
            "scenario": name,
            **summarise(mine),
            "cpu_us": statistics.median(r["cpu_us"] for r in mine),
        }
        for name, mine in runs.items()
    ]
    per_round = [
        {name: {"rps": runs[name][n]["rps"], "cpu_us": runs[name][n]["cpu_us"]} for name in names}
        for n in range(lab.mode.rounds)
    ]
    return {
        "rows": rows,
        "per_round": per_round,
        "hits_counted": _hits(counted),
        "multiproc_filesystem": _filesystem(multiproc),
    }


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    lines = table(data["rows"], "scenario", "scenario")
    rows = {r["scenario"]: r for r in data["rows"]}
    hits = {name: spread(row) for name, row in rows.items()}
    chart.bars(chart_path, groups={"cache hit": hits}, ylabel="req/s")
    lines += [
        "",
        "Every round (order rotated): req/s (worker CPU per request).",
        "",
        "| round | " + " | ".join(rows) + " | on/off req/s | on/off CPU |",
        "| --- " * (len(rows) + 3) + "|",
    ]
    ratios = []
    for number, entry in enumerate(data["per_round"], 1):
        cells = [f"{entry[n]['rps']:,.0f} ({entry[n]['cpu_us']:.0f} µs)" for n in rows]
        ratio = entry[ON]["rps"] / entry[OFF]["rps"]
        ratios.append(ratio)
        cpu = entry[ON]["cpu_us"] / entry[OFF]["cpu_us"]
        lines.append(f"| {number} | " + " | ".join(cells) + f" | {ratio:.3f} | {cpu:.3f} |")
    on, off, memory = rows[ON], rows[OFF], rows[MEMORY]
    rps = on["rps"]["median"] / off["rps"]["median"]
    cpu_added = on["cpu_us"] - off["cpu_us"]
    lines += [
        "",
        f"Metrics on / off: **{rps:.3f}x** req/s (medians), "
        f"{statistics.median(ratios):.3f}x (median of the rounds' ratios); on in memory / off: "
        f"{memory['rps']['median'] / off['rps']['median']:.3f}x. Worker CPU per request, on / "
        f"off: **{on['cpu_us'] / off['cpu_us']:.3f}x** ({cpu_added:+.1f} µs). Hits counted by "
        f'the "on" server: {data["hits_counted"]:,.0f}; its multiprocess directory on '
        f"{data['multiproc_filesystem']}.",
    ]
    verdict = (
        f"Metrics in production mode cost a cache hit {cpu_added:+.1f} µs of worker CPU "
        f"({on['cpu_us'] / off['cpu_us'] - 1:+.1%}) and left it {rps:.3f}x the requests per "
        "second: "
        + (
            "negligible beside any request that reaches Flask or the database."
            if abs(rps - 1) < 0.05
            else "measurable on the cheapest request, less on any that does real work."
        )
    )
    return lines, verdict

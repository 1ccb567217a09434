"""Claim: the ASGI server matters ("the framework is the bottleneck, not the server").

The same apps on three ASGI servers, one worker process each: Newsdesk's probes
(``bench.newsdesk_app``, the product's adapter, its read path for its hottest reads
(``Reads.row``, ``service.infra.driver_reads``: one statement compiled once, run by asyncpg
on a connection of SQLAlchemy's pool) and Redis client), FastAPI and Litestar
(``bench.baselines.fastapi_app`` and ``litestar_app``, the same ``AsyncProbes``: an
``AsyncSession`` per read, as their users write it), and a bare ASGI app answering
hello with no framework at all (the server's own ceiling) and the same bare app reading the
item straight from an asyncpg pool (``bench.baselines.raw_asyncpg``: the driver's ceiling for
the primary-key read), each on Hypercorn (uvloop, h11),
uvicorn (uvloop, httptools) and granian (``--interface asgi``, uvloop). The same PostgreSQL and
Redis, pool 8, 32 connections; hello, a primary-key read and a Redis-cached item by random id;
per endpoint every app on every server takes a turn each round, in an order that rotates.

The "hot" endpoint is what a reader of a news site asks most: Newsdesk's own article read
(``GET /api/v1/articles/{id}``, answered before Flask from the cache, views counted) over 1,000
warm articles, beside the peers' cached item over the same number of ids.
"""

from __future__ import annotations

import math
import urllib.request
from pathlib import Path
from typing import Any

from bench.lab import chart
from bench.lab.core import (
    Lab,
    Process,
    asgi_server,
    load,
    random_ids_script,
    running,
    seeded,
    sql,
    summarise,
    warm_up,
    warmups,
)
from bench.lab.serving import prepare_probes
from bench.probes import ROWS

TITLE = "The ASGI server matters: Hypercorn, uvicorn and granian"
CLAIM = (
    "The framework sets a Python API's speed; which ASGI server runs it makes little difference."
)
SERVERS = {
    "hypercorn": "Hypercorn (uvloop, h11)",
    "uvicorn": "uvicorn (uvloop, httptools)",
    "granian": "granian (asgi, uvloop)",
}
APPS = {
    "newsdesk": "bench.newsdesk_app:app",
    "fastapi": "bench.baselines.fastapi_app:app",
    "litestar": "bench.baselines.litestar_app:app",
    "bare": "bench.baselines.bare_asgi:app",
    "raw": "bench.baselines.raw_asyncpg:app",
}
# Where an app reads differently: Newsdesk's primary-key read goes through its own read path.
OWN_PATHS = {("newsdesk", "pk-read"): "/bench/reads/", ("newsdesk", "hot"): "/api/v1/articles/"}
# Newsdesk's article read has no twin in the peers: it stands beside their cached item.
OWN_ENDPOINTS = {"newsdesk": ("hot",)}
AGAINST = {"hot": "cached"}
PEERS = {"fastapi": "FastAPI", "litestar": "Litestar"}
ENDPOINTS = {"hello": "/bench/hello", "pk-read": "/bench/items/", "cached": "/bench/cached/"}
RANDOM_ID = ("pk-read", "cached", "hot")
BARE_ENDPOINTS = ("hello",)  # the bare app answers hello to every path
RAW_ENDPOINTS = ("pk-read",)  # the raw asyncpg app: its hello is the bare app's
CONNECTIONS = 32
POOL = 8


def _targets() -> list[tuple[str, str]]:
    return [(app, server) for app in APPS for server in SERVERS]


def _endpoints(app: str) -> list[str]:
    if app == "bare":
        return list(BARE_ENDPOINTS)
    if app == "raw":
        return list(RAW_ENDPOINTS)
    return [*ENDPOINTS, *OWN_ENDPOINTS.get(app, ())]


def _path(app: str, endpoint: str) -> str:
    return OWN_PATHS.get((app, endpoint)) or ENDPOINTS[endpoint]


def plan(lab: Lab) -> int:
    per_round = sum(len(_endpoints(app)) for app, _ in _targets())
    return per_round * (lab.mode.rounds + warmups(lab))


def run(lab: Lab) -> dict[str, Any]:
    lab.status("servers: seeding the probe table")
    prepare_probes(lab)
    seeded(lab)
    first = int(sql(lab, "SELECT min(id) FROM articles")[0][0])
    ranges = {_path(app, e): (1, ROWS) for app in APPS for e in _endpoints(app) if e in RANDOM_ID}
    low, high = first, first + ROWS - 1  # the hot articles: the 1,000 oldest
    ranges[_path("newsdesk", "hot")] = (low, high)
    scripts = {
        path: random_ids_script(lab, path, *span, f"servers-{path.strip('/').replace('/', '-')}")
        for path, span in ranges.items()
    }
    # The hot articles stay cached for the whole claim (the default 300 s is shorter than it).
    env = lab.env(DB_POOL_SIZE=str(POOL), CACHE_TTL_ARTICLE="3600")
    started: dict[tuple[str, str], Process] = {}
    failed: dict[str, str] = {}
    runs: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    try:
        for app, server in _targets():
            lab.status(f"servers: starting {app} on {server}")
            try:
                started[(app, server)] = asgi_server(
                    lab,
                    server,
                    APPS[app],
                    env,
                    f"servers-{app}-{server}",
                    ready_path="/bench/hello",
                )
            except RuntimeError as exc:  # one server failing to serve an app is a finding
                failed[f"{app} on {server}"] = str(exc)[-500:]
        with running(*started.values()):
            # Per endpoint, every (app, server) pair takes a turn each round, the order rotated
            # round by round: a machine growing busier or quieter mid-claim weighs on every app
            # alike, as it would not if one app's rounds all ran before the next app's.
            endpoints = list(dict.fromkeys(e for app in APPS for e in _endpoints(app)))
            for endpoint in endpoints:
                pairs = [
                    (app, server)
                    for app in APPS
                    if endpoint in _endpoints(app)
                    for server in SERVERS
                    if (app, server) in started
                ]
                for app, server in pairs:
                    if (app, endpoint) == ("newsdesk", "hot"):
                        lab.status(f"servers: caching the hot articles on {server}")
                        _read_each(started[(app, server)].url, _path(app, endpoint), low, high)
                    lab.status(f"servers: warm-up {app} {endpoint} {server}")
                    target = _target(started[(app, server)], app, endpoint, scripts)
                    warm_up(lab, target[0], 16, script=target[1])
                for round_no in range(lab.mode.rounds):
                    shift = round_no % len(pairs)
                    for app, server in pairs[shift:] + pairs[:shift]:
                        lab.status(f"servers: {endpoint} {app} {server}")
                        process = started[(app, server)]
                        url, script = _target(process, app, endpoint, scripts)
                        figures = load(
                            lab,
                            url,
                            CONNECTIONS,
                            script=script,
                            pids=[process.pid],
                            settle=process.url + "/bench/hello",
                        )
                        runs.setdefault((app, server, endpoint), []).append(figures)
    finally:
        for process in started.values():
            process.stop()
    rows = [{"app": a, "server": s, "endpoint": e, **summarise(r)} for (a, s, e), r in runs.items()]
    return {"rows": rows, "connections": CONNECTIONS, "failed": failed}


def _target(
    process: Process, app: str, endpoint: str, scripts: dict[str, Path]
) -> tuple[str, Path | None]:
    """The URL wrk loads and its script (random ids) for ``app``'s ``endpoint``."""
    path = _path(app, endpoint)
    script = scripts.get(path) if endpoint in RANDOM_ID else None
    return process.url + ("/" if script else path), script


def _read_each(url: str, path: str, low: int, high: int) -> None:
    """Each article once (the cache filled before any run, the quick pass's included)."""
    for article_id in range(low, high + 1):
        with urllib.request.urlopen(f"{url}{path}{article_id}", timeout=10) as response:
            response.read()


def _row(data: dict[str, Any], app: str, server: str, endpoint: str) -> dict[str, Any] | None:
    for row in data["rows"]:
        if (row["app"], row["server"], row["endpoint"]) == (app, server, endpoint):
            found: dict[str, Any] = row
            return found
    return None


def _rps(data: dict[str, Any], app: str, server: str, endpoint: str) -> float:
    row = _row(data, app, server, endpoint)
    return float("nan") if row is None else float(row["rps"]["median"])


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}"


def _ratio(a: float, b: float) -> str:
    return "n/a" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}x"


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    """Markdown lines and the verdict."""
    groups: dict[str, dict[str, tuple[float, float, float]]] = {}
    for app in APPS:
        for endpoint in _endpoints(app):
            group: dict[str, tuple[float, float, float]] = {}
            for server in SERVERS:
                row = _row(data, app, server, endpoint)
                if row is not None:
                    rps = row["rps"]
                    group[server] = (rps["median"], rps["min"], rps["max"])
            groups[f"{app}\n{endpoint}"] = group
    chart.bars(chart_path, groups=groups, ylabel="req/s", log=True)
    lines = [
        f"{data['connections']} connections, req/s median (min to max); peak RSS of the worker.",
        "",
        "| app | endpoint | " + " | ".join(SERVERS) + " | peak RSS MiB |",
        "| --- | --- | " + " | ".join("---" for _ in SERVERS) + " | --- |",
    ]
    for app in APPS:
        for endpoint in _endpoints(app):
            cells, rss = [], []
            for server in SERVERS:
                row = _row(data, app, server, endpoint)
                if row is None:
                    cells.append("failed")
                    continue
                rps = row["rps"]
                cells.append(f"{rps['median']:,.0f} ({rps['min']:,.0f} to {rps['max']:,.0f})")
                rss.append(f"{row['rss_mib']:.0f}")
            lines.append(f"| {app} | {endpoint} | " + " | ".join(cells) + f" | {' / '.join(rss)} |")
    lines += [
        "",
        "Peak RSS in the order of the servers' columns. Newsdesk's pk-read is its own read "
        "path (`/bench/reads/`: one statement compiled once, run by the driver); the others "
        "read through an `AsyncSession`. Newsdesk's hot is `GET /api/v1/articles/{id}` over "
        "1,000 warm articles (the fast path, views counted), set against the peers' cached "
        "item.",
    ]
    for peer, label in PEERS.items():
        lines += [
            "",
            f"Newsdesk vs {label} on the same server: "
            + "; ".join(
                f"{server} "
                + ", ".join(
                    f"{endpoint} {_ratio(_rps(data, 'newsdesk', server, endpoint), _rps(data, peer, server, AGAINST.get(endpoint, endpoint)))}"  # noqa: E501
                    for endpoint in _endpoints("newsdesk")
                )
                for server in SERVERS
            )
            + ".",
        ]
    for name, why in data.get("failed", {}).items():
        lines += ["", f"{name} did not start: `{' '.join(why.split())[-300:]}`"]
    verdict = _verdict(data)
    return lines, verdict


def _best(data: dict[str, Any], app: str, endpoint: str) -> tuple[str, float]:
    figures = {s: _rps(data, app, s, endpoint) for s in SERVERS}
    figures = {s: v for s, v in figures.items() if not math.isnan(v)}
    if not figures:
        return "none", float("nan")
    server = max(figures, key=lambda s: figures[s])
    return server, figures[server]


def _verdict(data: dict[str, Any]) -> str:
    bare_server, bare_best = _best(data, "bare", "hello")
    bare_hyp = _rps(data, "bare", "hypercorn", "hello")
    parts = [
        f"It sets the ceiling: a bare ASGI hello serves {_fmt(bare_best)} req/s on "
        f"{bare_server} vs {_fmt(bare_hyp)} on Hypercorn ({_ratio(bare_best, bare_hyp)})"
    ]
    for app, label in (("newsdesk", "Newsdesk"), *PEERS.items()):
        gains = []
        for endpoint in ENDPOINTS:
            server, best = _best(data, app, endpoint)
            hyp = _rps(data, app, "hypercorn", endpoint)
            gains.append(f"{endpoint} {_ratio(best, hyp)} ({server})")
        parts.append(f"{label}'s best server vs Hypercorn: " + ", ".join(gains))
    matters = not math.isnan(bare_best) and bare_best > 1.5 * bare_hyp
    nd_server, nd_read = _best(data, "newsdesk", "pk-read")
    raw_read = {server: _rps(data, "raw", server, "pk-read") for server in SERVERS}
    driver = ", ".join(
        f"{server} {_ratio(_rps(data, 'newsdesk', server, 'pk-read'), raw)}"
        for server, raw in raw_read.items()
    )
    tail = (
        f"; Newsdesk's primary-key read vs the raw asyncpg app's: {driver}"
        + (f"; best primary-key read: Newsdesk {_fmt(nd_read)} ({nd_server})")
        + "".join(
            f" vs {label} {_fmt(best)} ({server}), {_ratio(nd_read, best)}"
            for peer, label in PEERS.items()
            for server, best in [_best(data, peer, "pk-read")]
        )
    )
    hot = "; ".join(
        f"Newsdesk's hot article read vs {label}'s cached item: "
        + ", ".join(
            f"{server} {_ratio(_rps(data, 'newsdesk', server, 'hot'), _rps(data, peer, server, 'cached'))}"  # noqa: E501
            for server in SERVERS
        )
        for peer, label in PEERS.items()
    )
    tail += f"; {hot}"
    lead = "The server matters" if matters else "The server matters little here"
    failed = data.get("failed", {})
    missing = f" ({', '.join(failed)} did not start)" if failed else ""
    return f"{lead}. " + "; ".join(parts) + tail + missing + "."

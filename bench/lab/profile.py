"""Claim: Flask itself is what makes a Flask API slow; a faster framework is the fix.

Where a Newsdesk worker's per-request time goes, and what the product adds to Flask: four apps
side by side, one Hypercorn worker each serving in-process (``--workers 0``, so the measured
PID is the one serving): Newsdesk with the probes (``bench.newsdesk_app``), the Flask floor
(``bench/baselines/flask_floor.py``: the same adapter, probes and pool, none of the product's
per-request work), FastAPI and Quart, ``DB_POOL_SIZE=8``. Probes: a JSON hello, a primary-key
read and a cached item (random ids), and on Newsdesk an article read answered by the cache
fast path (each of 200 articles read once first). 32 connections, apps taking turns in an
order rotated each round; req/s medians with every round's ratio to Newsdesk, and each
worker's RSS after start, after the load and at its peak (``VmHWM``).

With py-spy installed (the bench extra has it; ``py_spy`` finds it beside the lab's Python or
on the PATH), Newsdesk's worker is also sampled during one
more run of each probe (``py-spy record --format raw -r 200``, no idle samples) and every
sample is charged to the innermost frame that belongs to a layer (``LAYERS``, first match
wins: asyncpg time under a SQLAlchemy call is the driver's).
"""

from __future__ import annotations

import collections
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from bench.lab import chart
from bench.lab.core import (
    Lab,
    Process,
    hypercorn,
    load,
    random_ids_script,
    running,
    seeded,
    warm_up,
    warmups,
)
from bench.lab.serving import prepare_probes
from bench.probes import ROWS

TITLE = "Profile: where a request's time goes, Newsdesk vs the Flask floor"
CLAIM = "Flask is what makes a Flask API slow; move to a faster framework."
CONNECTIONS = 32
ARTICLES = 200  # the article probe's hot set, each read once before (cache hits)
APPS = {
    "newsdesk": "bench.newsdesk_app:app",
    "floor": "bench.baselines.flask_floor:app",
    "fastapi": "bench.baselines.fastapi_app:app",
    "quart": "bench.baselines.quart_app:app",
}
PROBES = {
    "hello": "/bench/hello",
    "pk": "/bench/items/",
    "cached": "/bench/cached/",
    "article": "/api/v1/articles/",
}
QUICK_PROBES = ("hello", "pk")
# (layer, substrings of a frame's "function (file:line)" text). Order matters: the first layer
# whose pattern a frame matches is that frame's layer.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("metrics middleware", ("service/edge/metrics.py", "prometheus_client/")),
    ("logging / access log", ("logging/__init__", "service/web/access_log.py", "core/logs.py")),
    ("cache fast path", ("service/edge/fastpath.py", "service/infra/cache.py")),
    ("Redis client", ("redis/",)),
    ("asyncpg driver", ("asyncpg/",)),
    ("SQLAlchemy session/engine", ("sqlalchemy/",)),
    ("pydantic / orjson", ("pydantic", "orjson", "service/web/jsonio.py")),
    ("adapter + greenlet switches", ("service/greenlet_asgi/", "greenlet")),
    ("werkzeug request/response", ("werkzeug/",)),
    ("Flask dispatch + hooks", ("flask/", "service/web/", "flask_cors/")),
    ("app views (bench/)", ("bench/",)),
    ("h11 / Hypercorn", ("h11/", "hypercorn/")),
    ("event loop (asyncio/uvloop)", ("asyncio/", "uvloop")),
)
OTHER = "other"


def layer_of(stack: str) -> str:
    """The layer of the innermost frame of ``stack`` (frames root-first, ``;``-separated)."""
    for frame in reversed(stack.split(";")):
        for name, patterns in LAYERS:
            if any(pattern in frame for pattern in patterns):
                return name
    return OTHER


def shares(paths: list[Path]) -> dict[str, int]:
    """Samples per layer over py-spy's collapsed-stack files, most first."""
    counts: collections.Counter[str] = collections.Counter()
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, number = line.rpartition(" ")
            if stack and number.isdigit():
                counts[layer_of(stack)] += int(number)
    return dict(counts.most_common())


def layer_table(columns: dict[str, dict[str, int]]) -> list[str]:
    """A Markdown table of layer shares: one row per layer (most samples first, over all
    columns), per column its samples and share of that column's samples."""
    totals = collections.Counter[str]()
    for counts in columns.values():
        totals.update(counts)
    lines = [
        "| layer | " + " | ".join(columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for layer, _ in totals.most_common():
        cells = []
        for counts in columns.values():
            share = 100 * counts.get(layer, 0) / max(sum(counts.values()), 1)
            cells.append(f"{counts.get(layer, 0)} ({share:.1f}%)")
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return lines


def probes(lab: Lab) -> dict[str, str]:
    if lab.mode.quick:
        return {p: path for p, path in PROBES.items() if p in QUICK_PROBES}
    return PROBES


def serves(app: str, probe: str) -> bool:
    return probe != "article" or app == "newsdesk"


def plan(lab: Lab) -> int:
    chosen = probes(lab)
    runs = sum(serves(app, p) for app in APPS for p in chosen)
    spied = len(chosen) if py_spy() else 0
    return runs * (lab.mode.rounds + warmups(lab)) + spied


def _rss(server: Process) -> tuple[float, float]:
    """(current RSS, peak RSS) of the serving process, MiB."""
    status = Path(f"/proc/{server.pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def py_spy() -> str | None:
    """The py-spy command: beside the lab's Python (the bench extra installs it in the
    virtual environment), else on the PATH; None when it is not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def spied(
    lab: Lab,
    server: Process,
    url: str,
    script: Path | None,
    name: str,
    *,
    connections: int = CONNECTIONS,
    seconds: int | None = None,
) -> dict[str, int]:
    """Samples per layer (``shares``) of ``server`` and its children (a Hypercorn master's
    worker) during one more load run of ``url``; empty when py-spy is not installed or could
    not attach."""
    command = py_spy()
    if command is None:
        return {}
    out = lab.work / f"profile-{name}.txt"
    seconds = seconds or lab.mode.duration + 1
    record = [command, "record", "--format", "raw", "--subprocesses", "-r", "200"]
    record += ["-d", str(seconds)]
    spy = subprocess.Popen(
        [*record, "-o", str(out), "-p", str(server.pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        load(lab, url, connections, script=script, duration=seconds)
    finally:
        spy.wait(seconds + 30)
    return shares([out]) if out.exists() else {}


def run(lab: Lab) -> dict[str, Any]:
    seeded(lab)
    prepare_probes(lab)
    chosen = probes(lab)
    scripts: dict[str, Path | None] = {
        "hello": None,
        "pk": random_ids_script(lab, PROBES["pk"], 1, ROWS, "profile-pk"),
        "cached": random_ids_script(lab, PROBES["cached"], 1, ROWS, "profile-cached"),
        "article": random_ids_script(lab, PROBES["article"], 1, ARTICLES, "profile-article"),
    }
    env = lab.env(DB_POOL_SIZE="8")
    servers = {
        name: hypercorn(
            lab, app, env, f"profile-{name}", ready_path="/bench/hello", options=("--workers", "0")
        )
        for name, app in APPS.items()
    }
    runs: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    names = list(APPS)
    layers: dict[str, dict[str, int]] = {}
    with running(*servers.values()):
        started = {name: _rss(server)[0] for name, server in servers.items()}
        with httpx.Client(base_url=servers["newsdesk"].url, timeout=30) as http:
            for number in range(1, ARTICLES + 1):  # the article probe reads cache hits
                http.get(f"{PROBES['article']}{number}")
        for probe, path in chosen.items():

            def url(name: str, probe: str = probe, path: str = path) -> str:
                return servers[name].url + ("/" if scripts[probe] else path)

            for name in names:
                if serves(name, probe):
                    warm_up(lab, url(name), CONNECTIONS, script=scripts[probe])
            for round_no in range(lab.mode.rounds):
                shift = round_no % len(names)
                for name in names[shift:] + names[:shift]:
                    if not serves(name, probe):
                        continue
                    lab.status(f"profile: {probe} {name}")
                    figures = load(lab, url(name), CONNECTIONS, script=scripts[probe])
                    runs[(probe, name)].append(figures["rps"])
            if py_spy():
                lab.status(f"profile: py-spy on {probe}")
                newsdesk = servers["newsdesk"]
                layers[probe] = spied(lab, newsdesk, url("newsdesk"), scripts[probe], probe)
        rss = {
            name: {"start": started[name], "now": now, "peak": peak}
            for name, server in servers.items()
            for now, peak in [_rss(server)]
        }
    return {
        "rps": [{"probe": p, "app": a, "rounds": r} for (p, a), r in runs.items()],
        "rss_mib": rss,
        "layers": layers,
    }


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    rps = {(r["probe"], r["app"]): r["rounds"] for r in data["rps"]}
    shown = list(dict.fromkeys(p for p, _ in rps))
    chart.bars(
        chart_path,
        groups={
            probe: {
                app: (statistics.median(v), min(v), max(v))
                for app in APPS
                if (v := rps.get((probe, app)))
            }
            for probe in shown
        },
        ylabel="req/s",
    )
    lines = [
        "| probe | " + " | ".join(APPS) + " | floor / newsdesk per round |",
        "| --- " * (len(APPS) + 2) + "|",
    ]
    for probe in shown:
        cells = [
            f"{statistics.median(v):,.0f}" if (v := rps.get((probe, app))) else "-" for app in APPS
        ]
        floor = rps.get((probe, "floor"))
        ratios = (
            ", ".join(f"{f / n:.2f}" for f, n in zip(floor, rps[(probe, "newsdesk")], strict=True))
            if floor
            else "-"
        )
        lines.append(f"| {probe} | " + " | ".join(cells) + f" | {ratios} |")
    lines += ["", "| worker | RSS after start MiB | after the load | peak (VmHWM) |"]
    lines.append("| --- | ---: | ---: | ---: |")
    for name, mib in data["rss_mib"].items():
        lines.append(f"| {name} | {mib['start']:.1f} | {mib['now']:.1f} | {mib['peak']:.1f} |")
    for probe, counts in data["layers"].items():
        lines += ["", f"Newsdesk's worker on {probe} (py-spy samples):", ""]
        lines += layer_table({"samples": counts})
    if not data["layers"]:
        lines += ["", "No layer shares in this run (py-spy was not installed)."]
    hello = rps[("hello", "floor")], rps[("hello", "newsdesk")], rps[("hello", "fastapi")]
    floor, newsdesk, fastapi = (statistics.median(v) for v in hello)
    verdict = (
        f"Partly: on a JSON hello the Flask floor serves {floor / newsdesk:.2f}x Newsdesk (the "
        f"product's per-request work) and FastAPI {fastapi / floor:.2f}x the floor (the "
        "framework's); once a request reads the database or Redis the gaps shrink, see the "
        "table."
    )
    return lines, verdict

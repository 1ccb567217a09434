"""Claim: async Flask cannot carry a news site's traffic at a latency users do not notice.

One Newsdesk instance (``service.asgi:app`` as ``python -m service serve`` runs it, no access
log) on Hypercorn and on granian, with 1 and 2 worker processes (``WEB_CONCURRENCY``), on
20,000 seeded articles (5,000 in the quick pass), the lab's PostgreSQL and Redis, no arq
worker (processing jobs queue up). One wrk script sends the same requests in the same order
to every setup (``bench.lab.scaling.mix_lua``): per 1,000 requests 800 article reads skewed
to the newest (a power law: the newest 1% of the articles take about a fifth of them), 125
list pages (9 in 10 of them page 1, the rest pages 2 to 5), 25 lists by tag, 40 articles
written with an API key (each moves the lists' cache generation on) and 10 logins
(argon2id). The rate limits are lifted (every request comes from one address).

wrk keeps a fixed number of requests in flight (a closed loop), so the load is raised by
connections: 1, 2, 4, 8, 16, 32 and 64 (up to 16 in the quick pass), 3 s each (2 s) after a
warm-up run, setups taking turns at each level. The figure for a setup is the highest rate of
a run whose p99 is at most 50 ms. The same again with the logins' share written instead: a
login is an argon2id hash of about a hundred milliseconds (by design), so at 1% of the
requests the logins alone are the mix's 99th percentile.

Where the time goes: at each setup's figure without logins (its connections), one more run
counts the CPU each part of the machine used, in cores (CPU seconds per second of the run):
the instance (master and workers), PostgreSQL (the postmaster and its backends), Redis, the
load generator (wrk) and what stayed idle; and, with py-spy installed, one more run samples
the instance's workers by layer (``bench.lab.profile.LAYERS``).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import psutil

from bench.lab import chart, profile, scaling
from bench.lab.core import Lab, Process, asgi_server, load, prepare, running, sql, warmups

TITLE = "A news workload: the highest rate at p99 <= 50 ms"
CLAIM = "Async Flask cannot carry a real news workload at low latency."
P99_LIMIT_MS = 50.0
# Requests per 1,000, in the kinds and order of bench.lab.scaling's script.
MIX = (("read", 800), ("list", 125), ("tag", 25), ("write", 40), ("login", 10))
# The same without logins (their share written instead): a login is an argon2id hash of about
# a hundred milliseconds, so at 10 in 1,000 requests it is the mix's 99th percentile by itself.
NO_LOGINS = (("read", 800), ("list", 125), ("tag", 25), ("write", 50), ("login", 0))
MIXES = {"news mix": MIX, "without logins": NO_LOGINS}
SETUPS = (("hypercorn", 1), ("hypercorn", 2), ("granian", 1), ("granian", 2))
AUTHORS = 100  # python -m service seed's default: the logins take turns among them


def articles(lab: Lab) -> int:
    return 5_000 if lab.mode.quick else 20_000


def levels(lab: Lab) -> list[int]:
    return [1, 2, 4, 8, 16] if lab.mode.quick else [1, 2, 4, 8, 16, 32, 64]


def duration(lab: Lab) -> int:
    return 2 if lab.mode.quick else 3


def plan(lab: Lab) -> int:
    spied = len(SETUPS) if profile.py_spy() else 0
    return len(MIXES) * len(SETUPS) * (len(levels(lab)) + warmups(lab)) + len(SETUPS) + spied


def label(server: str, workers: int) -> str:
    return f"{server}, {workers} worker{'s' if workers > 1 else ''}"


def capacity(runs: list[dict[str, float]], limit_ms: float = P99_LIMIT_MS) -> dict[str, Any]:
    """The run with the highest rate among those whose p99 is at most ``limit_ms`` (None when
    none is), as ``{"rps", "p99_ms", "connections"}``."""
    within = [r for r in runs if r["p99_ms"] <= limit_ms]
    if not within:
        return {"rps": None, "p99_ms": None, "connections": None}
    best = max(within, key=lambda r: r["rps"])
    return {"rps": best["rps"], "p99_ms": best["p99_ms"], "connections": best["connections"]}


def run(lab: Lab) -> dict[str, Any]:
    lab.status("mixed: seeding")
    url = lab.postgres.ensure_database("mixed")
    count = articles(lab)
    prepare(url, count, progress=False)
    first, last = sql(lab, "SELECT min(id), max(id) FROM articles", url)[0]
    env = lab.env(**scaling.ENV, DATABASE_URL=url)
    servers = {
        (server, workers): asgi_server(
            lab,
            server,
            "service.asgi:app",
            {**env, "WEB_CONCURRENCY": str(workers)},
            f"mixed-{server}-{workers}",
            ready_path="/healthz",
            workers=workers,
        )
        for server, workers in SETUPS
    }
    runs: dict[tuple[str, str, int], list[dict[str, float]]] = {
        (mix, *setup): [] for mix in MIXES for setup in SETUPS
    }
    with running(*servers.values()):
        key = scaling._api_key(servers[SETUPS[0]].url)
        scripts = {}
        for n, (mix, shares) in enumerate(MIXES.items()):
            scripts[mix] = lab.work / f"mixed-{n}.lua"
            scripts[mix].write_text(scaling.mix_lua(first, last, key, authors=AUTHORS, mix=shares))
        for setup, process in servers.items():
            lab.status(f"mixed: {label(*setup)}, warm-up")
            if warmups(lab):
                load(lab, process.url + "/", 16, script=scripts["news mix"], duration=2)
        for mix, script in scripts.items():
            for n, connections in enumerate(levels(lab)):
                order = list(SETUPS) if n % 2 == 0 else list(SETUPS)[::-1]
                for setup in order:
                    lab.status(f"mixed: {mix}, {label(*setup)}, {connections} connections")
                    process = servers[setup]
                    figures = load(
                        lab,
                        process.url + "/",
                        connections,
                        script=script,
                        pids=[process.pid],
                        duration=duration(lab),
                    )
                    runs[(mix, *setup)].append({**figures, "connections": connections})
        time_spent: dict[str, dict[str, Any]] = {}
        for setup, process in servers.items():
            best = capacity(runs[("without logins", *setup)])["connections"]
            if best is None:
                continue
            lab.status(f"mixed: {label(*setup)}, where the time goes")
            spent = cores_used(lab, process, scripts["without logins"], best)
            if profile.py_spy():
                name = f"mixed-{setup[0]}-{setup[1]}"
                spent["layers"] = profile.spied(
                    lab,
                    process,
                    process.url + "/",
                    scripts["without logins"],
                    name,
                    connections=best,
                    seconds=duration(lab),
                )
            time_spent[label(*setup)] = spent
    rows = [
        {
            "mix": mix,
            "server": server,
            "workers": workers,
            "runs": runs[(mix, server, workers)],
            **capacity(runs[(mix, server, workers)]),
        }
        for mix in MIXES
        for server, workers in SETUPS
    ]
    mixes = {mix: dict(shares) for mix, shares in MIXES.items()}
    return {
        "rows": rows,
        "articles": count,
        "mixes": mixes,
        "limit_ms": P99_LIMIT_MS,
        "time_spent": time_spent,
    }


PARTS = ("instance", "PostgreSQL", "Redis", "wrk", "idle")


def cores_used(lab: Lab, process: Process, script: Path, connections: int) -> dict[str, Any]:
    """One more run at ``connections``: its rate and p99, and the cores (CPU seconds per
    second) each part of the machine used meanwhile (``PARTS``)."""
    postmaster = int((lab.postgres.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    assert lab.redis.proc is not None  # the lab's Redis is running
    groups = {
        "instance": [process.pid],
        "PostgreSQL": [postmaster],
        "Redis": [lab.redis.proc.pid],
    }
    before = {name: scaling.cpu_seconds(pids) for name, pids in groups.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has been reaped
    machine = psutil.cpu_times()._asdict()
    started = time.monotonic()
    figures = load(lab, process.url + "/", connections, script=script, duration=duration(lab))
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = {
        name: (scaling.cpu_seconds(pids) - before[name]) / elapsed for name, pids in groups.items()
    }
    used["wrk"] = (
        after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    ) / elapsed
    used["idle"] = (1 - scaling.busy(machine, psutil.cpu_times()._asdict())) * (
        psutil.cpu_count() or 1
    )
    return {
        "connections": connections,
        "rps": figures["rps"],
        "p99_ms": figures["p99_ms"],
        "cores": {part: round(used[part], 2) for part in PARTS},
    }


def time_table(time_spent: dict[str, dict[str, Any]]) -> list[str]:
    """Where the time went at each setup's figure: the cores each part used."""
    lines = [
        "| setup (without logins) | connections | req/s (p99 ms) | " + " | ".join(PARTS) + " |",
        "| --- | ---: | ---: |" + " ---: |" * len(PARTS),
    ]
    for name, spent in time_spent.items():
        cores = " | ".join(f"{spent['cores'][part]:.2f}" for part in PARTS)
        lines.append(
            f"| {name} | {spent['connections']} | {spent['rps']:,.0f} ({spent['p99_ms']:.0f}) "
            f"| {cores} |"
        )
    return lines


def _summary(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
    """Each setup's figure, and the best row (None: no run within the limit)."""
    each = "; ".join(
        f"{label(r['server'], r['workers'])}: "
        + (
            f"{r['rps']:,.0f} req/s (p99 {r['p99_ms']:.0f} ms at {r['connections']} connections)"
            if r["rps"] is not None
            else "no run within 50 ms"
        )
        for r in rows
    )
    measured = [r for r in rows if r["rps"] is not None]
    return each, (max(measured, key=lambda r: r["rps"]) if measured else None)


def verdict(rows: list[dict[str, Any]], time_spent: dict[str, dict[str, Any]] | None = None) -> str:
    """From the rows of both mixes: the best setup's rate at p99 <= 50 ms for each, what
    the logins do to the news mix's p99 and, given ``time_spent``, where the best setup's
    time went."""
    news = [r for r in rows if r["mix"] == "news mix"]
    quiet = [r for r in rows if r["mix"] == "without logins"]
    news_each, news_best = _summary(news)
    quiet_each, quiet_best = _summary(quiet)
    lowest = min(r["runs"][0]["p99_ms"] for r in news)  # at the fewest connections
    if news_best is not None:
        head = (
            f"False: one instance carried the news mix at {news_best['rps']:,.0f} req/s with "
            f"p99 at or under 50 ms ({label(news_best['server'], news_best['workers'])}) "
            f"({news_each})"
        )
    else:
        head = (
            f"Not with logins in the mix: no setup kept the news mix's p99 within 50 ms even at "
            f"one connection (p99 {lowest:.0f} ms at best): 10 logins in 1,000 requests, each an "
            "argon2id hash, are its 99th percentile by themselves"
        )
    if quiet_best is None:
        tail = f"; without logins no setup did either ({quiet_each})"
    else:
        tail = (
            f"; without logins one instance carried {quiet_best['rps']:,.0f} req/s at p99 "
            f"{quiet_best['p99_ms']:.0f} ms ({label(quiet_best['server'], quiet_best['workers'])}, "
            f"{quiet_best['connections']} connections; {quiet_each})"
        )
    where = ""
    if quiet_best is not None and time_spent:
        spent = time_spent.get(label(quiet_best["server"], quiet_best["workers"]))
        if spent is not None:
            cores = spent["cores"]
            where = (
                f"; there the instance used {cores['instance']:.2f} cores, PostgreSQL "
                f"{cores['PostgreSQL']:.2f}, Redis {cores['Redis']:.2f} and wrk "
                f"{cores['wrk']:.2f}, {cores['idle']:.2f} idle"
            )
    return (
        head
        + tail
        + ", on 2 cores shared with PostgreSQL, Redis and the load generator"
        + where
        + "."
    )


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    rows = data["rows"]
    chart.lines_by_panel(
        chart_path,
        panels=list(data["mixes"]),
        series={
            label(server, workers): {
                r["mix"]: [(x["connections"], x["p99_ms"]) for x in r["runs"]]
                for r in rows
                if (r["server"], r["workers"]) == (server, workers)
            }
            for server, workers in SETUPS
        },
        labels={},
        xlabel="connections",
        ylabel="p99 ms",
    )
    levels_seen = [x["connections"] for x in rows[0]["runs"]]
    lines = [
        "req/s (p99 ms) by connections:",
        "",
        "| mix | setup | " + " | ".join(str(c) for c in levels_seen) + " | at p99 <= 50 ms |",
        "| --- | --- | " + " | ".join("---" for _ in levels_seen) + " | --- |",
    ]
    for r in rows:
        cells = [f"{x['rps']:,.0f} ({x['p99_ms']:.0f})" for x in r["runs"]]
        best = "none" if r["rps"] is None else f"**{r['rps']:,.0f}**"
        name = label(r["server"], r["workers"])
        lines.append(f"| {r['mix']} | {name} | " + " | ".join(cells) + f" | {best} |")
    lines += [
        "",
        f"{data['articles']:,} seeded articles; per 1,000 requests: "
        + "; ".join(
            f"{mix}: " + ", ".join(f"{kind} {share}" for kind, share in shares.items() if share)
            for mix, shares in data["mixes"].items()
        )
        + ".",
    ]
    spent = data.get("time_spent") or {}
    if spent:
        lines += [
            "",
            "Where the time went at each setup's figure without logins: one more run at its "
            "connections, the cores each part of the machine used meanwhile (CPU seconds per "
            "second; the machine has 2):",
            "",
            *time_table(spent),
        ]
        layers = {name: s["layers"] for name, s in spent.items() if s.get("layers")}
        if layers:
            lines += ["", "The instance's own time by layer (py-spy samples, share):", ""]
            lines += profile.layer_table(layers)
    return lines, verdict(rows, spent)

"""Claim: add indexes to speed up queries.

Newsdesk with the cache off (every request queries PostgreSQL), on the seeded articles, 8
connections, four list queries of the API: the newest page, an author's page (random
authors), a tag's page and a title search. Then every secondary index on ``articles`` is
dropped (its definition kept), the same runs repeat, and the indexes are built again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.lab import chart
from bench.lab.core import (
    Lab,
    hypercorn,
    load,
    random_ids_script,
    running,
    seeded,
    spread,
    sql,
    summarise,
    warm_up,
    warmups,
)

TITLE = "Indexes: lists and search with and without them"
CLAIM = "Indexes on the columns you filter and sort by keep queries fast as data grows."
CONNECTIONS = 8
QUERIES = {
    "newest page": "/api/v1/articles?per_page=20",
    "author page": "/api/v1/articles?per_page=20&author_id=",
    "tag page": "/api/v1/articles?per_page=20&tag=climate",
    "title search": "/api/v1/articles?per_page=20&q=lisbon",
}


QUICK_QUERIES = ("newest page", "title search")


def queries(lab: Lab) -> dict[str, str]:
    if lab.mode.quick:
        return {q: p for q, p in QUERIES.items() if q in QUICK_QUERIES}
    return QUERIES


def plan(lab: Lab) -> int:
    return 2 * len(queries(lab)) * (lab.mode.rounds + warmups(lab))


def _measure(lab: Lab, url: str, authors: Path, pid: int, label: str) -> dict[str, Any]:
    out = {}
    for name, path in queries(lab).items():
        lab.status(f"indexes: {name}, {label}")
        script = authors if name == "author page" else None
        target = url + ("/" if script else path)
        warm_up(lab, target, CONNECTIONS, script=script)
        runs = [
            load(lab, target, CONNECTIONS, script=script, pids=[pid])
            for _ in range(lab.mode.rounds)
        ]
        out[name] = summarise(runs)
    return out


def run(lab: Lab) -> dict[str, Any]:
    count = seeded(lab)
    author_ids = sql(lab, "SELECT min(author_id) AS lo, max(author_id) AS hi FROM articles")[0]
    authors = random_ids_script(
        lab, QUERIES["author page"], author_ids["lo"], author_ids["hi"], "authors"
    )
    definitions = sql(
        lab,
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'articles' "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint)",
    )
    server = hypercorn(lab, "service.asgi:app", lab.env(CACHE_ENABLED="false"), "indexes")
    with running(server):
        indexed = _measure(lab, server.url, authors, server.pid, "indexed")
        for d in definitions:
            sql(lab, f'DROP INDEX "{d["indexname"]}"')
        try:
            bare = _measure(lab, server.url, authors, server.pid, "no indexes")
        finally:
            lab.status("indexes: building them again")
            started = time.monotonic()
            for d in definitions:
                sql(lab, d["indexdef"])
            rebuild = time.monotonic() - started
    return {
        "articles": count,
        "indexes": [d["indexname"] for d in definitions],
        "rebuild_s": rebuild,
        "rows": [{"query": q, "indexed": indexed[q], "no_indexes": bare[q]} for q in queries(lab)],
    }


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    rows = data["rows"]
    chart.bars(
        chart_path,
        groups={
            r["query"]: {"indexed": spread(r["indexed"]), "no indexes": spread(r["no_indexes"])}
            for r in rows
        },
        ylabel="req/s (log scale)",
        log=True,
    )
    lines = [
        "| query | indexed req/s | p50 ms | no indexes req/s | p50 ms | speed-up |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    ratios = {}
    for r in rows:
        a, b = r["indexed"], r["no_indexes"]
        ratios[r["query"]] = a["rps"]["median"] / b["rps"]["median"]
        lines.append(
            f"| {r['query']} | {a['rps']['median']:,.0f} ({a['rps']['min']:,.0f} to "
            f"{a['rps']['max']:,.0f}) | {a['p50_ms']:.1f} | {b['rps']['median']:,.1f} "
            f"({b['rps']['min']:,.1f} to {b['rps']['max']:,.1f}) | {b['p50_ms']:.1f} | "
            f"**{ratios[r['query']]:.0f}x** |"
        )
    lines += [
        "",
        f"{data['articles']:,} articles; indexes dropped: {', '.join(data['indexes'])}; building "
        f"them again took {data['rebuild_s']:.1f} s.",
    ]
    low, high = min(ratios.values()), max(ratios.values())
    verdict = (
        f"True: at {data['articles']:,} articles "
        f"the indexed queries serve {low:.0f}x to {high:.0f}x the requests of the same queries "
        "without their indexes."
    )
    return lines, verdict

"""Claim: add indexes to speed up queries.

Newsdesk with the cache off (every request queries PostgreSQL), on the seeded articles, four
list queries of the API: the newest page, an author's page (a different author each time), a
tag's page and a title search, each timed one request at a time (the time to the full
response, after one untimed request). Then every secondary index on ``articles`` is dropped
(its definition kept), the same requests are timed again, and the indexes are built again.
Without indexes a request can take seconds, too few to count per second: the figures here are
per-request times.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.lab import chart
from bench.lab.core import Lab, hypercorn, running, seeded, sql

TITLE = "Indexes: lists and search with and without them"
CLAIM = "Indexes on the columns you filter and sort by keep queries fast as data grows."
QUERIES = {
    "newest page": "/api/v1/articles?per_page=20",
    "author page": "/api/v1/articles?per_page=20&author_id={author}",
    "tag page": "/api/v1/articles?per_page=20&tag=climate",
    "title search": "/api/v1/articles?per_page=20&q=lisbon",
}
QUICK_QUERIES = ("newest page", "title search")


def queries(lab: Lab) -> dict[str, str]:
    if lab.mode.quick:
        return {q: p for q, p in QUERIES.items() if q in QUICK_QUERIES}
    return QUERIES


def samples(lab: Lab) -> int:
    return max(lab.mode.rounds, 5 if not lab.mode.quick else 3)


def plan(lab: Lab) -> int:
    return 2 * len(queries(lab))


def _measure(lab: Lab, url: str, authors: tuple[int, int], label: str) -> dict[str, Any]:
    rng = random.Random(1)
    out = {}
    with httpx.Client(base_url=url, timeout=300) as client:
        for name, path in queries(lab).items():
            lab.status(f"indexes: {name}, {label}")
            times = []
            for n in range(samples(lab) + 1):
                target = path.format(author=rng.randint(*authors))
                started = time.perf_counter()
                response = client.get(target)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                if n:  # the first request warms the server and the page cache
                    times.append(elapsed)
            out[name] = {
                "median_ms": statistics.median(times),
                "min_ms": min(times),
                "max_ms": max(times),
                "samples": len(times),
            }
            if lab.bar is not None:
                lab.bar.update(1)
    return out


def run(lab: Lab) -> dict[str, Any]:
    count = seeded(lab)
    bounds = sql(lab, "SELECT min(author_id) AS lo, max(author_id) AS hi FROM articles")[0]
    authors = (int(bounds["lo"]), int(bounds["hi"]))
    definitions = sql(
        lab,
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'articles' "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint)",
    )
    server = hypercorn(lab, "service.asgi:app", lab.env(CACHE_ENABLED="false"), "indexes")
    with running(server):
        indexed = _measure(lab, server.url, authors, "indexed")
        for d in definitions:
            sql(lab, f'DROP INDEX "{d["indexname"]}"')
        try:
            bare = _measure(lab, server.url, authors, "no indexes")
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


def _spread(figures: dict[str, float]) -> tuple[float, float, float]:
    return figures["median_ms"], figures["min_ms"], figures["max_ms"]


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    rows = data["rows"]
    chart.bars(
        chart_path,
        groups={
            r["query"]: {"indexed": _spread(r["indexed"]), "no indexes": _spread(r["no_indexes"])}
            for r in rows
        },
        ylabel="ms per request (log scale)",
        log=True,
    )
    lines = [
        "| query | indexed, ms per request | no indexes, ms per request | slower without |",
        "| --- | --- | --- | --- |",
    ]
    ratios = {}
    for r in rows:
        a, b = r["indexed"], r["no_indexes"]
        ratios[r["query"]] = b["median_ms"] / a["median_ms"]
        lines.append(
            f"| {r['query']} | {a['median_ms']:,.1f} ({a['min_ms']:,.1f} to {a['max_ms']:,.1f}) "
            f"| {b['median_ms']:,.1f} ({b['min_ms']:,.1f} to {b['max_ms']:,.1f}) | "
            f"**{ratios[r['query']]:,.0f}x** |"
        )
    samples_per = rows[0]["indexed"]["samples"]
    lines += [
        "",
        f"{data['articles']:,} articles; the median of {samples_per} requests each (min to "
        f"max); indexes dropped: {', '.join(data['indexes'])}; building them again took "
        f"{data['rebuild_s']:.1f} s.",
    ]
    low, high = min(ratios.values()), max(ratios.values())
    verdict = (
        f"True: at {data['articles']:,} articles the same list and search requests take "
        f"{low:,.0f}x to {high:,.0f}x longer without their indexes."
    )
    return lines, verdict

"""Claim: paginate large lists (the guides use offset pages, ``page`` and ``per_page``, with a
total count).

Two levels on the seeded articles. Through the API (the cache off, 8 connections): page 1,
the deepest offset page Newsdesk serves (row 10,000) and a cursor page at the same depth. In
SQL (asyncpg, the median of 5 timings after one warm-up): the newest-first list at growing
depths with ``OFFSET`` vs a keyset cursor (``WHERE (published_at, id) < ...``), and the ways
to give a total: ``COUNT(*)``, a count capped at 1,001 rows (what Newsdesk runs) and the
planner's estimate.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.lab import chart
from bench.lab.core import Lab, hypercorn, load, running, seeded, summarise, table, warm_up, warmups
from service.domain.articles import MAX_OFFSET, encode_cursor

TITLE = "Pagination: offset vs cursor on deep pages, and what COUNT(*) costs"
CLAIM = "Paginate with page numbers and a total count (`paginate()`: offset, limit, COUNT)."
CONNECTIONS = 8
PER_PAGE = 20
ORDER = "ORDER BY published_at DESC, id DESC"


def plan(lab: Lab) -> int:
    return 3 * (lab.mode.rounds + warmups(lab))


async def _timings(url: str, count: int) -> dict[str, Any]:
    conn = await asyncpg.connect(url)

    async def timed(statement: str, *args: Any) -> float:
        await conn.fetch(statement, *args)  # warm-up
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            await conn.fetch(statement, *args)
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)

    try:
        depths = []
        for fraction in (0.001, 0.01, 0.1, 0.5, 0.9):
            depth = int(count * fraction)
            row = await conn.fetchrow(
                f"SELECT published_at, id FROM articles {ORDER} OFFSET $1 LIMIT 1", depth - 1
            )
            offset_ms = await timed(
                f"SELECT id, title, published_at FROM articles {ORDER} OFFSET $1 LIMIT $2",
                depth,
                PER_PAGE,
            )
            keyset_ms = await timed(
                "SELECT id, title, published_at FROM articles "
                f"WHERE (published_at, id) < ($1, $2) {ORDER} LIMIT $3",
                row["published_at"],
                row["id"],
                PER_PAGE,
            )
            depths.append({"depth": depth, "offset_ms": offset_ms, "keyset_ms": keyset_ms})
        counts = {
            "COUNT(*)": await timed("SELECT count(*) FROM articles"),
            "COUNT(*) of one tag": await timed(
                "SELECT count(*) FROM articles WHERE tags @> ARRAY['climate']"
            ),
            "count capped at 1,001 rows": await timed(
                "SELECT count(*) FROM (SELECT 1 FROM articles LIMIT 1001) AS capped"
            ),
            "planner estimate (reltuples)": await timed(
                "SELECT reltuples FROM pg_class WHERE relname = 'articles'"
            ),
        }
        cursor = await conn.fetchrow(
            f"SELECT published_at, id FROM articles {ORDER} OFFSET $1 LIMIT 1", MAX_OFFSET - 1
        )
    finally:
        await conn.close()
    return {
        "depths": depths,
        "counts": counts,
        "cursor": encode_cursor(cursor["published_at"], cursor["id"]),
    }


def run(lab: Lab) -> dict[str, Any]:
    count = seeded(lab)
    lab.status("pages: SQL timings")
    timings = asyncio.run(_timings(lab.database_url, count))
    last_page = MAX_OFFSET // PER_PAGE
    paths = {
        "page 1": f"/api/v1/articles?per_page={PER_PAGE}",
        f"offset page {last_page} (row {MAX_OFFSET:,})": (
            f"/api/v1/articles?per_page={PER_PAGE}&page={last_page}"
        ),
        f"cursor at row {MAX_OFFSET:,}": (
            f"/api/v1/articles?per_page={PER_PAGE}&cursor={timings['cursor']}"
        ),
    }
    server = hypercorn(lab, "service.asgi:app", lab.env(CACHE_ENABLED="false"), "pages")
    rows = []
    with running(server):
        for name, path in paths.items():
            lab.status(f"pages: {name}")
            warm_up(lab, server.url + path, CONNECTIONS)
            runs = [
                load(lab, server.url + path, CONNECTIONS, pids=[server.pid])
                for _ in range(lab.mode.rounds)
            ]
            rows.append({"page": name, **summarise(runs)})
    return {"articles": count, "api": rows, **timings}


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    depths = data["depths"]
    chart.lines_by_panel(
        chart_path,
        panels=["newest-first page of 20, SQL"],
        series={
            "offset": {
                "newest-first page of 20, SQL": [(d["depth"], d["offset_ms"]) for d in depths]
            },
            "keyset": {
                "newest-first page of 20, SQL": [(d["depth"], d["keyset_ms"]) for d in depths]
            },
        },
        labels={"offset": "OFFSET n LIMIT 20", "keyset": "keyset cursor"},
        xlabel="rows skipped",
        ylabel="ms (median of 5)",
    )
    lines = ["Through the API:", "", *table(data["api"], "page", "page"), "", "In SQL:", ""]
    lines += ["| rows skipped | OFFSET ms | keyset ms | ratio |", "| --- | --- | --- | --- |"]
    for d in depths:
        lines.append(
            f"| {d['depth']:,} | {d['offset_ms']:.2f} | {d['keyset_ms']:.2f} | "
            f"{d['offset_ms'] / d['keyset_ms']:.0f}x |"
        )
    lines += ["", "| total | ms (median of 5) |", "| --- | --- |"]
    lines += [f"| {name} | {ms:.2f} |" for name, ms in data["counts"].items()]
    deepest = depths[-1]
    full_count = data["counts"]["COUNT(*)"]
    capped = data["counts"]["count capped at 1,001 rows"]
    api = {r["page"]: r for r in data["api"]}
    first, offset_page, cursor_page = (api[k]["rps"]["median"] for k in api)
    lines += [
        "",
        f"{data['articles']:,} articles. Through the API the deepest offset page serves "
        f"{offset_page / first:.2f}x the requests of page 1, the cursor page at the same depth "
        f"{cursor_page / first:.2f}x. Newsdesk refuses offset pages past row {MAX_OFFSET:,} and "
        "gives every page a `next_cursor`.",
    ]
    verdict = (
        f"Offset pages and exact totals stop scaling: skipping {deepest['depth']:,} rows costs "
        f"{deepest['offset_ms']:.0f} ms against {deepest['keyset_ms']:.2f} ms for a cursor, and "
        f"`COUNT(*)` takes {full_count:.0f} ms per request against {capped:.2f} ms for a count "
        "capped at 1,001 rows; use cursors and capped or estimated totals."
    )
    return lines, verdict

"""Claim: paginate large lists (the guides use offset pages, ``page`` and ``per_page``, with a
total count).

Two levels on the seeded articles. Through the API (the cache off, 8 connections): page 1,
the deepest offset page Newsdesk serves (row 10,000) and a cursor page at the same depth. In
SQL (asyncpg, the median of 5 timings after one warm-up): the newest-first list at growing
depths with ``OFFSET`` vs a keyset cursor (``WHERE (published_at, id) < ...``), and the ways
to give a total: ``COUNT(*)``, a count capped at 1,001 rows (what Newsdesk runs) and the
planner's estimate.

And at scale (the target of ``docs/PAGINATION.md``): the p50 latency of page 1 and of a cursor
page 90% of the way down the list grows at most 1.5x from 1,000 articles (a second database)
to the seeded count; one Hypercorn worker per database, the cache on (each its own Redis
database), 4 connections, the two servers taking turns round after round (each round starting
with the other one). Beside it, the statements each of those requests sends (captured from
``service.domain.articles``), each timed alone: the median of 200 executions after 20.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from bench.lab import chart
from bench.lab.core import (
    Lab,
    Process,
    hypercorn,
    load,
    prepare,
    running,
    seeded,
    summarise,
    table,
    warm_up,
    warmups,
)
from service.cli.seed import plain_url
from service.core.settings import normalise_database_url
from service.domain import articles as data
from service.domain.articles import MAX_OFFSET, encode_cursor

TITLE = "Pagination: offset vs cursor on deep pages, and what COUNT(*) costs"
CLAIM = "Paginate with page numbers and a total count (`paginate()`: offset, limit, COUNT)."
CONNECTIONS = 8
PER_PAGE = 20
ORDER = "ORDER BY published_at DESC, id DESC"
SMALL = 1_000  # articles in the second database of the scale comparison
DEPTH = 0.9  # the deep cursor page starts this far down the list
SCALE_CONNECTIONS = 4
TARGET_RATIO = 1.5
SCALE_PAGES = ("page-1", "deep-cursor")


def plan(lab: Lab) -> int:
    return (3 + 2 * len(SCALE_PAGES)) * (lab.mode.rounds + warmups(lab))


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


def _kind(statement: str) -> str:
    if statement.startswith("EXPLAIN"):
        return "planner estimate (EXPLAIN)"
    if "count(*)" in statement:
        return f"capped count (up to {data.EXACT_COUNT_LIMIT + 1:,} rows)"
    if "reltuples" in statement:
        return "table estimate (pg_class.reltuples)"
    return "page query"


async def _statements(url: str, cursor: str) -> dict[str, list[dict[str, Any]]]:
    """The statements page 1 and the cursor page send (captured from
    ``service.domain.articles``), each timed alone: median ms of 200 after 20 warm-ups."""
    engine = create_async_engine(normalise_database_url(url))
    sent: list[tuple[str, tuple[object, ...]]] = []

    def capture(conn: object, cur: object, statement: str, params: Any, *rest: object) -> None:
        sent.append((statement, tuple(params or ())))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    filters = data.Filters()
    captured: dict[str, list[tuple[str, tuple[object, ...]]]] = {}
    try:
        async with AsyncSession(engine) as session:
            await data.list_page(session, filters=filters, page=1, per_page=PER_PAGE)
            captured["page-1"], sent[:] = list(sent), []
            await data.list_after(session, filters=filters, cursor=cursor, per_page=PER_PAGE)
            captured["deep-cursor"] = list(sent)
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(plain_url(url))
    times: dict[str, list[dict[str, Any]]] = {}
    try:
        for page, statements in captured.items():
            times[page] = []
            for statement, params in statements:
                prepared = await conn.prepare(statement)
                samples = []
                for i in range(220):
                    begun = time.perf_counter()
                    await prepared.fetch(*params)
                    if i >= 20:
                        samples.append((time.perf_counter() - begun) * 1000)
                times[page].append(
                    {"statement": _kind(statement), "ms": statistics.median(samples)}
                )
    finally:
        await conn.close()
    return times


async def _deep_cursor(url: str, count: int) -> str:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            f"SELECT published_at, id FROM articles {ORDER} OFFSET $1 LIMIT 1", int(count * DEPTH)
        )
    finally:
        await conn.close()
    return encode_cursor(row["published_at"], row["id"])


def _scale(lab: Lab, count: int) -> dict[str, Any]:
    """Page 1 and the deep cursor page on ``SMALL`` articles and on ``count``, side by side."""
    lab.status(f"pages: seeding {SMALL:,} articles")
    small_url = lab.postgres.ensure_database("lab_small")
    prepare(small_url, SMALL, progress=False)
    sizes = {SMALL: (small_url, lab.redis.url(1)), count: (lab.database_url, lab.redis.url())}
    servers: dict[int, Process] = {}
    paths: dict[int, dict[str, str]] = {}
    statements: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for size, (url, redis_url) in sizes.items():
        cursor = asyncio.run(_deep_cursor(url, size))
        base = f"/api/v1/articles?per_page={PER_PAGE}"
        paths[size] = {"page-1": base, "deep-cursor": f"{base}&cursor={cursor}"}
        statements[size] = asyncio.run(_statements(url, cursor))
        env = lab.env(DATABASE_URL=url, REDIS_URL=redis_url)
        servers[size] = hypercorn(lab, "service.asgi:app", env, f"pages-{size}")
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    with running(*servers.values()):
        for size, server in servers.items():
            for path in paths[size].values():
                answer = httpx.get(server.url + path, timeout=30)
                if answer.status_code != 200 or len(answer.json()["articles"]) != PER_PAGE:
                    raise RuntimeError(f"{path} on {size:,}: {answer.status_code} {answer.text}")
                warm_up(lab, server.url + path, SCALE_CONNECTIONS)
        for round_no in range(lab.mode.rounds):
            order = list(servers) if round_no % 2 == 0 else list(servers)[::-1]
            for page in SCALE_PAGES:
                for size in order:
                    lab.status(f"pages: {page} on {size:,}")
                    server = servers[size]
                    figures = load(
                        lab, server.url + paths[size][page], SCALE_CONNECTIONS, pids=[server.pid]
                    )
                    runs.setdefault((page, size), []).append(figures)
    rows = [{"page": p, "articles": s, **summarise(r)} for (p, s), r in runs.items()]
    return {"rows": rows, "small": SMALL, "large": count, "statements": statements}


def _scale_lines(scale: dict[str, Any]) -> tuple[list[str], str]:
    small, large = scale["small"], scale["large"]
    p50 = {(r["page"], r["articles"]): r["p50_ms"] for r in scale["rows"]}
    lines = [
        "",
        f"At scale (p50 latency through the API, {SCALE_CONNECTIONS} connections, "
        f"{small:,} vs {large:,} articles; target: at most {TARGET_RATIO}x):",
        "",
        f"| page | p50 ms, {small:,} | p50 ms, {large:,} | ratio | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    ratios = {}
    for page in SCALE_PAGES:
        a, b = p50[(page, small)], p50[(page, large)]
        ratios[page] = b / a
        met = "met" if b / a <= TARGET_RATIO else "missed"
        lines.append(f"| {page} | {a:.2f} | {b:.2f} | **{b / a:.2f}x** | {met} |")
    lines += [
        "",
        f"| page | statement | ms, {small:,} | ms, {large:,} |",
        "| --- | --- | --- | --- |",
    ]
    # JSON keys: the sizes come back as strings from a results file
    timed = {int(size): pages for size, pages in scale["statements"].items()}
    for page in SCALE_PAGES:
        a_ms = {t["statement"]: t["ms"] for t in timed[small][page]}
        b_ms = {t["statement"]: t["ms"] for t in timed[large][page]}
        for name in dict.fromkeys([*a_ms, *b_ms]):
            a_text = f"{a_ms[name]:.2f}" if name in a_ms else "-"
            b_text = f"{b_ms[name]:.2f}" if name in b_ms else "-"
            lines.append(f"| {page} | {name} | {a_text} | {b_text} |")
    worst = max(ratios.values())
    clause = (
        f"from {small:,} to {large:,} articles page 1 and a deep cursor page slow by at most "
        f"{worst:.2f}x ({'within' if worst <= TARGET_RATIO else 'past'} the "
        f"{TARGET_RATIO}x target)"
    )
    return lines, clause


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
    return {"articles": count, "api": rows, **timings, "scale": _scale(lab, count)}


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
    if "scale" in data:  # runs from before this case have none
        more, clause = _scale_lines(data["scale"])
        lines += more
        verdict += f" With both: {clause}."
    return lines, verdict

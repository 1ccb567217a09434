"""Pagination benchmark: ``python -m bench.pagination``.

The target: the p50 latency of ``GET /api/v1/articles`` page 1 and of a cursor page
deep in the list, with 1,000 and with 1,000,000 articles seeded by the CLI; the ratio 1M/1k at
most 1.5 for both.

An embedded PostgreSQL (no fsync) and Redis in a temporary directory; two databases, each
migrated (``alembic upgrade head``) and seeded with ``python -m service seed --count N``; one
Hypercorn worker per database (``hypercorn.toml``, uvloop), read rate limit out of the way.
The deep cursor points 90% of the way down the newest-first list (built with
``service.domain.articles.encode_cursor`` from the row at that offset). Load: ``wrk -t1 -c4`` on
loopback, each run preceded by a 2 s warm-up; the two servers take turns, round after round,
each round starting with the other one; each figure is the median of the rounds. Results go to
``bench/results/pagination-<timestamp>.json`` and ``docs/PAGINATION.md``.

Environment: ``BENCH_DURATION`` (seconds per run, default 10), ``BENCH_ROUNDS`` (3),
``BENCH_CONNECTIONS`` (4), ``BENCH_SMALL`` (1000) and ``BENCH_LARGE`` (1000000) articles.
Exit status 0 when both ratios meet the target, 1 when one does not, 2 when it cannot run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped,unused-ignore]
import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from bench.common import HypercornServer, parse_wrk, prepare, wrk, wrk_missing
from bench.common import machine as common_machine
from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis
from service.cli.seed import plain_url
from service.core.settings import normalise_database_url
from service.domain import articles as data

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REPORT = ROOT / "docs" / "PAGINATION.md"

TARGET_RATIO = 1.5
PER_PAGE = 20
DEPTH = 0.9  # the deep cursor page starts this far down the list
WARMUP_SECONDS = 2
ENDPOINTS = ("page-1", "deep-cursor")


@dataclass
class Run:
    size: str
    endpoint: str
    round: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def _label(count: int) -> str:
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if count >= unit and count % unit == 0:
            return f"{count // unit}{name}"
    return str(count)


def ApiServer(env: dict[str, str], log: Path) -> HypercornServer:
    """One Hypercorn worker with ``hypercorn.toml`` serving Newsdesk; ready on ``/readyz``."""
    return HypercornServer(
        "service.asgi:app",
        env,
        log,
        ready_path="/readyz",
        options=["--config", "hypercorn.toml"],
    )


def deep_cursor(url: str, count: int) -> tuple[str, int]:
    """A cursor ``DEPTH`` of the way down the newest-first list, and its offset."""
    offset = int(count * DEPTH)

    async def fetch() -> tuple[datetime, int]:
        conn = await asyncpg.connect(url)
        try:
            row = await conn.fetchrow(
                "SELECT published_at, id FROM articles ORDER BY published_at DESC, id DESC "
                "OFFSET $1 LIMIT 1",
                offset,
            )
        finally:
            await conn.close()
        return row["published_at"], row["id"]

    published_at, article_id = asyncio.run(fetch())
    return data.encode_cursor(published_at, article_id), offset


def _kind(sql: str) -> str:
    if sql.startswith("EXPLAIN"):
        return "planner estimate (EXPLAIN)"
    if "count(*)" in sql:
        return f"capped count (up to {data.EXACT_COUNT_LIMIT + 1:,} rows)"
    if "reltuples" in sql:
        return "table estimate (pg_class.reltuples)"
    return "page query"


async def _statement_times(url: str, cursor: str) -> dict[str, list[dict[str, object]]]:
    """The statements each endpoint sends (captured from ``service.domain.articles``), each timed
    on its own: median of 200 sequential executions from asyncpg, without load."""
    engine = create_async_engine(normalise_database_url(url))
    sent: list[tuple[str, tuple[object, ...]]] = []

    def capture(conn: object, cur: object, sql: str, params: Any, *rest: object) -> None:
        sent.append((sql, tuple(params or ())))

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
    try:
        times: dict[str, list[dict[str, object]]] = {}
        for endpoint, statements in captured.items():
            times[endpoint] = []
            for sql, params in statements:
                prepared = await conn.prepare(sql)
                samples = []
                for i in range(220):
                    begun = time.perf_counter()
                    await prepared.fetch(*params)
                    if i >= 20:  # the first runs warm the caches
                        samples.append(time.perf_counter() - begun)
                times[endpoint].append(
                    {"statement": _kind(sql), "ms": statistics.median(samples) * 1000}
                )
        return times
    finally:
        await conn.close()


def statement_times(url: str, cursor: str) -> dict[str, list[dict[str, object]]]:
    return asyncio.run(_statement_times(url, cursor))


def check_pages(base: str, paths: dict[str, str], count: int) -> dict[str, object]:
    """Each endpoint answers 200 with a full page; what page 1 says about the total."""
    first = httpx.get(base + paths["page-1"], timeout=30)
    deep = httpx.get(base + paths["deep-cursor"], timeout=30)
    for name, response in (("page-1", first), ("deep-cursor", deep)):
        if response.status_code != 200 or len(response.json()["articles"]) != PER_PAGE:
            raise RuntimeError(
                f"{name} on {count} articles: {response.status_code} {response.text}"
            )
    page = first.json()
    if deep.json()["articles"][0]["id"] == page["articles"][0]["id"]:
        raise RuntimeError("the deep cursor page is the first page")
    return {"total": page["total"], "total_is_estimate": page["total_is_estimate"]}


def summarise(runs: list[Run], sizes: list[str]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for endpoint in ENDPOINTS:
        for size in sizes:
            mine = [r for r in runs if r.size == size and r.endpoint == endpoint]
            rows.append(
                {
                    "endpoint": endpoint,
                    "size": size,
                    "p50_ms": statistics.median(r.p50_ms for r in mine),
                    "p50_ms_min": min(r.p50_ms for r in mine),
                    "p50_ms_max": max(r.p50_ms for r in mine),
                    "p99_ms": statistics.median(r.p99_ms for r in mine),
                    "rps_median": statistics.median(r.requests_per_second for r in mine),
                    "errors": sum(r.errors for r in mine),
                    "requests": sum(r.requests for r in mine),
                }
            )
    return rows


def ratios(rows: list[dict[str, object]], small: str, large: str) -> dict[str, dict[str, float]]:
    def figure(size: str, endpoint: str, key: str) -> float:
        row = next(r for r in rows if r["size"] == size and r["endpoint"] == endpoint)
        return float(row[key])  # type: ignore[arg-type]

    return {
        endpoint: {
            "p50": figure(large, endpoint, "p50_ms") / figure(small, endpoint, "p50_ms"),
            "p99": figure(large, endpoint, "p99_ms") / figure(small, endpoint, "p99_ms"),
        }
        for endpoint in ENDPOINTS
    }


def machine() -> dict[str, str]:
    return common_machine(("flask", "hypercorn", "sqlalchemy", "asyncpg", "uvloop", "pgserver"))


def write_report(result: dict[str, object], json_path: Path) -> None:
    rows: list[dict[str, object]] = result["summary"]  # type: ignore[assignment]
    rat: dict[str, dict[str, float]] = result["ratios"]  # type: ignore[assignment]
    cfg: dict[str, object] = result["config"]  # type: ignore[assignment]
    mach: dict[str, str] = result["machine"]  # type: ignore[assignment]
    dbs: dict[str, dict[str, object]] = result["databases"]  # type: ignore[assignment]
    small, large = str(cfg["small"]), str(cfg["large"])

    def row(size: str, endpoint: str) -> dict[str, object]:
        return next(r for r in rows if r["size"] == size and r["endpoint"] == endpoint)

    lines = [
        "# Pagination at scale",
        "",
        f"Generated by `python -m bench.pagination` on {result['started']}; raw figures in "
        f"`{json_path.relative_to(ROOT)}`.",
        "",
        "Target: the p50 latency of `GET /api/v1/articles` page 1 and of a "
        f"cursor page deep in the list grows at most {TARGET_RATIO}x from "
        f"{dbs[small]['articles']:,} to {dbs[large]['articles']:,} articles.",
        "",
        f"Each database was migrated and seeded by `python -m service seed --count N` "
        f"({dbs[large]['articles']:,} articles in {dbs[large]['seed_seconds']:.0f} s, "
        "including `VACUUM (ANALYZE)`) on an embedded PostgreSQL without fsync, and served by "
        "its own Hypercorn worker (`hypercorn.toml`, uvloop) with the read rate limit out of "
        f"the way. `wrk -t1 -c{cfg['connections']}` for {cfg['duration']} s per run on "
        f"loopback, after a {WARMUP_SECONDS} s warm-up; the two servers take turns for "
        f"{cfg['rounds']} rounds; figures are medians of the rounds (p50 min to max in "
        f"brackets). {mach['cpus']} cores, {mach['platform']}.",
        "",
        f"- page 1: `/api/v1/articles?per_page={PER_PAGE}`;",
        f"- deep cursor: `/api/v1/articles?per_page={PER_PAGE}&cursor=...`, the cursor "
        f"pointing {DEPTH:.0%} of the way down the newest-first list (after article "
        f"{dbs[small]['cursor_offset']:,} of {dbs[small]['articles']:,}, and "
        f"{dbs[large]['cursor_offset']:,} of {dbs[large]['articles']:,}).",
        "",
        f"| endpoint | p50 ms, {small} | p50 ms, {large} | p50 ratio | p99 ms, {small} | "
        f"p99 ms, {large} | req/s, {small} | req/s, {large} | errors | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for endpoint in ENDPOINTS:
        a, b = row(small, endpoint), row(large, endpoint)
        ratio = rat[endpoint]["p50"]
        lines.append(
            f"| {endpoint} | {a['p50_ms']:.2f} ({a['p50_ms_min']:.2f} to {a['p50_ms_max']:.2f}) "
            f"| {b['p50_ms']:.2f} ({b['p50_ms_min']:.2f} to {b['p50_ms_max']:.2f}) "
            f"| **{ratio:.2f}x** | {a['p99_ms']:.2f} | {b['p99_ms']:.2f} "
            f"| {a['rps_median']:,.0f} | {b['rps_median']:,.0f} "
            f"| {int(a['errors']) + int(b['errors'])} "  # type: ignore[call-overload]
            f"| {'met' if ratio <= TARGET_RATIO else 'missed'} (<= {TARGET_RATIO}x) |"
        )
    timed: dict[str, dict[str, dict[str, float]]] = {
        size: {
            endpoint: {str(t["statement"]): float(t["ms"]) for t in statements}
            for endpoint, statements in dbs[size]["statements"].items()  # type: ignore[attr-defined]
        }
        for size in (small, large)
    }
    lines += [
        "",
        "Where the time goes in PostgreSQL: the statements each request sends (captured from "
        "`service.domain.articles`), each timed alone from asyncpg without load, median of 200 "
        "round trips in ms:",
        "",
        f"| endpoint | statement | {small} | {large} |",
        "| --- | --- | --- | --- |",
    ]
    for endpoint in ENDPOINTS:
        a_times, b_times = timed[small][endpoint], timed[large][endpoint]
        for statement in dict.fromkeys([*a_times, *b_times]):
            a_ms, b_ms = a_times.get(statement), b_times.get(statement)
            lines.append(
                f"| {endpoint} | {statement} | {'-' if a_ms is None else f'{a_ms:.2f}'} "
                f"| {'-' if b_ms is None else f'{b_ms:.2f}'} |"
            )
        lines.append(
            f"| {endpoint} | **all** | {sum(a_times.values()):.2f} | {sum(b_times.values()):.2f} |"
        )
    lines += [
        "",
        f"Page 1 answers `total` {dbs[large]['total']:,} on {large} "
        f"(estimate: {str(dbs[large]['total_is_estimate']).lower()}) and "
        f"{dbs[small]['total']:,} on {small} "
        f"(estimate: {str(dbs[small]['total_is_estimate']).lower()}).",
        "",
        "Reading the figures (plans checked by `tests/test_seed.py` on 100,000 articles):",
        "",
        "- the deep cursor page is one keyset query, `(published_at, id) < (cursor)` down "
        "`ix_articles_newest`: a few more index pages on a bigger tree, nothing that grows "
        "with the depth;",
        "- page 1 reads its 20 rows through `ix_articles_newest` too, then counts the matches "
        f"up to {data.EXACT_COUNT_LIMIT + 1:,} (an index-only scan of `pk_articles`) and, past "
        f"{data.EXACT_COUNT_LIMIT:,}, reads PostgreSQL's row estimate instead (one more round "
        "trip: `pg_class.reltuples` without filters, an `EXPLAIN` with them). That work "
        f"stops growing at {data.EXACT_COUNT_LIMIT:,} articles; the rest of the difference is "
        "the extra round trip and a bigger index, and with one Hypercorn worker and "
        f"PostgreSQL sharing {mach['cpus']} cores with wrk, every extra millisecond of work "
        "per request also queues the requests behind it.",
        "",
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in mach.items() if k not in ("cpus", "platform"))
        + ".",
        "",
    ]
    REPORT.write_text("\n".join(lines))


def main() -> int:
    if wrk_missing():
        return 2
    duration = int(os.environ.get("BENCH_DURATION", "10"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "4"))
    counts = {
        _label(n): n
        for n in (
            int(os.environ.get("BENCH_SMALL", "1000")),
            int(os.environ.get("BENCH_LARGE", "1000000")),
        )
    }
    small, large = list(counts)
    wall = time.perf_counter()
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    work = Path(tempfile.mkdtemp(prefix="newsdesk-pagination-"))
    postgres = redis = None
    servers: dict[str, HypercornServer] = {}
    try:
        postgres = EmbeddedPostgres(work / "postgres", durable=False).start()
        redis = EmbeddedRedis(work / "redis", durable=False).start()
        databases: dict[str, dict[str, object]] = {}
        paths: dict[str, dict[str, str]] = {}
        for db_no, (size, count) in enumerate(counts.items()):
            url = postgres.ensure_database(f"pagination_{size.lower()}")
            print(f"seeding {count:,} articles ({size})", flush=True)
            seconds = prepare(url, count)
            print(f"  {count:,} articles in {seconds:.1f} s", flush=True)
            cursor, offset = deep_cursor(url, count)
            paths[size] = {
                "page-1": f"/api/v1/articles?per_page={PER_PAGE}",
                "deep-cursor": f"/api/v1/articles?per_page={PER_PAGE}&cursor={cursor}",
            }
            databases[size] = {"articles": count, "seed_seconds": seconds, "cursor_offset": offset}
            env = {
                "DATABASE_URL": url,
                "REDIS_URL": redis.url(db_no),
                "ENV": "test",
                "PASSWORD_RESET_URL": "http://127.0.0.1/reset-password#token={token}",
                "LOG_LEVEL": "WARNING",
                "RATE_LIMIT_READ": "1000000/minute",
            }
            servers[size] = ApiServer(env, work / f"api-{size}.log")
            databases[size].update(check_pages(servers[size].url, paths[size], count))
            databases[size]["statements"] = statement_times(url, cursor)
        runs: list[Run] = []
        total = rounds * len(ENDPOINTS) * len(servers)
        for round_no in range(1, rounds + 1):
            order = [small, large] if round_no % 2 else [large, small]
            for endpoint in ENDPOINTS:
                for size in order:
                    target = servers[size].url + paths[size][endpoint]
                    print(
                        f"[{len(runs) + 1:>2}/{total}] round {round_no} {endpoint:<11} {size:<3}",
                        end=" ",
                        flush=True,
                    )
                    wrk(target, WARMUP_SECONDS, connections, None)
                    rps, p50, p99, errors, requests = parse_wrk(
                        wrk(target, duration, connections, None)
                    )
                    print(
                        f"{rps:>7,.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
                        f"errors {errors}",
                        flush=True,
                    )
                    runs.append(Run(size, endpoint, round_no, rps, p50, p99, errors, requests))
        rows = summarise(runs, [small, large])
        result: dict[str, object] = {
            "started": started,
            "config": {
                "duration": duration,
                "rounds": rounds,
                "connections": connections,
                "per_page": PER_PAGE,
                "depth": DEPTH,
                "small": small,
                "large": large,
                "target_ratio": TARGET_RATIO,
            },
            "machine": machine(),
            "databases": databases,
            "runs": [asdict(r) for r in runs],
            "summary": rows,
            "ratios": ratios(rows, small, large),
        }
        result["wall_seconds"] = round(time.perf_counter() - wall, 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        json_path = RESULTS / f"pagination-{started}.json"
        json_path.write_text(json.dumps(result, indent=2))
        write_report(result, json_path)
        met = True
        for endpoint, values in result["ratios"].items():  # type: ignore[attr-defined]
            ok = values["p50"] <= TARGET_RATIO
            met = met and ok
            print(
                f"{endpoint:<11} p50 {large}/{small} = {values['p50']:.2f}x "
                f"({'met' if ok else 'MISSED'}: target <= {TARGET_RATIO}x); "
                f"p99 {values['p99']:.2f}x"
            )
        print(f"wrote {json_path.relative_to(ROOT)} and {REPORT.relative_to(ROOT)}")
        print(f"wall time {time.perf_counter() - wall:.0f} s")
        return 0 if met else 1
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

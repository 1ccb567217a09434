"""Cache benchmark: ``python -m bench.cache`` (``make bench-cache``).

One embedded PostgreSQL and Redis, 100,000 articles seeded by the CLI, each server one
Hypercorn worker (uvloop) on loopback, ``wrk -t1 -c32``:

- ``article hit``: ``GET /api/v1/articles/<id>``, one id (every request a cache hit);
- ``article miss``: random ids over all 100,000 articles, the cache emptied (epoch bumped)
  before each run, so nearly every request misses (the lookup, a primary read, the store);
- ``quart redis get``: a bare Quart handler doing one Redis GET of the same cached body;
- ``list cached`` vs ``list uncached``: page 1 of ``GET /api/v1/articles`` with the cache on,
  and on a second server with ``CACHE_ENABLED=false``.

Runs take turns for ``BENCH_ROUNDS`` rounds (order rotated), each after a 2 s warm-up; medians.
Writes ``bench/results/cache-<timestamp>.json`` and ``docs/CACHE.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import redis

from bench.common import ROOT, HypercornServer, machine, parse_wrk, prepare, wrk, wrk_missing
from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis

ARTICLES = 100_000
REPORT = ROOT / "docs" / "CACHE.md"
RANDOM_ID = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/api/v1/articles/" .. math.random(1, {n}))
end
"""


def _server(app: str, env: dict[str, str], log: Path) -> HypercornServer:
    return HypercornServer(
        app,
        env,
        log,
        ready_path="/healthz" if app == "service.asgi:app" else "/bench/hello",
        options=["--worker-class", "uvloop", "--keep-alive", "75"],
    )


def main() -> int:
    if wrk_missing():
        return 2
    duration = int(os.environ.get("BENCH_DURATION", "10"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    work = Path(tempfile.mkdtemp(prefix="newsdesk-bench-cache-"))
    postgres = EmbeddedPostgres(work / "postgres", durable=False).start()
    redis_server = EmbeddedRedis(work / "redis", durable=False).start()
    servers: dict[str, HypercornServer] = {}
    try:
        db_url = postgres.ensure_database("cache")
        prepare(db_url, ARTICLES)
        env = {
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_server.url(),
            "ENV": "test",
            "PASSWORD_RESET_URL": "http://127.0.0.1/reset-password#token={token}",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_READ": "100000000/minute",
            "CACHE_TTL_ARTICLE": "3600",
        }
        servers["cached"] = _server("service.asgi:app", env, work / "cached.log")
        servers["uncached"] = _server(
            "service.asgi:app", {**env, "CACHE_ENABLED": "false"}, work / "uncached.log"
        )
        hot = f"{servers['cached'].url}/api/v1/articles/1"
        wrk(hot, 1, 1)  # fills the entry the hit runs and the Quart handler read
        client = redis.Redis.from_url(redis_server.url())
        keys: list[bytes] = client.keys("cache:*:article:1:*")  # type: ignore[assignment]
        client.close()
        assert len(keys) == 1, keys
        servers["quart"] = _server(
            "bench.baselines.quart_redis:app",
            {**env, "BENCH_KEY": keys[0].decode()},
            work / "quart.log",
        )
        script = work / "random.lua"
        script.write_text(RANDOM_ID.replace("{n}", str(ARTICLES)))
        scenarios: dict[str, tuple[str, Path | None]] = {
            "article hit": (hot, None),
            "article miss": (servers["cached"].url + "/", script),
            "quart redis get": (servers["quart"].url + "/bench/cached", None),
            "list cached": (servers["cached"].url + "/api/v1/articles?per_page=20", None),
            "list uncached": (servers["uncached"].url + "/api/v1/articles?per_page=20", None),
        }
        names = list(scenarios)
        runs: list[dict[str, object]] = []
        for round_no in range(1, rounds + 1):
            shift = (round_no - 1) % len(names)
            for name in names[shift:] + names[:shift]:
                url, lua = scenarios[name]
                if name == "article miss":  # start cold: every earlier entry is invalid
                    with redis.Redis.from_url(redis_server.url()) as fresh:
                        fresh.incr("cache:epoch")
                wrk(url, 2, 32, lua)
                rps, p50, p99, errors, requests = parse_wrk(wrk(url, duration, 32, lua))
                print(
                    f"round {round_no} {name:<16} {rps:>8,.0f} req/s  p50 {p50:6.2f} ms  "
                    f"p99 {p99:6.2f} ms  errors {errors}",
                    flush=True,
                )
                runs.append(
                    {
                        "scenario": name,
                        "round": round_no,
                        "rps": rps,
                        "p50_ms": p50,
                        "p99_ms": p99,
                        "errors": errors,
                        "requests": requests,
                    }
                )
        summary = {}
        for name in names:
            mine = [r for r in runs if r["scenario"] == name]
            rps_values = [float(r["rps"]) for r in mine]  # type: ignore[arg-type]
            summary[name] = {
                "rps": statistics.median(rps_values),
                "rps_min": min(rps_values),
                "rps_max": max(rps_values),
                "p50_ms": statistics.median(float(r["p50_ms"]) for r in mine),  # type: ignore[arg-type]
                "p99_ms": statistics.median(float(r["p99_ms"]) for r in mine),  # type: ignore[arg-type]
                "errors": sum(int(r["errors"]) for r in mine),  # type: ignore[call-overload]
            }
        ratios = {
            "hit/miss": summary["article hit"]["rps"] / summary["article miss"]["rps"],
            "hit/quart redis get": summary["article hit"]["rps"]
            / summary["quart redis get"]["rps"],
            "list cached/uncached": summary["list cached"]["rps"] / summary["list uncached"]["rps"],
        }
        result = {
            "started": started,
            "articles": ARTICLES,
            "duration": duration,
            "rounds": rounds,
            "machine": machine(("flask", "quart", "hypercorn", "redis", "uvloop")),
            "runs": runs,
            "summary": summary,
            "ratios": ratios,
        }
        (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
        json_path = ROOT / "bench" / "results" / f"cache-{started}.json"
        json_path.write_text(json.dumps(result, indent=2))
        write_report(result, json_path)
        print(json.dumps(ratios, indent=2))
        return 0
    finally:
        for server in servers.values():
            server.stop()
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)


def write_report(result: dict[str, object], json_path: Path) -> None:
    summary: dict[str, dict[str, float]] = result["summary"]  # type: ignore[assignment]
    ratios: dict[str, float] = result["ratios"]  # type: ignore[assignment]
    mach: dict[str, str] = result["machine"]  # type: ignore[assignment]
    lines = [
        "# Cache",
        "",
        f"Generated by `make bench-cache` (`python -m bench.cache`) on {result['started']}; raw "
        f"figures in `{json_path.relative_to(ROOT)}`.",
        "",
        f"{mach['cpus']} cores; {result['articles']:,} articles seeded by the CLI; each server one "
        f"Hypercorn worker (uvloop); `wrk -t1 -c32` for {result['duration']} s per run after a "
        f"2 s warm-up, {result['rounds']} rounds with the order rotated; medians (min to max).",
        "",
        "| scenario | req/s | p50 ms | p99 ms | errors |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | {row['rps']:,.0f} ({row['rps_min']:,.0f} to {row['rps_max']:,.0f}) | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {int(row['errors'])} |"
        )
    lines += [
        "",
        f"- hit / miss: **{ratios['hit/miss']:.2f}x**",
        f"- Newsdesk hit path / bare Quart Redis GET: **{ratios['hit/quart redis get']:.2f}x** "
        "(target: at least 0.8x)",
        f"- list page 1 cached / uncached: **{ratios['list cached/uncached']:.2f}x**",
        "",
        "The miss scenario requests random ids over all articles after emptying the cache "
        "(epoch bump), so nearly every request misses (the lookup, a read of the primary and "
        "the store).",
        "",
        "A hit on one article or on the ranking is answered before Flask "
        "(`service/fastpath.py`): one Lua call that reads the generation, the entry and counts "
        "the read rate limit, then the stored bytes. The Quart handler does one plain Redis GET "
        "and no rate limiting, inside Quart's own request handling. List pages go through "
        "Flask on a hit too.",
        "",
    ]
    REPORT.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())

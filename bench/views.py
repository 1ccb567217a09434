"""View-count benchmark: ``python -m bench.views`` (``make bench-views``).

Newsdesk's buffered counters (one Redis increment per view, flushed every second in
batches, ``service.domain.view_counts``) against the guides' design (one ``record_view`` job
per view, ``bench/baselines/job_per_view.py``): the same app otherwise, one Hypercorn worker
each, one arq worker beside the server under test, embedded PostgreSQL and Redis, 1,000 articles.

Each run reads 50 cached articles at random for ``BENCH_DURATION`` seconds (``wrk -c32``);
the views answered 200 are counted in the server's access log (which also catches requests
still in flight when wrk stops); then the run waits until that many views have reached
``articles.views`` (at most ``BENCH_DRAIN`` seconds), and two seconds more to see that nothing
is counted twice. Reported per design: views per second through the API (requests
answered / wrk's duration), views recorded per second end to end (answered / time until the
last one is in PostgreSQL) and views lost (answered minus recorded; negative would be
double counting). ``BENCH_ROUNDS`` rounds, designs alternating; medians.
``BENCH_API_WORKERS`` (default 1) sets the Hypercorn worker processes of both servers.

Writes ``bench/results/views-<timestamp>.json`` and ``docs/VIEWS.md``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import (
    ROOT,
    HypercornServer,
    Worker,
    machine,
    parse_wrk,
    prepare,
    wrk,
    wrk_missing,
)
from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis

ARTICLES = 1_000
ARTICLE_200 = re.compile(r'"GET /api/v1/articles/\d+ [^"]*" 200 ')
HOT = 50
HOT_IDS = f"""
math.randomseed(1)
request = function()
  return wrk.format("GET", "/api/v1/articles/" .. math.random(1, {HOT}))
end
"""
REPORT = ROOT / "docs" / "VIEWS.md"
DESIGNS = {
    "buffered counters": ("service.asgi:app", "worker:PeriodicSettings"),  # the view flush
    "job per view": (
        "bench.baselines.job_per_view:app",
        "bench.baselines.job_per_view:WorkerSettings",
    ),
}


def answered_views(access_log: Path) -> int:
    """Article reads answered 200, from the server's access log (written after each
    response, so requests still in flight when wrk stops are counted too)."""
    if not access_log.exists():
        return 0
    return sum(1 for line in access_log.open() if ARTICLE_200.search(line))


def main() -> int:
    if wrk_missing():
        return 2
    duration = int(os.environ.get("BENCH_DURATION", "10"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    drain_limit = float(os.environ.get("BENCH_DRAIN", "180"))
    api_workers = int(os.environ.get("BENCH_API_WORKERS", "1"))
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    work = Path(tempfile.mkdtemp(prefix="newsdesk-bench-views-"))
    # A durable PostgreSQL (fsync on, as in production): every commit waits for its WAL.
    postgres = EmbeddedPostgres(work / "postgres", durable=True).start()
    redis_server = EmbeddedRedis(work / "redis", durable=False).start()
    servers: dict[str, HypercornServer] = {}
    try:
        db_url = postgres.ensure_database("views")
        prepare(db_url, ARTICLES)
        env = {
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_server.url(),
            "ENV": "test",
            "PASSWORD_RESET_URL": "http://127.0.0.1/reset-password#token={token}",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_READ": "100000000/minute",
            "CACHE_TTL_ARTICLE": "3600",
            "VIEW_FLUSH_SECONDS": "1",
            "PROCESS_SWEEP_SECONDS": "60",
            "PROCESS_STALE_SECONDS": "100000",
        }
        access = {name: work / f"{name.replace(' ', '-')}.access" for name in DESIGNS}
        for name, (app, _settings) in DESIGNS.items():
            servers[name] = HypercornServer(
                app,
                env,
                work / f"{name.replace(' ', '-')}.log",
                ready_path="/healthz",
                options=[
                    "--worker-class",
                    "uvloop",
                    "--keep-alive",
                    "75",
                    "--access-logfile",
                    str(access[name]),
                ],
                workers=api_workers,
            )
        script = work / "hot.lua"
        script.write_text(HOT_IDS)

        def total() -> int:
            return int(postgres.psql("SELECT coalesce(sum(views), 0) FROM articles", "views"))

        runs: list[dict[str, object]] = []
        names = list(DESIGNS)
        for round_no in range(1, rounds + 1):
            order = names if round_no % 2 else names[::-1]
            for name in order:
                url = servers[name].url + "/"
                worker = Worker(DESIGNS[name][1], env, work / "worker.log")
                try:
                    time.sleep(3)  # the worker is up
                    wrk(url, 2, 32, script)  # warm-up: fills the cache entries
                    deadline = time.monotonic() + drain_limit
                    before = total()
                    while time.monotonic() < deadline:  # the warm-up's views drained
                        time.sleep(1)
                        now = total()
                        if now == before:
                            break
                        before = now
                    logged = answered_views(access[name])
                    rps, _p50, _p99, errors, _requests = parse_wrk(wrk(url, duration, 32, script))
                    seconds = float(duration)
                    time.sleep(0.5)  # the last responses reach the access log
                    ok = answered_views(access[name]) - logged
                    sent_at = time.monotonic()
                    recorded = total() - before
                    while recorded < ok and time.monotonic() - sent_at < drain_limit:
                        time.sleep(0.1)
                        recorded = total() - before
                    drain = time.monotonic() - sent_at
                    time.sleep(2)
                    recorded = total() - before
                finally:
                    worker.stop()
                row = {
                    "design": name,
                    "round": round_no,
                    "wrk_rps": rps,
                    "errors": errors,
                    "answered": ok,
                    "api_seconds": seconds,
                    "drain_seconds": drain,
                    "recorded": recorded,
                    "lost": ok - recorded,
                    "api_views_per_s": ok / seconds,
                    "recorded_views_per_s": recorded / (seconds + drain),
                }
                runs.append(row)
                print(
                    f"round {round_no} {name:<18} {row['api_views_per_s']:>8,.0f} views/s through "
                    f"the API, {row['recorded_views_per_s']:>8,.0f} recorded/s end to end, "
                    f"drain {drain:5.1f} s, lost {row['lost']}",
                    flush=True,
                )
        summary: dict[str, dict[str, float]] = {}
        for name in names:
            mine = [r for r in runs if r["design"] == name]
            api = [float(r["api_views_per_s"]) for r in mine]  # type: ignore[arg-type]
            rec = [float(r["recorded_views_per_s"]) for r in mine]  # type: ignore[arg-type]
            summary[name] = {
                "api_views_per_s": statistics.median(api),
                "api_min": min(api),
                "api_max": max(api),
                "recorded_views_per_s": statistics.median(rec),
                "recorded_min": min(rec),
                "recorded_max": max(rec),
                "drain_seconds": statistics.median(float(r["drain_seconds"]) for r in mine),  # type: ignore[arg-type]
                "lost": sum(int(r["lost"]) for r in mine),  # type: ignore[call-overload]
            }
        a, b = summary["buffered counters"], summary["job per view"]
        ratios = {
            "api": a["api_views_per_s"] / b["api_views_per_s"],
            "recorded": a["recorded_views_per_s"] / b["recorded_views_per_s"],
        }
        result = {
            "started": started,
            "duration": duration,
            "api_workers": api_workers,
            "rounds": rounds,
            "machine": machine(("flask", "hypercorn", "arq", "redis")),
            "runs": runs,
            "summary": summary,
            "ratios": ratios,
        }
        (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
        json_path = ROOT / "bench" / "results" / f"views-{started}.json"
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
    count = int(result.get("api_workers", 1))  # type: ignore[call-overload]
    workers = "one Hypercorn worker" if count == 1 else f"{count} Hypercorn worker processes"
    report = REPORT if count == 1 else REPORT.with_name(f"VIEWS-{count}-workers.md")
    lines = [
        "# View counts: buffered counters vs one job per view",
        "",
        f"Generated by `make bench-views` (`python -m bench.views`) on {result['started']}; raw "
        f"figures in `{json_path.relative_to(ROOT)}`.",
        "",
        f"{mach['cpus']} cores, Python {mach['python']}, arq {mach['arq']}, Flask "
        f"{mach['flask']}; each design {workers} (uvloop) and one arq worker "
        "(the default 10 concurrent jobs), embedded PostgreSQL with fsync on and Redis, "
        f"{ARTICLES:,} articles. Each run "
        f"reads {HOT} cached articles at random for {result['duration']} s (`wrk -c32`), "
        "counts the views answered 200 in the server's access log, then waits until that "
        "many are in `articles.views`. Both servers write an access log (the same cost for "
        f"both). {result['rounds']} rounds, designs alternating; medians (min to max).",
        "",
        "| design | views/s through the API | views/s recorded end to end | drain after the "
        "last request (s) | views lost |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in summary.items():
        lines.append(
            f"| {name} | {row['api_views_per_s']:,.0f} ({row['api_min']:,.0f} to "
            f"{row['api_max']:,.0f}) | {row['recorded_views_per_s']:,.0f} "
            f"({row['recorded_min']:,.0f} to {row['recorded_max']:,.0f}) | "
            f"{row['drain_seconds']:.1f} | {int(row['lost'])} |"
        )
    lines += [
        "",
        f"- through the API: buffered / job per view = **{ratios['api']:.2f}x**",
        f"- recorded end to end: buffered / job per view = **{ratios['recorded']:.2f}x** "
        "(target: at least 10x)",
        "",
        "Through the API, a view costs the buffered design nothing extra on a cache hit (the "
        "increment rides in the cache lookup's Lua call) and the job design one `enqueue_job` "
        "(several Redis commands) per request. End to end, the job design then needs one "
        "job and one PostgreSQL transaction per view, while the flush moves all views of a "
        "second in one transaction per 1,000 articles. Both lost nothing here; the job "
        "design loses views whenever Redis refuses the enqueue, the buffered one while Redis "
        "is unreachable (neither can count without Redis).",
        "",
        "`BENCH_API_WORKERS=2 make bench-views` runs both servers with two Hypercorn workers "
        "(`WEB_CONCURRENCY`'s default on 2 cores) and writes `docs/VIEWS-2-workers.md`.",
        "",
    ]
    report.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())

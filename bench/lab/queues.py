"""Claim: hand work to a task queue; the guides' example sends one task per article view.

Newsdesk's buffered counters (one Redis ``HINCRBY`` per view in the request, a cron job
moving the counts into PostgreSQL every second in recorded batches) against the guides'
design (the same app, but every view enqueues a ``record_view`` arq job that adds one in its
own transaction, ``bench/baselines/job_per_view.py``). One Hypercorn worker and one arq
worker each; 50 hot cached articles read by 32 connections. Views answered 200 are counted
in the server's access log; a run ends when every answered view is in ``articles.views``
(or after a bounded wait), and 2 s later (0.5 s in the quick pass) the total is checked
again for double counting. ``LAB_API_WORKERS=2`` gives both servers two Hypercorn workers
(``WEB_CONCURRENCY``'s default on 2 cores; one otherwise).

Then the queue's real work, scaled out (``bench.lab.drain``): 5,000 queued articles to
summarise, drained by 1, 2 and 4 bulk worker processes with the CPU step in a thread, and by
one process with 1 and 2 CPU processes (the default here), while the API serves a steady read
load (wrk, 8 connections pausing 20 ms between requests); the first setup keeps arq's 0.5 s
poll and 10 jobs (stopped after 25 s, its drain projected from its rate).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from bench.lab import chart, drain
from bench.lab.core import (
    Lab,
    Worker,
    hypercorn,
    load,
    random_ids_script,
    running,
    seeded,
    sql,
    stats,
)

TITLE = "Task queues: one job per view vs buffered counters"
CLAIM = "Offload work such as counting article views to a task queue, one task per event."
CONNECTIONS = 32
HOT = 50
DRAIN_LIMIT = 120.0
ARTICLE_200 = re.compile(r'"GET /api/v1/articles/\d+ [^"]*" 200 ')
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
    with access_log.open() as lines:
        return sum(1 for line in lines if ARTICLE_200.search(line))


def plan(lab: Lab) -> int:
    return len(DESIGNS) * lab.mode.rounds + drain.plan(lab)


def _total(lab: Lab) -> int:
    return int(sql(lab, "SELECT coalesce(sum(views), 0)::bigint AS n FROM articles")[0]["n"])


def run(lab: Lab) -> dict[str, Any]:
    seeded(lab)
    script = random_ids_script(lab, "/api/v1/articles/", 1, HOT, "views-hot")
    env = lab.env(
        CACHE_TTL_ARTICLE="3600",
        VIEW_FLUSH_SECONDS="1",
        # The seeded pending articles stay pending: processing them would load the worker.
        PROCESS_STALE_SECONDS="1000000000",
    )
    settle = 0.5 if lab.mode.quick else 2.0
    runs: list[dict[str, Any]] = []
    # One design at a time: both designs' workers read the same arq queue.
    for name, (app, settings) in DESIGNS.items():
        slug = name.replace(" ", "-")
        access = lab.work / f"{slug}.access"
        lab.status(f"queues: starting {name}")
        workers = os.environ.get("LAB_API_WORKERS", "1")
        options = ("--access-logfile", str(access), "--workers", workers)  # the last --workers
        server = hypercorn(lab, app, env, slug, options=options)
        worker = Worker(settings, env, lab.work / f"{slug}-worker.log")
        with running(server, worker):
            time.sleep(settle * 2)  # the worker is up
            for round_no in range(lab.mode.rounds):
                lab.status(f"queues: {name}")
                before, logged = _total(lab), answered_views(access)
                figures = load(lab, server.url + "/", CONNECTIONS, script=script, pids=[server.pid])
                time.sleep(0.5)  # the last responses reach the access log
                answered = answered_views(access) - logged
                sent = time.monotonic()
                recorded = _total(lab) - before
                while recorded < answered and time.monotonic() - sent < DRAIN_LIMIT:
                    time.sleep(0.05)
                    recorded = _total(lab) - before
                drained_in = time.monotonic() - sent
                time.sleep(settle)  # anything counted twice would show now
                recorded = _total(lab) - before
                seconds = float(lab.mode.duration)
                runs.append(
                    {
                        "design": name,
                        "round": round_no + 1,
                        "answered": answered,
                        "recorded": recorded,
                        "lost": answered - recorded,
                        "drain_s": drained_in,
                        "api_views_per_s": answered / seconds,
                        "recorded_views_per_s": recorded / (seconds + drained_in),
                        "errors": figures["errors"],
                    }
                )
    summary = {}
    for name in DESIGNS:
        mine = [r for r in runs if r["design"] == name]
        summary[name] = {
            "api_views_per_s": stats([r["api_views_per_s"] for r in mine]),
            "recorded_views_per_s": stats([r["recorded_views_per_s"] for r in mine]),
            "drain_s": stats([r["drain_s"] for r in mine]),
            "lost": sum(r["lost"] for r in mine),
            "errors": sum(r["errors"] for r in mine),
        }
    lab.status("queues: draining a backlog")
    server = hypercorn(lab, DESIGNS["buffered counters"][0], env, "drain-api")
    with running(server):
        scale_out = drain.run(lab, server, env)
    return {
        "runs": runs,
        "summary": summary,
        "api_workers": int(os.environ.get("LAB_API_WORKERS", "1")),
        "scale_out": scale_out,
    }


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    s = data["summary"]

    def triple(name: str, key: str) -> tuple[float, float, float]:
        v = s[name][key]
        return v["median"], v["min"], v["max"]

    chart.bars(
        chart_path,
        groups={
            "views/s through the API": {n: triple(n, "api_views_per_s") for n in s},
            "views/s recorded end to end": {n: triple(n, "recorded_views_per_s") for n in s},
        },
        ylabel="views per second",
    )
    lines = [
        "| design | views/s through the API | views/s recorded end to end | drain after the "
        "load, s | views lost | errors |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, v in s.items():
        api, rec, drained_in = v["api_views_per_s"], v["recorded_views_per_s"], v["drain_s"]
        lines.append(
            f"| {name} | {api['median']:,.0f} ({api['min']:,.0f} to {api['max']:,.0f}) | "
            f"{rec['median']:,.0f} ({rec['min']:,.0f} to {rec['max']:,.0f}) | "
            f"{drained_in['median']:.1f} | {v['lost']} | {v['errors']} |"
        )
    buffered, per_view = s["buffered counters"], s["job per view"]
    api = buffered["api_views_per_s"]["median"] / per_view["api_views_per_s"]["median"]
    if not per_view["recorded_views_per_s"]["median"]:  # its worker recorded nothing at all
        lines += [
            "",
            f"The job-per-view worker recorded no view in this run ({per_view['lost']} lost): "
            "a failed run of the baseline, not a figure. Measure it again "
            "(`make bench-views`).",
        ]
        return lines, "No verdict from this run: the job-per-view baseline recorded nothing."
    recorded = (
        buffered["recorded_views_per_s"]["median"] / per_view["recorded_views_per_s"]["median"]
    )
    lines += [
        "",
        f"Buffered / job per view: **{api:.2f}x** views per second through the API, "
        f"**{recorded:.2f}x** recorded end to end; views lost: {buffered['lost']} buffered, "
        f"{per_view['lost']} job per view (a negative figure would be double counting).",
    ]
    verdict = (
        f"A queue is the right place for slow work, not for one job per event: per-view jobs "
        f"made the queue the bottleneck (views reach PostgreSQL {recorded:.1f}x slower than "
        f"with buffered counters, the backlog draining for "
        f"{per_view['drain_s']['median']:.0f} s after the load stopped)."
    )
    if "scale_out" in data:
        more, drained = drain.section(data["scale_out"], chart_path.with_name("queues-drain.png"))
        lines += ["", *more]
        verdict += " " + drained
    return lines, verdict

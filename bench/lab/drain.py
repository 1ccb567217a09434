"""The task-queue claim's second half: draining a backlog of article processing, scaled out.

First with the API idle (the machine to the workers): the CPU step's one-core limit (the
analyser alone, one process, on the backlog's own texts), then one bulk worker process with
the step in a thread, with one and with two CPU processes, and two worker processes. Then
with the API serving a steady read load (wrk, 8 connections, each waiting 20 ms between
requests, hot cached articles) while 1, 2 and 4 worker processes and the CPU pool drain
5,000 queued articles; the API's p99 is compared with the same load before any worker ran.

Each setup: pending articles (copies of seeded ones) are queued on the bulk queue, then
bulk-only workers (``WORKER_ROLES=bulk``) start; the rate runs from the first article
processed to the last. CPU seconds of the workers (their CPU processes included),
PostgreSQL (every backend), Redis and the API are sampled over the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from arq.connections import RedisSettings, create_pool

from bench.lab import chart
from bench.lab.core import ROOT, Lab, Process, parse_wrk, sql
from service.core import keys

BACKLOG = 5_000
IDLE_BACKLOG = 2_000  # the API-idle setups measure a rate, not the drain of the claim's 5,000
LIMIT = 150.0  # seconds a drain may take
CAPPED_LIMIT = 25.0  # the poll-capped setup is stopped early; its drain is projected
HOT = 50
CONNECTIONS = 8
DELAY_MS = 20
STEP_SAMPLE = 300  # texts the one-core limit is measured on

THREAD = {"WORKER_CPU_PROCESSES": "0"}
CAPPED = {"WORKER_POLL_SECONDS": "0.5", "WORKER_MAX_JOBS": "10", **THREAD}

# (label, worker processes, their environment, the API serving meanwhile)
SETUPS: list[tuple[str, int, dict[str, str], bool]] = [
    ("API idle: 1 process, thread", 1, THREAD, False),
    ("API idle: 1 process + 1 CPU process", 1, {"WORKER_CPU_PROCESSES": "1"}, False),
    ("API idle: 2 processes, thread", 2, THREAD, False),
    ("API idle: 1 process + 2 CPU processes", 1, {"WORKER_CPU_PROCESSES": "2"}, False),
    ("1 process, arq's 0.5 s poll, 10 jobs, thread", 1, CAPPED, True),
    ("1 process, thread", 1, THREAD, True),
    ("2 processes, thread", 2, THREAD, True),
    ("4 processes, thread", 4, THREAD, True),
    ("1 process + 1 CPU process", 1, {"WORKER_CPU_PROCESSES": "1"}, True),
    ("1 process + 2 CPU processes (default)", 1, {"WORKER_CPU_PROCESSES": "2"}, True),
]


def plan(lab: Lab) -> int:
    return len(SETUPS) + 2


class CpuMeter:
    """CPU seconds used by each group of processes (roots and all their descendants, sampled
    every 0.25 s so short-lived ones count too) between ``start`` and ``stop``."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.owner: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for group, roots in self.groups.items():
            for root in roots:
                with contextlib.suppress(psutil.Error):
                    proc = psutil.Process(root)
                    for p in [proc, *proc.children(recursive=True)]:
                        with contextlib.suppress(psutil.Error):
                            t = p.cpu_times()
                            total = t.user + t.system
                            self.first.setdefault(p.pid, 0.0 if self._started else total)
                            self.last[p.pid] = total
                            self.owner[p.pid] = group

    _started = False

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._sample()

    def start(self) -> None:
        self._sample()
        self._started = True
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._sample()
        used: dict[str, float] = dict.fromkeys(self.groups, 0.0)
        for pid, last in self.last.items():
            used[self.owner[pid]] += last - self.first.get(pid, 0.0)
        return used


def _script(lab: Lab) -> Path:
    script = lab.work / "drain-reads.lua"
    script.write_text(
        "math.randomseed(7)\n"
        "request = function()\n"
        f'  return wrk.format("GET", "/api/v1/articles/" .. math.random(1, {HOT}))\n'
        "end\n"
        f"delay = function() return {DELAY_MS} end\n"
    )
    return script


def _wrk(url: str, script: Path, seconds: int) -> subprocess.Popen[str]:
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    return subprocess.Popen(
        [*command, "-s", str(script), url], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )


def _finish(wrk: subprocess.Popen[str]) -> dict[str, float]:
    if wrk.poll() is None:
        wrk.send_signal(signal.SIGINT)  # wrk stops and prints what it measured
    out, _ = wrk.communicate(timeout=30)
    rps, p50, p99, errors, requests = parse_wrk(out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors, "requests": requests}


def _backlog(lab: Lab, size: int) -> tuple[int, int]:
    """``size`` new pending articles and their jobs on the bulk queue; their id range."""
    rows = sql(
        lab,
        "INSERT INTO articles (author_id, title, content, status, version) "
        "SELECT author_id, title, content, 'pending', 1 FROM articles "
        f"WHERE status = 'processed' ORDER BY id LIMIT {size} RETURNING id",
    )
    ids = sorted(r["id"] for r in rows)

    async def enqueue() -> None:
        pool = await create_pool(RedisSettings.from_dsn(lab.redis.url()))
        try:
            for start in range(0, len(ids), 500):
                await asyncio.gather(
                    *(
                        pool.enqueue_job(
                            "process_article",
                            i,
                            1,
                            _job_id=keys.process_job_id(i, 1),
                            _queue_name=keys.QUEUE_BULK,
                        )
                        for i in ids[start : start + 500]
                    )
                )
        finally:
            await pool.aclose()

    asyncio.run(enqueue())
    return ids[0], ids[-1]


def _processed(lab: Lab, low: int, high: int) -> int:
    rows = sql(
        lab,
        f"SELECT count(*) AS n FROM articles WHERE id BETWEEN {low} AND {high} "
        "AND status <> 'pending'",
    )
    return int(rows[0]["n"])


def _pids(process: Any) -> list[int]:
    proc = getattr(process, "proc", None)
    return [proc.pid] if proc is not None else []


def step_rate(lab: Lab) -> dict[str, float]:
    """The CPU step's one-core limit: articles/s of the analyser alone, in one process, on
    ``STEP_SAMPLE`` of the backlog's texts (CPU time, so nothing else running counts)."""
    rows = sql(
        lab,
        "SELECT title, content FROM articles WHERE status = 'processed' "
        f"ORDER BY id LIMIT {STEP_SAMPLE}",
    )
    code = (
        "import json, sys, time\n"
        "from service.domain.text_analysis import analyse\n"
        "texts = json.load(sys.stdin)\n"
        "analyse(*texts[0])\n"
        "started = time.process_time()\n"
        "for title, content in texts: analyse(title, content)\n"
        "print((time.process_time() - started) / len(texts))\n"
    )
    texts = [[r["title"], r["content"]] for r in rows]
    import json

    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    per_article = float(out.strip())
    return {"cpu_ms": per_article * 1000, "per_s": 1 / per_article}


def run(lab: Lab, server: Process, env: dict[str, str]) -> dict[str, Any]:
    """Every setup in turn; ``server`` (the API, already serving ``env``'s stack) is loaded
    with reads for the setups that say so."""
    script = _script(lab)
    lab.status("drain: the CPU step's one-core limit")
    step = step_rate(lab)
    if lab.bar is not None:
        lab.bar.update(1)
    lab.status("drain: the API's idle p99")
    idle = _finish_after(_wrk(server.url, script, 10 if lab.mode.quick else 20))
    if lab.bar is not None:
        lab.bar.update(1)
    rows = [_drain(lab, server, env, script, setup) for setup in SETUPS]
    step_after = step_rate(lab)  # the machine's speed may drift over the run: both are kept
    return {"idle": idle, "rows": rows, "backlog": BACKLOG, "step": step, "step_after": step_after}


def _drain(
    lab: Lab,
    server: Process,
    env: dict[str, str],
    script: Path,
    setup: tuple[str, int, dict[str, str], bool],
) -> dict[str, Any]:
    label, processes, extra, loaded = setup
    lab.status(f"drain: {label}")
    postgres, redis = _pids(lab.postgres), _pids(lab.redis)
    size = BACKLOG if loaded else IDLE_BACKLOG
    low, high = _backlog(lab, size)
    worker_env = {
        **os.environ,
        **env,
        "WORKER_ROLES": "bulk",
        "WORKER_METRICS_PORT": "0",
        **extra,
    }
    limit = CAPPED_LIMIT if extra.get("WORKER_POLL_SECONDS") == "0.5" else LIMIT
    wrk = _wrk(server.url, script, int(limit) + 120) if loaded else None
    log = open(lab.work / f"drain-{label.replace(' ', '-')}.log", "ab")  # noqa: SIM115
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "service", "worker"],
            env=worker_env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(processes)
    ]
    meter = CpuMeter(
        {
            "workers": [w.pid for w in workers],
            "postgres": postgres,
            "redis": redis,
            "api": [server.pid],
        }
    )
    began = time.monotonic()
    first = last = None
    done = start_count = 0
    meter_started = False
    load: dict[str, float] = {}
    try:
        while time.monotonic() - began < limit + 20:
            done = _processed(lab, low, high)
            now = time.monotonic()
            if done and first is None:
                first, start_count = now, done
                meter.start()
                meter_started = True
            if done >= size:
                last = now
                break
            if first is not None and now - first > limit:
                break
            time.sleep(0.2)
        end = time.monotonic()
        cpu = meter.stop() if meter_started else {}
        if wrk is not None:
            load = _finish(wrk)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(60)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        log.close()
        if wrk is not None and wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    seconds = (end - first) if first is not None else float("nan")
    # The rate counts from the first article seen done (the articles done by then are not
    # in it): the workers' start-up is not part of it.
    rate = (done - start_count) / seconds if seconds else 0.0
    # Anything still queued (an early stop) must not feed the next setup.
    sql(lab, f"UPDATE articles SET status = 'failed' WHERE id BETWEEN {low} AND {high}")
    _clear_queue(lab)
    if lab.bar is not None:
        lab.bar.update(1)
    return {
        "setup": label,
        "processes": processes,
        "cpu_processes": int(extra.get("WORKER_CPU_PROCESSES", "0")),
        "loaded": loaded,
        "backlog": size,
        "processed": done,
        "complete": last is not None,
        "seconds": seconds,
        "per_s": rate,
        "drain_s": seconds if last is not None else size / rate if rate else None,
        "cores": {k: v / seconds for k, v in cpu.items()},
        "api": load,
    }


def _finish_after(wrk: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = wrk.communicate(timeout=120)
    rps, p50, p99, errors, requests = parse_wrk(out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors, "requests": requests}


def _clear_queue(lab: Lab) -> None:
    async def clear() -> None:
        pool = await create_pool(RedisSettings.from_dsn(lab.redis.url()))
        try:
            await pool.delete(keys.QUEUE_BULK)
        finally:
            await pool.aclose()

    asyncio.run(clear())


def _limit(row: dict[str, Any], step_per_s: float) -> str:
    """What held the setup back, read from its figures."""
    cores = row["cores"]
    workers = cores.get("workers", 0.0)
    if row["setup"].endswith("arq's 0.5 s poll, 10 jobs, thread"):
        return f"arq's poll: {row['per_s']:.0f}/s at {workers:.2f} of a core"
    if row["cpu_processes"] == 0 and row["processes"] == 1:
        return f"the GIL: one core ({workers:.2f})"
    if row["cpu_processes"] == 1 and row["processes"] == 1:
        share = row["per_s"] / step_per_s
        return f"the CPU process: {share:.2f}x the one-core limit"
    total = sum(cores.values())
    if total >= 1.7:
        return f"the 2 cores ({total:.2f} busy; PostgreSQL {cores.get('postgres', 0):.2f})"
    return f"{total:.2f} cores busy"


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    rows, idle = data["rows"], data["idle"]
    idle_p99 = idle["p99_ms"]
    step = data["step"]["per_s"]
    quiet = [r for r in rows if not r["loaded"]]
    loaded = [r for r in rows if r["loaded"]]
    chart.bars(
        chart_path,
        groups={
            "articles/s": {r["setup"]: (r["per_s"], r["per_s"], r["per_s"]) for r in rows},
            "API p99 ms": {
                "idle": (idle_p99, idle_p99, idle_p99),
                **{r["setup"]: (r["api"]["p99_ms"],) * 3 for r in loaded},
            },
        },
        ylabel="articles per second / milliseconds",
    )
    by = {r["setup"]: r for r in rows}

    def rate(label: str) -> float:
        return float(by[label]["per_s"])

    one_thread = rate("API idle: 1 process, thread")
    one_cpu = rate("API idle: 1 process + 1 CPU process")
    two_threads = rate("API idle: 2 processes, thread")
    two_cpu = rate("API idle: 1 process + 2 CPU processes")
    lines = [
        f"The CPU step alone (summary and keywords, one process, {STEP_SAMPLE} of the "
        f"backlog's texts): {data['step']['cpu_ms']:.1f} ms of CPU per article, a one-core "
        f"limit of **{step:.0f} articles/s** ({data['step_after']['per_s']:.0f}/s measured "
        "again after the drains).",
        "",
        f"With the API idle ({IDLE_BACKLOG:,} queued articles each):",
        "",
        "| setup | articles/s | x one-core limit | cores: workers | PostgreSQL | Redis | "
        "the limit |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in quiet:
        c = r["cores"]
        lines.append(
            f"| {r['setup'].removeprefix('API idle: ')} | {r['per_s']:,.0f} | "
            f"{r['per_s'] / step:.2f}x | {c.get('workers', 0):.2f} | "
            f"{c.get('postgres', 0):.2f} | {c.get('redis', 0):.2f} | {_limit(r, step)} |"
        )
    lines += [
        "",
        f"One process with its CPU step on a core of its own (1 CPU process) = "
        f"**{one_cpu / step:.2f}x** the one-core limit; two CPU processes / one = "
        f"**{two_cpu / one_cpu:.2f}x**; two worker processes / one (thread) = "
        f"**{two_threads / one_thread:.2f}x**.",
        "",
        f"Draining {data['backlog']:,} queued articles while the API serves reads (idle API: "
        f"p99 {idle_p99:.1f} ms at {idle['rps']:,.0f} req/s):",
        "",
        "| setup | articles/s | drain, s | cores: workers | PostgreSQL | Redis | API | "
        "API p99 ms (x idle) | API errors | the limit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in loaded:
        c, api = r["cores"], r["api"]
        drained = f"{r['drain_s']:.1f}" + ("" if r["complete"] else " (projected)")
        lines.append(
            f"| {r['setup']} | {r['per_s']:,.0f} | {drained} | {c.get('workers', 0):.2f} | "
            f"{c.get('postgres', 0):.2f} | {c.get('redis', 0):.2f} | {c.get('api', 0):.2f} | "
            f"{api['p99_ms']:.1f} ({api['p99_ms'] / idle_p99:.1f}x) | {api['errors']} | "
            f"{_limit(r, step)} |"
        )
    capped = rate(SETUPS[4][0])
    one, two, four = (rate(f"{n} process{'es' if n > 1 else ''}, thread") for n in (1, 2, 4))
    pool = by[SETUPS[-1][0]]
    p99s = {r["setup"]: r["api"]["p99_ms"] / idle_p99 for r in loaded}
    lines += [
        "",
        f"2 processes / 1 = **{two / one:.2f}x**, 4 / 1 = **{four / one:.2f}x**; one process "
        f"with its 2 CPU processes / one with a thread = **{pool['per_s'] / one:.2f}x**; "
        f"arq's default poll capped one process at {capped:.0f}/s. Cores are CPU seconds over "
        "the drain's wall time (2 cores in all, shared with wrk).",
        "",
        f"![queues-drain](advice/{chart_path.name})",
    ]
    verdict = (
        f"Scaled out, the queue drains real work as fast as the cores allow: with the API "
        f"idle one process with a CPU process of its own ran at {one_cpu / step:.2f}x the "
        f"step's one-core limit and two CPU processes {two_cpu / one_cpu:.2f}x that; under "
        f"the API's reads arq's 0.5 s poll held a worker to {capped:.0f} articles/s, a faster "
        f"poll to {one:.0f}/s (the GIL), 2 processes reached {two:.0f}/s and the default pool "
        f"{pool['per_s']:.0f}/s, with the API's p99 at {p99s[pool['setup']]:.1f}x idle "
        f"({min(p99s.values()):.1f}x to {max(p99s.values()):.1f}x across setups)."
    )
    return lines, verdict

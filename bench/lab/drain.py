"""The task-queue claim's second half: draining a backlog of article processing, scaled out.

5,000 pending articles (copies of seeded ones) are queued on the bulk queue, then bulk-only
workers (``WORKER_ROLES=bulk``) start; the drain time runs from the first article processed
to the last. Meanwhile one Hypercorn worker serves a steady read load (wrk, 8 connections,
each waiting 20 ms between requests, hot cached articles); its p99 is compared with the same
load before any worker runs. CPU seconds of the workers (their CPU processes included),
PostgreSQL (every backend) and Redis are sampled over the drain.
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

from bench.common import ROOT, parse_wrk
from bench.lab import chart
from bench.lab.core import Lab, Process, sql
from service.core import keys

BACKLOG = 5_000
LIMIT = 150.0  # seconds a drain may take
CAPPED_LIMIT = 25.0  # the poll-capped setup is stopped early; its drain is projected
HOT = 50
CONNECTIONS = 8
DELAY_MS = 20

# (label, worker processes, their environment)
SETUPS: list[tuple[str, int, dict[str, str]]] = [
    (
        "1 process, arq's 0.5 s poll, 10 jobs, thread",
        1,
        {"WORKER_POLL_SECONDS": "0.5", "WORKER_MAX_JOBS": "10", "WORKER_CPU_PROCESSES": "0"},
    ),
    ("1 process, thread", 1, {"WORKER_CPU_PROCESSES": "0"}),
    ("2 processes, thread", 2, {"WORKER_CPU_PROCESSES": "0"}),
    ("4 processes, thread", 4, {"WORKER_CPU_PROCESSES": "0"}),
    ("1 process + 1 CPU process", 1, {"WORKER_CPU_PROCESSES": "1"}),
    ("1 process + 2 CPU processes (default)", 1, {"WORKER_CPU_PROCESSES": "2"}),
]


def plan(lab: Lab) -> int:
    return len(SETUPS) + 1


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
                            self.first.setdefault(p.pid, total if self._started else 0.0)
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


def _backlog(lab: Lab) -> tuple[int, int]:
    """``BACKLOG`` new pending articles and their jobs on the bulk queue; their id range."""
    rows = sql(
        lab,
        "INSERT INTO articles (author_id, title, content, status, version) "
        "SELECT author_id, title, content, 'pending', 1 FROM articles "
        f"WHERE status = 'processed' ORDER BY id LIMIT {BACKLOG} RETURNING id",
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


def run(lab: Lab, server: Process, env: dict[str, str]) -> dict[str, Any]:
    """Every setup in turn against ``server`` (the API, already serving ``env``'s stack)."""
    script = _script(lab)
    lab.status("drain: the API's idle p99")
    idle_wrk = _wrk(server.url, script, 10 if lab.mode.quick else 20)
    idle = _finish_after(idle_wrk)
    if lab.bar is not None:
        lab.bar.update(1)
    rows = []
    postgres, redis = _pids(lab.postgres), _pids(lab.redis)
    for label, processes, extra in SETUPS:
        lab.status(f"drain: {label}")
        low, high = _backlog(lab)
        worker_env = {
            **os.environ,
            **env,
            "WORKER_ROLES": "bulk",
            "WORKER_METRICS_PORT": "0",
            **extra,
        }
        limit = CAPPED_LIMIT if extra.get("WORKER_POLL_SECONDS") == "0.5" else LIMIT
        wrk = _wrk(server.url, script, int(limit) + 120)
        log = open(lab.work / f"drain-{processes}-{len(rows)}.log", "ab")  # noqa: SIM115
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
        done = 0
        meter_started = False
        try:
            while time.monotonic() - began < limit + 20:
                done = _processed(lab, low, high)
                now = time.monotonic()
                if done and first is None:
                    first = now
                    meter.start()
                    meter_started = True
                if done >= BACKLOG:
                    last = now
                    break
                if first is not None and now - first > limit:
                    break
                time.sleep(0.2)
            end = time.monotonic()
            cpu = meter.stop() if meter_started else {}
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
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
        seconds = (end - first) if first is not None else float("nan")
        rate = done / seconds if seconds else 0.0
        rows.append(
            {
                "setup": label,
                "processes": processes,
                "cpu_processes": int(extra.get("WORKER_CPU_PROCESSES", "0")),
                "processed": done,
                "complete": last is not None,
                "seconds": seconds,
                "per_s": rate,
                "drain_s": seconds if last is not None else BACKLOG / rate if rate else None,
                "cores": {k: v / seconds for k, v in cpu.items()},
                "api": load,
            }
        )
        # Anything still queued (an early stop) must not feed the next setup.
        sql(lab, f"UPDATE articles SET status = 'failed' WHERE id BETWEEN {low} AND {high}")
        _clear_queue(lab)
        if lab.bar is not None:
            lab.bar.update(1)
    return {"idle": idle, "rows": rows, "backlog": BACKLOG}


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


def _limit(row: dict[str, Any], idle_p99: float) -> str:
    """What held the setup back, read from its figures."""
    cores = row["cores"]
    workers = cores.get("workers", 0.0)
    if row["setup"].startswith("1 process, arq"):
        return f"arq's poll: {row['per_s']:.0f}/s at {workers:.2f} of a core"
    if row["cpu_processes"] == 0 and row["processes"] == 1:
        return f"the GIL: one core ({workers:.2f})"
    total = sum(cores.values())
    if total >= 1.7:
        return f"the 2 cores ({total:.2f} busy; PostgreSQL {cores.get('postgres', 0):.2f})"
    return f"{total:.2f} cores busy"


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    rows, idle = data["rows"], data["idle"]
    idle_p99 = idle["p99_ms"]
    chart.bars(
        chart_path,
        groups={
            "articles/s": {r["setup"]: (r["per_s"], r["per_s"], r["per_s"]) for r in rows},
            "API p99 ms": {
                "idle": (idle_p99, idle_p99, idle_p99),
                **{r["setup"]: (r["api"]["p99_ms"],) * 3 for r in rows},
            },
        },
        ylabel="articles per second / milliseconds",
    )
    lines = [
        f"Draining {data['backlog']:,} queued articles (idle API: p99 {idle_p99:.1f} ms at "
        f"{idle['rps']:,.0f} req/s):",
        "",
        "| setup | articles/s | drain, s | cores: workers | PostgreSQL | Redis | API | "
        "API p99 ms (x idle) | API errors | the limit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        c, api = r["cores"], r["api"]
        drained = f"{r['drain_s']:.1f}" + ("" if r["complete"] else " (projected)")
        lines.append(
            f"| {r['setup']} | {r['per_s']:,.0f} | {drained} | {c.get('workers', 0):.2f} | "
            f"{c.get('postgres', 0):.2f} | {c.get('redis', 0):.2f} | {c.get('api', 0):.2f} | "
            f"{api['p99_ms']:.1f} ({api['p99_ms'] / idle_p99:.1f}x) | {api['errors']} | "
            f"{_limit(r, idle_p99)} |"
        )
    by = {r["setup"]: r for r in rows}
    capped = by[SETUPS[0][0]]["per_s"]
    one, two, four = (by[f"{n} process{'es' if n > 1 else ''}, thread"]["per_s"] for n in (1, 2, 4))
    pool = by[SETUPS[-1][0]]
    worst = max(r["api"]["p99_ms"] for r in rows) / idle_p99
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
        f"Scaled out, the queue drains real work as fast as the cores allow: arq's 0.5 s poll "
        f"held a worker to {capped:.0f} articles/s, a faster poll to {one:.0f}/s (the GIL), "
        f"2 processes reached {two:.0f}/s and one process with a CPU process per core "
        f"{pool['per_s']:.0f}/s, while the API's p99 stayed within {worst:.1f}x of idle."
    )
    return lines, verdict

"""The abuse figures: ``python -m bench.abuse`` (``make abuse``), loopback only, bounded.

What one hostile client could do before the limits of docs/SECURITY.md, measured side by side
with what it can do now, in one run:

- ``redaction``: seconds to redact one line of each attacking shape at 1, 8, 16 and 64 KiB,
  with the pattern as it was (``OLD_SECRETS``, kept here as the baseline) and with
  ``service.core.logs.redact``; the minimum of 3 runs each;
- ``login burst``: 60 concurrent wrong logins against one Hypercorn worker, its peak resident
  memory over its resident memory before the burst (``VmHWM`` - ``VmRSS``), with as many
  hashing threads as asyncio's default executor had (min(32, CPUs + 4), every login queued
  however long) and with the defaults (``PASSWORD_HASH_CONCURRENCY`` the CPU quota, a 2 s
  wait), with the answers by status;
- ``list queries``: 10,000 distinct anonymous list queries, then the cache's keys and Redis's
  ``used_memory`` growth, with the list bound lifted (``CACHE_MAX_LIST_KEYS=10000000``, what
  every query cached meant) and with the default;
- ``search``: the worst search at ``ABUSE_SEARCH_ARTICLES`` (1,000,000) seeded articles, the
  deepest page, median and max of 5 after a warm-up: with the old rules (one-letter prefixes,
  ten terms, no search timeout) and with the defaults (the worst they still allow, and what
  the old worst query gets now). Each search is its own request, the cache off.

``ABUSE_PARTS`` (``redaction,burst,lists,search``) chooses the parts. Servers are embedded
PostgreSQL and Redis of the run's own. Writes
``bench/results/abuse-<timestamp>.json`` and prints the tables docs/SECURITY.md quotes.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from bench.lab.core import ROOT, Process, prepare
from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from service.core.logs import redact

# The redaction pattern before it was made linear: every alternative could start anywhere in a
# run of its characters, so a run without a match was scanned again from each position.
OLD_SECRETS = re.compile(
    r"(?P<email>[A-Za-z0-9.!#$%&*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)"
    r"|(?P<bearer>(?i:bearer)\s+)\S+"
    r"|\bnds?_[A-Za-z0-9_-]{16,}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"
)
SHAPES = {
    "address characters holding nd_": "aaaaaaaand_",
    "eyJ runs without a dot": "eyJ-",
    "bearer words": "bearer ",
}
SIZES_KIB = (1, 8, 16, 64)
BURST = 60
LIST_QUERIES = 10_000
MIB = 1024 * 1024


def _best_of(run: Callable[[], object], times: int = 3) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def redaction() -> list[dict[str, Any]]:
    rows = []
    for name, unit in SHAPES.items():
        for kib in SIZES_KIB:
            line = "GET /" + unit * (kib * 1024 // len(unit)) + " HTTP/1.1"
            old = _best_of(lambda line=line: OLD_SECRETS.sub("<x>", line))  # type: ignore[misc]
            new = _best_of(lambda line=line: redact(line))  # type: ignore[misc]
            rows.append({"shape": name, "kib": kib, "old_ms": old * 1000, "new_ms": new * 1000})
            print(f"redaction {name:<32} {kib:>3} KiB  old {old * 1000:9.1f} ms  new "
                  f"{new * 1000:7.2f} ms", flush=True)  # fmt: skip
    return rows


def proc_status(pid: int, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (the peak resident size) of ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def serving_pids(pid: int) -> list[int]:
    """A server process and its children (Hypercorn's workers, when it forks them)."""
    parent = psutil.Process(pid)
    return [parent.pid, *(child.pid for child in parent.children(recursive=True))]


def _server(env: dict[str, str], log: Path) -> Process:
    """One Hypercorn worker (uvloop) serving Newsdesk on a free loopback port."""
    port = free_port()
    options = ["--worker-class", "uvloop", "--keep-alive", "75", "--workers", "1"]
    command = [sys.executable, "-m", "hypercorn", *options, "--bind", f"127.0.0.1:{port}"]
    command.append("service.asgi:app")
    return Process(command, env, log, port=port, ready_path="/healthz")


async def _burst(url: str) -> tuple[dict[int, int], str]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        email = f"burst-{time.time_ns()}@example.com"
        created = await http.post(
            "/api/v1/users", json={"email": email, "password": "correct horse", "name": "B"}
        )
        assert created.status_code == 201, created.text
        answers = await asyncio.gather(
            *(
                http.post("/api/v1/auth/login", json={"email": email, "password": "wrong one"})
                for _ in range(BURST)
            )
        )
    return dict(Counter(answer.status_code for answer in answers)), email


def login_burst(env: dict[str, str], work: Path) -> list[dict[str, Any]]:
    cpus = len(os.sched_getaffinity(0))
    rows = []
    # asyncio's default executor: min(32, CPUs + 4) threads and a queue without bound.
    default_executor = {
        "PASSWORD_HASH_CONCURRENCY": str(min(32, cpus + 4)),
        "PASSWORD_HASH_WAIT_SECONDS": "600",
    }
    for label, hashing in (
        (f"asyncio's default executor ({min(32, cpus + 4)} threads)", default_executor),
        ("PASSWORD_HASH_CONCURRENCY default", {}),
    ):
        server = _server({**env, **hashing}, work / "burst.log")
        try:
            pids = serving_pids(server.proc.pid)
            with httpx.Client(base_url=server.url) as warm:  # argon2 loaded, one hash made
                warm.post("/api/v1/users", json={"email": f"w{time.time_ns()}@example.com",
                          "password": "correct horse", "name": "W"})  # fmt: skip
            before = {pid: proc_status(pid, "VmRSS") for pid in pids}
            statuses, _ = asyncio.run(_burst(server.url))
            grown = max(proc_status(pid, "VmHWM") - before[pid] for pid in pids)
            baseline = max(before.values())
        finally:
            server.stop()
        rows.append({"hashing": label, "baseline_mib": baseline / MIB,
                     "peak_growth_mib": grown / MIB, "statuses": statuses})  # fmt: skip
        print(f"login burst {label:<48} baseline {baseline / MIB:6.0f} MiB  peak +"
              f"{grown / MIB:6.0f} MiB  answers {statuses}", flush=True)  # fmt: skip
    return rows


async def _queries(url: str) -> int:
    sent = 0
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        gate = asyncio.Semaphore(32)

        async def one(number: int) -> None:
            nonlocal sent
            async with gate:
                answer = await http.get("/api/v1/articles", params={"tag": f"t{number}"})
                sent += answer.status_code == 200

        await asyncio.gather(*(one(number) for number in range(LIST_QUERIES)))
    return sent


def list_queries(env: dict[str, str], redis_url: str, work: Path) -> list[dict[str, Any]]:
    rows = []
    for label, bound in (("every query cached", "10000000"), ("CACHE_MAX_LIST_KEYS default", None)):
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        used_before = int(client.info("memory")["used_memory"])  # type: ignore[index]
        limits = {} if bound is None else {"CACHE_MAX_LIST_KEYS": bound}
        # An hour's TTL: no entry may expire during the run, whatever the machine's speed.
        server = _server({**env, **limits, "CACHE_TTL_LIST": "3600"}, work / "lists.log")
        try:
            answered = asyncio.run(_queries(server.url))
        finally:
            server.stop()
        cache_keys = sum(1 for _ in client.scan_iter("cache:*", count=1000))
        used = int(client.info("memory")["used_memory"]) - used_before  # type: ignore[index]
        client.close()
        rows.append({"cache": label, "answered_200": answered, "cache_keys": cache_keys,
                     "used_memory_mib": used / MIB})  # fmt: skip
        print(f"list queries {label:<32} {answered} answered 200  cache keys {cache_keys:6}  "
              f"Redis +{used / MIB:6.1f} MiB", flush=True)  # fmt: skip
    return rows


OLD_RULES = {"SEARCH_MIN_PREFIX": "1", "SEARCH_MAX_TERMS": "10", "SEARCH_TIMEOUT_MS": "600000"}
OLD_WORST = "c p f r s t a w"
NEW_WORST = "co re fo cl"
DEEPEST = {"page": "100", "per_page": "100"}


def _time_search(url: str, q: str) -> tuple[int, float, float]:
    """The status, median and max milliseconds of 5 searches for ``q`` (after one warm-up)."""
    times = []
    with httpx.Client(base_url=url, timeout=700) as http:
        status = http.get("/api/v1/articles", params={"q": q, **DEEPEST}).status_code
        for _ in range(5):
            started = time.perf_counter()
            status = http.get("/api/v1/articles", params={"q": q, **DEEPEST}).status_code
            times.append((time.perf_counter() - started) * 1000)
    return status, statistics.median(times), max(times)


def search(env: dict[str, str], postgres: EmbeddedPostgres, work: Path) -> list[dict[str, Any]]:
    count = int(os.environ.get("ABUSE_SEARCH_ARTICLES", "1000000"))
    database = postgres.ensure_database("search")
    seconds = prepare(database, count, progress=False)
    print(f"search: {count:,} articles seeded in {seconds:.0f} s", flush=True)
    rows = []
    searches: tuple[tuple[str, dict[str, str], str], ...] = (
        ("old rules", OLD_RULES, OLD_WORST),
        ("defaults", {}, NEW_WORST),
        ("defaults", {}, OLD_WORST),
    )
    for label, rules, q in searches:
        server = _server(
            {**env, "DATABASE_URL": database, "CACHE_ENABLED": "false", **rules},
            work / "search.log",
        )
        try:
            status, median, longest = _time_search(server.url, q)
        finally:
            server.stop()
        rows.append({"rules": label, "q": q, "status": status, "median_ms": median,
                     "max_ms": longest, "articles": count})  # fmt: skip
        print(f"search {label:<10} q={q!r:<20} {status}  median {median:8.1f} ms  max "
              f"{longest:8.1f} ms", flush=True)  # fmt: skip
    return rows


def main() -> int:
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    machine = {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version()}
    results: dict[str, Any] = {"started": started, "machine": machine}
    parts = set(os.environ.get("ABUSE_PARTS", "redaction,burst,lists,search").split(","))
    if "redaction" in parts:
        results["redaction"] = redaction()
    work = Path(tempfile.mkdtemp(prefix="newsdesk-bench-abuse-"))
    postgres = EmbeddedPostgres(work / "postgres", durable=False).start()
    redis_server = EmbeddedRedis(work / "redis", durable=False).start()
    try:
        database = postgres.ensure_database("abuse")
        prepare(database, 1000, progress=False)  # list pages with articles on them
        env = {
            "DATABASE_URL": database,
            "REDIS_URL": redis_server.url(),
            "ENV": "test",
            "PASSWORD_RESET_URL": "http://127.0.0.1/reset-password#token={token}",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_LOGIN_IP": "100000/minute",
            "RATE_LIMIT_LOGIN_EMAIL": "100000/minute",
            "RATE_LIMIT_AUTH_FAILURES": "100000/minute",
            "RATE_LIMIT_REGISTER": "100000/hour",
            "RATE_LIMIT_READ": "100000000/minute",
        }
        if "burst" in parts:
            results["login_burst"] = login_burst(env, work)
        if "lists" in parts:
            results["list_queries"] = list_queries(env, redis_server.url(), work)
        if "search" in parts:
            search_env = {**env, "RATE_LIMIT_SEARCH": "100000/minute"}
            results["search"] = search(search_env, postgres, work)
    finally:
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench" / "results" / f"abuse-{started}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

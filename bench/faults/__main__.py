"""``python -m bench.faults [--articles N] [--cases a,b,...] [--no-report]``."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.faults import report
from bench.faults.cases import CASES, HOT, prepare_setup
from bench.faults.load import CONNECTIONS, LISTS, THINK, WRITES
from bench.faults.report import Row
from bench.faults.stack import LOGIN_EMAIL_LIMIT, Stack
from bench.lab.core import ROOT

CASE_LIMIT = 240.0  # seconds any one case may take, waits included


def setup_text(articles: int) -> str:
    return (
        "Setup: an embedded PostgreSQL (fsync on) and Redis (append-only file, fsync every "
        f"second) of the run's own, {articles:,} seeded articles; the API as in production "
        "(`python -m service serve`, `WEB_CONCURRENCY=2`, uvloop), one `python -m service "
        "worker` (every queue, views flushed every second). Load: "
        f"{CONNECTIONS} clients over as many keep-alive connections (httpx), "
        f"{1 - WRITES - LISTS:.0%} reads of one article ({HOT} articles per "
        f"case), {LISTS:.0%} list pages, {WRITES:.0%} article creations with "
        f"an API key, {THINK * 1000:.0f} ms between a client's requests. Production "
        "budgets except `CACHE_TIMEOUT=1` (0.25 s by default) and rate limits the load "
        f"cannot reach; logins per e-mail: {LOGIN_EMAIL_LIMIT} an hour. A fault starts after "
        "4 s of load; the load goes on until 4 s after the first answer that needed the "
        "server again."
    )


async def run(stack: Stack, names: list[str]) -> list[Row]:
    setup = await prepare_setup(stack, names)
    rows = []
    for name in names:
        print(f"-- {name}", flush=True)
        await asyncio.to_thread(stack.ensure_up)
        try:
            async with asyncio.timeout(CASE_LIMIT):
                row = await CASES[name](stack, setup)
        except Exception as exc:
            traceback.print_exc()
            row = Row(name)
            row.check(False, f"did not complete ({type(exc).__name__}: {exc})"[:200])
        print(report.table([row]).splitlines()[-1], flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("--articles", type=int, default=5_000)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset")
    parser.add_argument("--no-report", action="store_true", help="do not write docs/FAULTS.md")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in names if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="newsdesk-faults-"))
    stack = Stack(work, args.articles)
    try:
        stack.start()
        print(f"stack up in {time.monotonic() - started:.0f} s ({work})", flush=True)
        rows = asyncio.run(run(stack, names))
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - started
    print()
    print(report.table(rows))
    if not args.no_report:
        path = report.write(
            rows, started=started_at, seconds=seconds, setup=setup_text(args.articles)
        )
        print(f"\nwritten to {path.relative_to(ROOT)} ({seconds:.0f} s)")
    failed = [row for row in rows if row.failed]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

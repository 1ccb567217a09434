"""``python -m bench.lab [--quick] [--only claim,claim]``: run the claims, write
``bench/results/<timestamp>.json``, ``docs/ADVICE.md`` and its charts in ``docs/advice/``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from tqdm import tqdm

from bench.lab import (
    caching,
    dbpath,
    indexes,
    metrics,
    mixed,
    pages,
    pooling,
    profile,
    queues,
    replica,
    scaling,
    servers,
    serving,
)
from bench.lab.core import FULL, QUICK, ROOT, Lab, machine, need
from bench.lab.report import write_report
from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis

CLAIMS: dict[str, ModuleType] = {
    "serving": serving,
    "servers": servers,
    "pooling": pooling,
    "dbpath": dbpath,
    "mixed": mixed,
    "caching": caching,
    "queues": queues,
    "indexes": indexes,
    "pages": pages,
    "replica": replica,
    "scaling": scaling,
    "metrics": metrics,
    "profile": profile,
}
PACKAGES = (
    "flask",
    "quart",
    "hypercorn",
    "gunicorn",
    "asgiref",
    "sqlalchemy",
    "asyncpg",
    "psycopg",
    "redis",
    "arq",
    "greenlet",
    "uvloop",
    "fastapi",
    "uvicorn",
    "granian",
    "prometheus_client",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lab")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the reduced pass (fewer articles and rounds, shorter runs)",
    )
    parser.add_argument("--only", default="", help="comma-separated claims (no report)")
    parser.add_argument(
        "--update",
        action="store_true",
        help="with --only: put the claims' new figures into the latest results and report",
    )
    args = parser.parse_args(argv)
    missing = need("wrk", "nginx")
    if missing:
        print(f"missing: {', '.join(missing)} (make bench-deps installs them)", file=sys.stderr)
        return 2
    mode = QUICK if args.quick else FULL
    chosen = [c for c in args.only.split(",") if c] or list(CLAIMS)
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    work = tempfile.mkdtemp(prefix="newsdesk-lab-")
    work_dir = Path(work)
    # Durable, as in production: commits wait for the WAL (the job-per-view claim depends on it).
    postgres = EmbeddedPostgres(work_dir / "postgres", durable=True)
    postgres.max_connections = 720  # seven apps' pools of 50 at once, the replica's senders
    redis = EmbeddedRedis(work_dir / "redis", durable=False)
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    began = time.monotonic()
    try:
        postgres.start()
        redis.start()
        lab = Lab(mode, work_dir, postgres, redis)
        lab.database_url = postgres.ensure_database("lab")
        total = sum(CLAIMS[c].plan(lab) for c in chosen)
        with tqdm(total=total, desc="lab", unit="run", dynamic_ncols=True) as bar:
            lab.bar = bar
            for name in chosen:
                bar.set_description(name)
                t0 = time.monotonic()
                try:
                    results[name] = CLAIMS[name].run(lab)
                except Exception as exc:  # one failed claim must not lose the others' figures
                    traceback.print_exc()
                    results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                timings[name] = round(time.monotonic() - t0, 1)
    finally:
        redis.stop()
        postgres.stop()
        if os.environ.get("LAB_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    document: dict[str, Any] = {
        "started": started,
        "mode": mode.name,
        "settings": {
            "duration_s": mode.duration,
            "rounds": mode.rounds,
            "articles": mode.articles,
            "concurrency": list(mode.concurrency),
        },
        "machine": machine(PACKAGES),
        "seconds": {"total": round(time.monotonic() - began, 1), **timings},
        "claims": results,
    }
    if args.only and args.update:
        document = _merged(document, chosen)
    # A partial run (--only) is for trying a claim out: its figures stay out of the results.
    trial = args.only and not args.update
    results_dir = Path(tempfile.gettempdir()) if trial else ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{started}.json"
    json_path.write_text(json.dumps(document, indent=2))
    print(f"wrote {json_path}")
    if trial:
        return 0
    report = write_report(document, json_path, CLAIMS)
    print(f"wrote {report.relative_to(ROOT)} in {document['seconds']['total']:.0f} s")
    return 1 if any("error" in r for r in results.values()) else 0


def _merged(document: dict[str, Any], chosen: list[str]) -> dict[str, Any]:
    """The latest full run's results with ``chosen`` claims measured again (``--update``)."""
    runs = sorted(p for p in (ROOT / "bench" / "results").glob("2*.json"))
    if not runs:
        return document
    latest = json.loads(runs[-1].read_text())
    for name in chosen:
        latest["claims"][name] = document["claims"][name]
        latest["seconds"][name] = document["seconds"][name]
    latest["updated"] = {**latest.get("updated", {}), **dict.fromkeys(chosen, document["started"])}
    return dict(latest, machine=document["machine"])


if __name__ == "__main__":
    sys.exit(main())

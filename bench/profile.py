"""Where a worker's per-request time goes, and A/B runs side by side: ``python -m bench.profile``.

Two commands, so a profile can be repeated and compared (docs/PROFILE.md holds the tables):

* ``table FILE...``: turns py-spy's collapsed stacks (``py-spy record --format raw``) into the
  share of each layer. Each sample is charged to the innermost frame that belongs to a layer
  (``LAYERS``, first match wins), so time spent in asyncpg under a SQLAlchemy call is the
  driver's, and the SQLAlchemy share is SQLAlchemy's own Python.
* ``ab``: one Hypercorn worker (uvloop) per app, each from its own source tree (``--app
  NAME=TREE:MODULE``, so "before" can be a copy of the tree), ``wrk -t1 -c32`` on each probe,
  rounds rotated so no app always goes first; prints req/s medians, per-round ratios against
  the first app, and each worker's RSS after start and after load (``VmHWM``: the peak).

The environment (``DATABASE_URL``, ``REDIS_URL``) must point at a database seeded like the
lab's (``bench.serving.seed`` for ``bench_items``, ``bench.common.prepare`` for articles).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.common import parse_wrk, wait_ready

# (layer, substrings of a frame's "function (file:line)" text). Order matters: the first layer
# whose pattern a frame matches is that frame's layer.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("metrics middleware", ("service/serving/metrics.py", "prometheus_client/")),
    ("logging / access log", ("logging/__init__", "service/web/access_log.py", "core/logs.py")),
    ("cache fast path", ("service/serving/fastpath.py", "service/infra/cache.py")),
    ("Redis client", ("redis/",)),
    ("asyncpg driver", ("asyncpg/",)),
    ("SQLAlchemy session/engine", ("sqlalchemy/",)),
    ("pydantic / orjson", ("pydantic", "orjson", "service/web/jsonio.py")),
    ("adapter + greenlet switches", ("service/serving/", "greenlet")),
    ("werkzeug request/response", ("werkzeug/",)),
    ("Flask dispatch + hooks", ("flask/", "service/web/", "flask_cors/")),
    ("app views (bench/)", ("bench/",)),
    ("h11 / Hypercorn", ("h11/", "hypercorn/")),
    ("event loop (asyncio/uvloop)", ("asyncio/", "uvloop")),
)
OTHER = "other"


def layer_of(stack: str) -> str:
    """The layer of the innermost frame of ``stack`` (frames root-first, ``;``-separated)."""
    for frame in reversed(stack.split(";")):
        for name, patterns in LAYERS:
            if any(pattern in frame for pattern in patterns):
                return name
    return OTHER


def shares(paths: list[Path]) -> tuple[collections.Counter[str], int]:
    """Samples per layer over the collapsed-stack files, and the total."""
    counts: collections.Counter[str] = collections.Counter()
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, number = line.rpartition(" ")
            if stack and number.isdigit():
                counts[layer_of(stack)] += int(number)
    return counts, sum(counts.values())


def table(paths: list[Path]) -> str:
    counts, total = shares(paths)
    rows = ["| layer | samples | share |", "| --- | ---: | ---: |"]
    for name, count in counts.most_common():
        rows.append(f"| {name} | {count} | {100 * count / max(total, 1):.1f}% |")
    rows.append(f"| total | {total} | 100% |")
    return "\n".join(rows)


RANDOM_SCRIPT = """math.randomseed(os.time())
request = function()
  return wrk.format("GET", "{prefix}" .. math.random(1, {rows}))
end
"""


class Worker:
    """One Hypercorn worker serving ``module`` from ``tree`` on ``port``."""

    def __init__(self, tree: str, module: str, port: int, env: dict[str, str]) -> None:
        self.port = port
        self.newsdesk = module.startswith("bench.newsdesk_app")  # serves the article API
        # --workers 1 still forks a worker under a supervisor; --workers 0 serves in-process so
        # the PID read below is the serving process (what py-spy and RSS must look at).
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hypercorn", "--worker-class", "uvloop", "--keep-alive",
             "75", "--workers", "0", "--bind", f"127.0.0.1:{port}", module],
            cwd=tree, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if not wait_ready(f"{self.url}/bench/hello", self.proc, 60):
            self.stop()
            raise RuntimeError(f"{module} in {tree} did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mib(self) -> tuple[float, float]:
        """(current RSS, peak RSS) in MiB."""
        fields = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        )
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def run_wrk(url: str, seconds: int, script: Path | None) -> float:
    command = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", url]
    if script is not None:
        command[5:5] = ["-s", str(script)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return parse_wrk(out)[0]


def ab(args: argparse.Namespace) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {"ENV": "test", "LOG_LEVEL": "WARNING", "DB_POOL_SIZE": "8",
           "PASSWORD_RESET_URL": "http://127.0.0.1/reset-password#token={token}",
           "RATE_LIMIT_READ": "100000000/minute"}  # fmt: skip
    probes: dict[str, tuple[str, Path | None]] = {}
    for probe in args.probes.split(","):
        prefix = {"pk": "/bench/items/", "cached": "/bench/cached/",
                  "article": "/api/v1/articles/"}.get(probe)  # fmt: skip
        script = None
        if prefix is not None:
            script = work / f"{probe}.lua"
            rows = args.articles if probe == "article" else 10_000
            script.write_text(
                RANDOM_SCRIPT.replace("{prefix}", prefix).replace("{rows}", str(rows))
            )
        probes[probe] = ("/bench/hello" if probe == "hello" else "", script)
    workers: dict[str, Worker] = {}
    for number, spec in enumerate(args.app):
        name, _, rest = spec.partition("=")
        tree, _, module = rest.partition(":")
        workers[name] = Worker(tree, module, args.port + number, env)
    started = {name: worker.rss_mib()[0] for name, worker in workers.items()}
    for name, worker in workers.items():  # fill the caches the cached probes read
        for probe in ("cached", "article"):
            if probe in probes and (probe != "article" or workers[name].newsdesk):
                prefix = "/bench/cached/" if probe == "cached" else "/api/v1/articles/"
                rows = args.articles if probe == "article" else 10_000
                for item in range(1, rows + 1):
                    with contextlib.suppress(OSError):
                        urllib.request.urlopen(f"{worker.url}{prefix}{item}").read()
    results: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    names = list(workers)
    try:
        for round_no in range(args.rounds):
            shift = round_no % len(names)
            order = names[shift:] + names[:shift]
            for probe, (path, script) in probes.items():
                for name in order:
                    if probe == "article" and not workers[name].newsdesk:
                        continue
                    rps = run_wrk(workers[name].url + path, args.seconds, script)
                    results[(probe, name)].append(rps)
                    print(f"round {round_no + 1} {probe:<8} {name:<16} {rps:>9.0f}", flush=True)
        print("\nprobe | app | median req/s | ratio vs first app per round | median ratio")
        first = names[0]
        for probe in probes:
            for name in names:
                values = results.get((probe, name))
                if not values or (probe, first) not in results:
                    continue
                ratios = [a / b for a, b in zip(values, results[(probe, first)], strict=True)]
                print(
                    f"{probe} | {name} | {statistics.median(values):.0f} | "
                    + ", ".join(f"{r:.2f}" for r in ratios)
                    + f" | {statistics.median(ratios):.2f}"
                )
        print("\napp | RSS after start MiB | RSS after load MiB | peak MiB")
        for name, worker in workers.items():
            now, peak = worker.rss_mib()
            print(f"{name} | {started[name]:.1f} | {now:.1f} | {peak:.1f}")
    finally:
        for worker in workers.values():
            worker.stop()
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tab = sub.add_parser("table", help="layer shares from py-spy collapsed stacks")
    tab.add_argument("files", nargs="+", type=Path)
    run = sub.add_parser("ab", help="side-by-side req/s and RSS of several apps")
    run.add_argument("--app", action="append", required=True, help="NAME=TREE:MODULE")
    run.add_argument("--probes", default="hello,pk,cached")
    run.add_argument("--rounds", type=int, default=3)
    run.add_argument("--seconds", type=int, default=4)
    run.add_argument("--articles", type=int, default=200)
    run.add_argument("--port", type=int, default=18310)
    run.add_argument("--work", default="/tmp/newsdesk-profile")
    args = parser.parse_args()
    if args.command == "table":
        print(table(args.files))
    else:
        ab(args)


if __name__ == "__main__":
    main()

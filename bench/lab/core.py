"""What every claim uses: the lab's servers and settings, load runs with wrk, medians with
their spread, peak RSS of the server under load, and the progress bar."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import psutil

from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis, die_with_parent, free_port
from service.cli.harness import spawn
from service.edge.servers import Run
from service.edge.servers import command as server_command

# --- The bench's shared pieces (once bench/common.py): the checkout, wrk and its figures, the
# machine a report names, seeding, the job worker. The fault suite and the abuse figures use
# them too.

ROOT = Path(__file__).resolve().parents[2]


def wrk(url: str, duration: int, connections: int, script: Path | None = None) -> str:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    if script is not None:
        command += ["-s", str(script)]
    return subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(output: str) -> tuple[float, float, float, int, int]:
    """req/s, p50 ms, p99 ms, errors (socket errors + non-2xx), requests."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(match.group(1))
    socket_errors = r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
    if match := re.search(socket_errors, output):
        errors += sum(int(g) for g in match.groups())
    return rps, p50, p99, errors, requests


def machine(packages: tuple[str, ...]) -> dict[str, str]:
    """The machine and the versions a report names."""
    return {
        "cpus": str(os.cpu_count()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{pkg: version(pkg) for pkg in packages},
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1],
    }


def prepare(url: str, count: int, *, progress: bool | None = None) -> float:
    """Migrate and seed ``count`` articles with the CLI; the seed's wall time in seconds.

    The seed's progress bar shows on stderr from 100,000 articles unless ``progress`` says."""
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    started = time.perf_counter()
    command = [sys.executable, "-m", "service", "seed", "--count", str(count)]
    if not (count >= 100_000 if progress is None else progress):
        command.append("--no-progress")
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=progress is False)
    return time.perf_counter() - started


class Worker:
    """``python -m service worker --settings <settings>``, its output appended to ``log``."""

    def __init__(self, settings: str, env: dict[str, str], log: Path) -> None:
        command = [sys.executable, "-m", "service", "worker", "--settings", settings]
        self.process = spawn(command, env, log, cwd=ROOT, name=f"worker {settings}")
        self.proc = self.process.proc

    def stop(self) -> None:
        self.process.stop(60)


# --- end of the shared pieces


@dataclass
class Mode:
    """How much the lab does: ``make bench`` (full) or ``make bench-quick``."""

    name: str
    duration: int  # seconds per load run
    rounds: int  # runs per figure (the median is reported)
    articles: int  # seeded articles for the data claims
    concurrency: tuple[int, ...]  # client connections in the serving comparison

    @property
    def quick(self) -> bool:
        return self.name == "quick"


FULL = Mode("full", duration=2, rounds=3, articles=1_000_000, concurrency=(1, 16, 64, 256))
QUICK = Mode("quick", duration=1, rounds=3, articles=50_000, concurrency=(32,))


@dataclass
class Lab:
    mode: Mode
    work: Path
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    database_url: str = ""
    bar: Any = None
    seed_seconds: float | None = None  # set once the articles are seeded
    probes_ready: bool = False  # the probe table and its cache entries exist

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a Newsdesk server or worker in the lab."""
        return {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url(),
            "ENV": "test",
            "PASSWORD_RESET_URL": "http://127.0.0.1/reset-password#token={token}",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_READ": "100000000/minute",
            **extra,
        }

    def status(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text[:60])


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


class RssSampler:
    """Peak resident memory of each worker process of a server (its children, or the server
    itself when it has none), sampled every 100 ms while a load run lasts."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _workers(self) -> list[psutil.Process]:
        found: list[psutil.Process] = []
        for pid in self.pids:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                children = root.children(recursive=True)
                found += children or [root]
        return found

    def _sample(self) -> None:
        workers = self._workers()
        while not self._stop.is_set():
            for proc in workers:
                with contextlib.suppress(psutil.Error):
                    self.peak = max(self.peak, proc.memory_info().rss)
            self._stop.wait(0.1)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def load(
    lab: Lab,
    url: str,
    connections: int,
    *,
    script: Path | None = None,
    pids: list[int] | None = None,
    duration: int | None = None,
    settle: str | None = None,
) -> dict[str, float]:
    """One wrk run against ``url``: req/s, p50 and p99 ms, errors, requests, peak RSS MiB.

    ``settle``: a URL requested once after the run, to wait until the server has worked off
    the requests wrk left behind (a server that serves one request at a time goes on with
    them after wrk has gone, and the next run would measure that backlog); ``backlog_s`` is
    how long that took."""
    with RssSampler(pids or []) as sampler:
        out = wrk(url, duration or lab.mode.duration, connections, script)
    backlog = 0.0
    if settle is not None:
        started = time.monotonic()
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(settle, timeout=300)
        backlog = time.monotonic() - started
    rps, p50, p99, errors, requests = parse_wrk(out)
    if lab.bar is not None:
        lab.bar.update(1)
    return {
        "backlog_s": backlog,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": errors,
        "requests": requests,
        "rss_mib": sampler.peak / 2**20,
    }


def warmups(lab: Lab) -> int:
    """Warm-up runs before each measured series: one, none in the quick pass."""
    return 0 if lab.mode.quick else 1


def warm_up(lab: Lab, url: str, connections: int, *, script: Path | None = None) -> None:
    """A 1 s run whose figures are thrown away (connections, caches, code paths); skipped in
    the quick pass."""
    if warmups(lab):
        load(lab, url, connections, script=script, duration=1)


def summarise(runs: list[dict[str, float]]) -> dict[str, Any]:
    """The median of each figure over runs, with the spread of req/s; errors summed."""
    return {
        "rps": stats([r["rps"] for r in runs]),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "errors": int(sum(r["errors"] for r in runs)),
        "rss_mib": max(r["rss_mib"] for r in runs),
        "backlog_s": max(r.get("backlog_s", 0.0) for r in runs),
        "runs": len(runs),
    }


def random_ids_script(
    lab: Lab, path: str, low: int, high: int, name: str, *, seed: int = 1
) -> Path:
    """A wrk script requesting ``path`` + a random id in [low, high]; the same ids in the same
    order for the same ``seed``."""
    script = lab.work / f"{name}.lua"
    script.write_text(
        f"math.randomseed({seed})\n"
        "request = function()\n"
        f'  return wrk.format("GET", "{path}" .. math.random({low}, {high}))\n'
        "end\n"
    )
    return script


class Process:
    """A server process of the lab's, on a free loopback port, ready when ``ready_path``
    answers 200; stopped with SIGTERM (then SIGKILL)."""

    def __init__(
        self, command: list[str], env: dict[str, str], log: Path, *, port: int, ready_path: str
    ) -> None:
        self.port = port
        self.log = log
        self.process = spawn(
            command,
            env,
            log,
            ready=self.url + ready_path,
            timeout=90,
            cwd=ROOT,
            preexec_fn=die_with_parent,
        )
        self.proc = self.process.proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.process.stop(30)


def hypercorn(
    lab: Lab,
    app: str,
    env: dict[str, str],
    name: str,
    *,
    ready_path: str = "/healthz",
    options: tuple[str, ...] = (),
    port: int | None = None,
) -> Process:
    """One Hypercorn worker with ``hypercorn.toml`` (uvloop, as in production) serving ``app``,
    no access log unless ``options`` name a file (``--access-logfile``)."""
    return _asgi(lab, "hypercorn", app, env, name, ready_path, port=port, extra=options)


def uvicorn(
    lab: Lab, app: str, env: dict[str, str], name: str, *, ready_path: str = "/healthz"
) -> Process:
    """One uvicorn worker (uvloop, httptools) serving ``app``, no access log (as Hypercorn
    here), warnings only."""
    return _asgi(lab, "uvicorn", app, env, name, ready_path, log_level="warning")


def granian(
    lab: Lab, app: str, env: dict[str, str], name: str, *, ready_path: str = "/healthz"
) -> Process:
    """One granian worker (``--interface asgi``, uvloop, one runtime thread) serving ``app``, no
    access log, warnings only."""
    return _asgi(lab, "granian", app, env, name, ready_path, log_level="warning")


def _asgi(
    lab: Lab,
    server: str,
    app: str,
    env: dict[str, str],
    name: str,
    ready_path: str,
    *,
    port: int | None = None,
    log_level: str | None = None,
    extra: tuple[str, ...] = (),
    workers: int = 1,
) -> Process:
    """``workers`` worker processes (one by default) of ``server`` serving ``app`` as
    ``python -m service serve`` runs it (the table in ``service.edge.servers``,
    ``hypercorn.toml``'s settings), with the lab's departures: no access log, ``log_level``,
    ``extra`` flags."""
    port = port or free_port()
    run = Run(
        app,
        bind=f"127.0.0.1:{port}",
        workers=workers,
        access_log=False,
        log_level=log_level,
        extra=extra,
    )
    command = server_command(server, run)
    return Process(command, env, lab.work / f"{name}.log", port=port, ready_path=ready_path)


SERVERS = {"hypercorn": hypercorn, "uvicorn": uvicorn, "granian": granian}


def asgi_server(
    lab: Lab,
    server: str,
    app: str,
    env: dict[str, str],
    name: str,
    *,
    ready_path: str,
    workers: int = 1,
) -> Process:
    """``workers`` workers (one by default) of ``server`` (hypercorn, uvicorn or granian)
    serving ``app``."""
    if workers != 1:
        quiet = None if server == "hypercorn" else "warning"
        return _asgi(lab, server, app, env, name, ready_path, log_level=quiet, workers=workers)
    start = SERVERS[server]
    return start(lab, app, env, name, ready_path=ready_path)


def gunicorn(lab: Lab, app: str, env: dict[str, str], name: str, *, ready_path: str) -> Process:
    """gunicorn with one gthread worker of 32 threads serving ``app`` (the guides' stack), with
    the keep-alive and backlog of ``hypercorn.toml``."""
    port = free_port()
    settings = Run(app).settings()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "gthread",
        "--threads",
        "32",
        "--workers",
        "1",
        "--keep-alive",
        str(int(settings.keep_alive_timeout)),
        "--backlog",
        str(settings.backlog),
        "--bind",
        f"127.0.0.1:{port}",
        app,
    ]
    return Process(command, env, lab.work / f"{name}.log", port=port, ready_path=ready_path)


@contextlib.contextmanager
def running(*servers: Process | Worker) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            server.stop()


def need(*commands: str) -> list[str]:
    """The commands among ``commands`` that are not installed."""
    return [c for c in commands if shutil.which(c) is None]


def seeded(lab: Lab) -> int:
    """Migrate the lab's database and seed ``lab.mode.articles`` articles (once)."""
    if lab.seed_seconds is None:
        lab.status(f"seeding {lab.mode.articles:,} articles")
        lab.seed_seconds = prepare(lab.database_url, lab.mode.articles, progress=False)
    return lab.mode.articles


def sql(lab: Lab, statement: str, url: str | None = None) -> list[Any]:
    """Rows of one statement (asyncpg, a connection of its own)."""
    import asyncio

    import asyncpg

    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(url or lab.database_url)
        try:
            return list(await conn.fetch(statement))
        finally:
            await conn.close()

    return asyncio.run(fetch())


def table(rows: list[dict[str, Any]], label: str, key: str) -> list[str]:
    """A markdown table of summarised load runs, one row per ``rows`` item named by
    ``row[key]``."""
    lines = [
        f"| {label} | req/s median (min to max) | p50 ms | p99 ms | errors |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        rps = r["rps"]
        lines.append(
            f"| {r[key]} | {rps['median']:,.0f} ({rps['min']:,.0f} to {rps['max']:,.0f}) | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |"
        )
    return lines


def spread(row: dict[str, Any]) -> tuple[float, float, float]:
    rps = row["rps"]
    return rps["median"], rps["min"], rps["max"]

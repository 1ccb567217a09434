"""What every benchmark here shares: a Hypercorn process on loopback, wrk, the machine."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from service.cli.embedded import free_port
from service.cli.harness import http_ok, spawn, wait_until

ROOT = Path(__file__).resolve().parents[1]


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether ``url`` answered 200 within ``timeout`` seconds while ``proc`` kept running
    (for a process started without ``spawn``; ``spawn(..., ready=url)`` does this itself)."""
    return wait_until(http_ok(url, timeout=5), proc, timeout, 0.2)


class Worker:
    """``python -m service worker --settings <settings>``, its output appended to ``log``."""

    def __init__(self, settings: str, env: dict[str, str], log: Path) -> None:
        command = [sys.executable, "-m", "service", "worker", "--settings", settings]
        self.process = spawn(command, env, log, cwd=ROOT, name=f"worker {settings}")
        self.proc = self.process.proc

    def stop(self) -> None:
        self.process.stop(60)


class HypercornServer:
    """Hypercorn (``workers`` processes, one by default) serving ``app_path`` on loopback
    (``port``, or a free one), ready when ``ready_path`` answers 200."""

    def __init__(
        self,
        app_path: str,
        env: dict[str, str],
        log: Path,
        *,
        ready_path: str,
        options: list[str],
        workers: int = 1,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.log = log
        command = [
            sys.executable,
            "-m",
            "hypercorn",
            *options,
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{self.port}",
            app_path,
        ]
        self.process = spawn(
            command, env, log, ready=self.url + ready_path, timeout=60, cwd=ROOT, name=app_path
        )
        self.proc = self.process.proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.stop(20)


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


def wrk_missing() -> bool:
    """True, with a hint on stderr, when wrk is not installed."""
    if shutil.which("wrk") is not None:
        return False
    print("wrk is not installed: apt-get install wrk (make bench-deps does it)", file=sys.stderr)
    return True


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

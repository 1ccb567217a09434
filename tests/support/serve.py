"""``python -m service serve``, the production command, on a free loopback port for tests: it
prepares the metrics directory and runs Hypercorn with ``WEB_CONCURRENCY`` workers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from service.cli.embedded import free_port
from tests.support.databases import ROOT


class ServeProcess:
    """``python -m service serve`` with ``env`` and ``workers`` Hypercorn workers."""

    def __init__(self, env: dict[str, str], log_path: Path, *, workers: int = 2) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            **env,
            "BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(workers),
        }
        self.workers = workers
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServeProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{self.log()}")
            if len(self.worker_pids()) == self.workers:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                        return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"serve did not start:\n{self.log()}")

    def worker_pids(self) -> set[int]:
        """The Hypercorn worker processes (children of the serving process)."""
        assert self.proc is not None
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(self.proc.pid).children()
            return {c.pid for c in children if "spawn_main" in " ".join(c.cmdline())}
        return set()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM and wait: Hypercorn lets the workers run their lifespan shutdown."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

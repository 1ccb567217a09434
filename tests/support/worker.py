"""A real arq worker process for tests, configured from the environment like production."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from service.cli.harness import Process, Ready, spawn
from tests.support.databases import ROOT, ServerStack

# The supervised worker (service.jobs.supervisor): what `make run` and the image start.
COMMAND = [sys.executable, "-m", "service", "worker"]


class WorkerProcess:
    """``python -m service worker`` against ``stack`` with ``env`` on top; log in ``log_path``;
    ``settings`` names another WorkerSettings class (``module:Class``); ``command`` replaces
    the command line (arq's own, say)."""

    def __init__(
        self,
        stack: ServerStack,
        log_path: Path,
        *,
        settings: str | None = None,
        command: list[str] | None = None,
        **env: str,
    ) -> None:
        self.command = command or COMMAND + (["--settings", settings] if settings else [])
        self.env = {
            **os.environ,
            "DATABASE_URL": stack.database_url,
            "REDIS_URL": stack.redis_url,
            "LOG_LEVEL": "INFO",
            "WORKER_METRICS_PORT": "0",  # a test that scrapes the worker gives it a free port
            # As tests.conftest.server_env: the suite's machine is shared.
            "WORKER_NICE": "0",
            "WORKER_CPU_IDLE": "false",
            "WORKER_CPU_NICE": "0",
            **env,
        }
        self.log_path = log_path
        self.process: Process | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready: Ready = None, timeout: float = 60) -> WorkerProcess:
        """Start (again, after a kill); ``ready`` as ``spawn``'s (a log line, say)."""
        self.process = spawn(
            self.command, self.env, self.log_path, ready=ready, timeout=timeout, cwd=ROOT
        )
        self.proc = self.process.proc
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_log(self, text: str, seconds: float = 60) -> None:
        """Until ``text`` appears in the log (bounded; fails with the log)."""
        for _ in range(int(seconds * 10)):
            if text in self.log():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{text!r} not in the worker log:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait for the exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(60)

"""service.cli.stack: Ctrl-C on ``python -m service run`` stops the API, then (once the API
has exited) the worker, then the embedded servers, and every log line names the signal that
was really sent. A real process with its own embedded servers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import psutil

from service.cli.embedded import free_port
from tests.support import stack_run

# In the order they must appear in the log.
STOP_LINES = [
    "SIGINT received; stopping",
    "stopping the API (pid",
    "the API has stopped (exit code 0)",
    "stopping the worker (pid",
    "SIGTERM received: the worker stops taking jobs",  # the worker's own line
    "worker stopped",
    "the worker has stopped (exit code 0)",
    "stopping embedded Redis",
    "stopping embedded PostgreSQL",
    "] stopped\n",  # the last line
]


def test_ctrl_c_stops_the_api_then_the_worker_then_the_servers(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PORT=str(port), WEB_CONCURRENCY="1", WORKER_METRICS_PORT=str(free_port()))
    proc, log = stack_run.start("run", env, tmp_path)
    try:
        stack_run.wait_until_up(proc, log, "Starting worker")
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        family = psutil.Process(proc.pid).children(recursive=True)

        proc.send_signal(
            signal.SIGINT
        )  # what Ctrl-C sends (the children have sessions of their own)
        assert proc.wait(180) == 0, log.read_text()
        _, alive = psutil.wait_procs(family, timeout=30)
        assert alive == [], [p.cmdline() for p in alive]

        text = log.read_text()
        at = text.index("SIGINT received")
        for line in STOP_LINES:  # each one after the one before
            found = text.find(line, at)
            assert found >= 0, f"{line!r} missing or out of order:\n{text[at:]}"
            at = found + len(line)
        assert "SIGUSR1" not in text  # no signal nobody sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)

"""service.cli.stack: ``python -m service run`` (what ``make run`` starts) serves, then stops
cleanly."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

from service.cli.embedded import free_port
from service.cli.harness import http_ok
from tests.support import stack_run


def test_run_starts_everything_answers_readyz_and_leaves_nothing_behind(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PORT=str(port), WEB_CONCURRENCY="1")
    proc, log = stack_run.start("run", env, tmp_path)
    try:
        readyz = f"http://127.0.0.1:{port}/readyz"
        stack_run.wait_until(proc, log, http_ok(readyz), "/readyz answers 200", timeout=60)
        family = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        assert "postgres" in names and "redis-server" in names
        assert "service serve" in names and "service worker" in names
        # The banner tells a new user where things are.
        for _ in range(50):
            if "readiness:" in log.read_text():
                break
            time.sleep(0.1)
        assert f"http://127.0.0.1:{port}/healthz" in log.read_text()
        # Data survives in the data directory between runs.
        assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        _, alive = psutil.wait_procs(family, timeout=10)
        assert alive == [], [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

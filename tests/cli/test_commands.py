"""service.cli.commands: ``python -m service run`` (what ``make run`` starts) serves, then stops
cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from service.cli.embedded import free_port
from tests.support.databases import ROOT


def test_run_starts_everything_answers_readyz_and_leaves_nothing_behind(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PORT=str(port), WEB_CONCURRENCY="1")
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "run", "--data-dir", str(tmp_path / "data")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert ready is not None and ready.status_code == 200, log.read_text()
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

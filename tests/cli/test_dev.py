"""service.cli.dev: ``python -m service dev`` (``make dev``) serves the stack with debug logging
in text, and a changed Python file in a watched directory restarts the API and the worker,
which serve again. A real process against the session's servers."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from service.cli.embedded import free_port
from tests.conftest import server_env
from tests.support import stack_run
from tests.support.databases import ServerStack

# Generous: a loaded 2-core machine, a stack of two processes started twice.
READY_TIMEOUT = 180.0


def _children(proc: subprocess.Popen[bytes]) -> dict[str, int]:
    """The pids of the API (``service serve``) and the worker (``service worker``)."""
    found = {}
    for child in psutil.Process(proc.pid).children():
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        for role in ("serve", "worker"):
            if f"service {role}" in cmdline:
                found[role] = child.pid
    return found


def _wait_for(
    what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path
) -> None:
    stack_run.wait_until(proc, log, check, what, READY_TIMEOUT, interval=0.5)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_dev_restarts_the_api_and_the_worker_when_a_watched_file_changes(
    stack: ServerStack, tmp_path: Path
) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LOG_LEVEL", "LOG_FORMAT", "WEB_CONCURRENCY", "BIND", "HOST")
    }
    env.update(server_env(stack))
    env.update(PORT=str(port), WORKER_METRICS_PORT=str(free_port()), RELOAD_DIRS=str(watched))
    base = f"http://127.0.0.1:{port}"
    proc, log = stack_run.start("dev", env, tmp_path)
    family: list[psutil.Process] = []
    try:
        _wait_for("the API answers /readyz", lambda: _answers(base + "/readyz"), proc, log)
        _wait_for("the worker runs", lambda: "worker" in _children(proc), proc, log)
        before = _children(proc)
        assert httpx.get(base + "/api/v1/articles", timeout=10).status_code == 200
        text = log.read_text()
        assert " DEBUG " in text  # LOG_LEVEL=DEBUG
        assert '{"' not in text  # text lines, not JSON

        _wait_for("the watch starts", lambda: "Reloading on changes" in log.read_text(), proc, log)
        probe = watched / "reload_probe.py"
        writes = 0

        def restarted() -> bool:
            nonlocal writes
            text = log.read_text()
            changed = text.find(f"changed: {probe}")
            if changed < 0 and writes < 20:
                # The watcher starts just after the banner: write again until it has seen one.
                writes += 1
                probe.write_text(f"CHANGED = {writes}\n")
            now = _children(proc)
            return (
                changed >= 0
                and "reloaded: the API is ready" in text[changed:]
                and set(now) == {"serve", "worker"}
                and now["serve"] != before["serve"]
                and now["worker"] != before["worker"]
            )

        _wait_for("a restart after the change", restarted, proc, log)
        _wait_for("the API answers again", lambda: _answers(base + "/readyz"), proc, log)
        assert httpx.get(base + "/api/v1/articles", timeout=10).status_code == 200

        family = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, log.read_text()
        _, alive = psutil.wait_procs(family, timeout=30)
        assert alive == [], [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait(30)

"""The app under each ASGI server Newsdesk can run on (Hypercorn, the default; uvicorn;
granian): the lifespan runs its start-up and its shutdown, and ``python -m service serve``
with ``SERVER=`` serves the API.

The adapter's behaviours over sockets (413 before the body, disconnects, streaming,
keep-alive) are tests/serving/test_adapter.py, which runs under another server with
``TEST_SERVER=uvicorn`` or ``TEST_SERVER=granian``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.cli.embedded import free_port
from tests.conftest import PROBE_APP, LiveServers, server_env
from tests.support.databases import ROOT, ServerStack
from tests.support.live import SERVERS


def _installed(server: str) -> pytest.MarkDecorator:
    missing = importlib.util.find_spec(server) is None
    return pytest.mark.skipif(missing, reason=f"{server} is not installed (the servers extra)")


# uvicorn, once its graceful shutdown is done, raises the SIGTERM it received again: the
# process ends by that signal (status 143 in a shell), its lifespan shutdown complete.
CLEAN_EXIT = (0, -signal.SIGTERM)
ALL = [pytest.param(s, marks=_installed(s)) for s in SERVERS]
OTHERS = [pytest.param(s, marks=_installed(s)) for s in SERVERS if s != "hypercorn"]


def _live_gauges(directory: Path) -> list[Path]:
    """The files of live-mode gauges (the pool figures): a worker's lifespan shutdown marks it
    dead, which removes them."""
    return sorted(directory.glob("gauge_live*.db"))


@pytest.mark.parametrize("server", ALL)
def test_lifespan_starts_the_pools_and_shuts_them_down(
    server: str, live_server: LiveServers, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    env: dict[str, Any] = {"PROMETHEUS_MULTIPROC_DIR": str(metrics), "METRICS_ENABLED": "true"}
    live = live_server(PROBE_APP, server=server, timeout=60, **env)
    try:
        # The engine and its pool exist only once the lifespan start-up has run.
        assert httpx.get(live.url + "/_test/query", timeout=30).status_code == 200
        pool = httpx.get(live.url + "/_test/pool", timeout=30).json()
        assert pool["checked_out"] == 0
        assert _live_gauges(metrics), live.log()
    finally:
        live.stop()
    assert _live_gauges(metrics) == [], live.log()  # the shutdown ran
    assert live.proc is not None and live.proc.returncode in CLEAN_EXIT, live.log()


@pytest.mark.parametrize("server", OTHERS)
def test_serve_runs_the_api_on_the_chosen_server(
    server: str, stack: ServerStack, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        **server_env(stack),
        "SERVER": server,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "serve.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        health = None
        for _ in range(600):  # up to a minute, polling every 0.1 s
            assert proc.poll() is None, log_path.read_text(errors="replace")
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(url + "/healthz", timeout=1)
                break
            time.sleep(0.1)
        assert health is not None and health.status_code == 200, log_path.read_text()
        articles = httpx.get(url + "/api/v1/articles", timeout=30)
        assert articles.status_code == 200
        assert f"serving with 1 {server} worker(s)" in log_path.read_text(errors="replace")
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode in CLEAN_EXIT, log_path.read_text(errors="replace")


def test_serve_refuses_an_unknown_server(tmp_path: Path) -> None:
    env = {**os.environ, "SERVER": "nonesuch", "BIND": f"127.0.0.1:{free_port()}"}
    done = subprocess.run(
        [sys.executable, "-m", "service", "serve"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "SERVER=nonesuch" in done.stderr

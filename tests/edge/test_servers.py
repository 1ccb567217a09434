"""service.edge.servers, the table of how to run each ASGI server Newsdesk can run on
(Hypercorn, the default; uvicorn; granian): each server's own command-line parser reads, from
the table's command, the bind, the worker count and ``hypercorn.toml``'s settings, the same
options ``python -m service serve`` passes in process; an unknown server is refused. And the
app under each server: the lifespan runs its start-up and its shutdown, and ``python -m service
serve`` with ``SERVER=`` serves the API.

The adapter's behaviours over sockets (413 before the body, disconnects, streaming,
keep-alive) are tests/greenlet_asgi/test_adapter.py, which runs under another server with
``TEST_SERVER=uvicorn`` or ``TEST_SERVER=granian``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.cli.embedded import free_port
from service.cli.harness import spawn
from service.edge import servers
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


TOML = tomllib.loads((ROOT / "hypercorn.toml").read_text())
RUN = servers.Run("service.asgi:app", bind="127.0.0.1:18123", workers=3)


class _Attributes:
    """``obj[name]`` for ``obj.name`` (Hypercorn's settings are properties of its Config)."""

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __getitem__(self, name: str) -> Any:
        return getattr(self.obj, name)


def _parsed(server: str, run: servers.Run, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What ``server``'s own command-line parser makes of the table's command for ``run``: the
    settings it would start with (its start replaced by a recorder)."""
    argv = servers.command(server, run)
    assert argv[:3] == [sys.executable, "-m", server] and argv[-1] == run.app
    seen: dict[str, Any] = {}
    if server == "hypercorn":
        import hypercorn.__main__

        monkeypatch.setattr(hypercorn.__main__, "run", lambda config: seen.update(config=config))
        hypercorn.__main__.main(argv[3:])
        return _Attributes(seen["config"])
    elif server == "uvicorn":
        cli = importlib.import_module("uvicorn.main")  # uvicorn.main is the command, too

        monkeypatch.setattr(cli, "run", lambda app, **kwargs: seen.update(kwargs))
        cli.main.main(args=argv[3:], standalone_mode=False)
    else:
        import granian.cli

        class Recorder:
            def __init__(self, app: str, **kwargs: Any) -> None:
                seen.update(kwargs)

            def serve(self) -> None:
                pass

        monkeypatch.setattr(granian.cli, "Server", Recorder)
        granian.cli.cli.main(args=argv[3:], standalone_mode=False)
    return seen


@pytest.mark.parametrize("server", ALL)
def test_the_table_runs_each_server_on_the_bind_and_workers_with_hypercorn_toml(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = _parsed(server, RUN, monkeypatch)
    # Every option serve passes in process is what the command line gives the server.
    for name, value in servers.options(server, RUN).items():
        assert parsed[name] == value, name
    graceful, backlog = TOML["graceful_timeout"], TOML["backlog"]
    if server == "hypercorn":  # hypercorn.toml itself, the bind and workers over it
        assert parsed["bind"] == ["127.0.0.1:18123"] and parsed["workers"] == 3
        assert parsed["keep_alive_timeout"] == TOML["keep_alive_timeout"]
        assert parsed["graceful_timeout"] == graceful and parsed["backlog"] == backlog
        assert parsed["worker_class"] == TOML["worker_class"]
        assert parsed["accesslog"] == TOML["accesslog"]
    elif server == "uvicorn":
        assert (parsed["host"], parsed["port"], parsed["workers"]) == ("127.0.0.1", 18123, 3)
        assert parsed["timeout_keep_alive"] == TOML["keep_alive_timeout"]
        assert parsed["timeout_graceful_shutdown"] == graceful and parsed["backlog"] == backlog
        assert (parsed["loop"], parsed["http"], parsed["access_log"]) == (
            "uvloop",
            "httptools",
            True,
        )
    else:
        assert (parsed["address"], parsed["port"], parsed["workers"]) == ("127.0.0.1", 18123, 3)
        assert parsed["workers_kill_timeout"] == graceful + TOML["shutdown_timeout"]
        assert parsed["backlog"] == backlog and parsed["log_access"] is True
        assert (parsed["interface"], parsed["loop"]) == ("asgi", "uvloop")


@pytest.mark.parametrize("server", ALL)
def test_the_labs_departures_are_options_of_the_table(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = servers.Run(
        "service.asgi:app", bind="127.0.0.1:18123", access_log=False, log_level="warning"
    )
    parsed = _parsed(server, run, monkeypatch)
    if server == "hypercorn":
        assert parsed["accesslog"] == "" and parsed["loglevel"] == "warning"
        assert parsed["keep_alive_timeout"] == TOML["keep_alive_timeout"]  # the rest as before
    elif server == "uvicorn":
        assert parsed["access_log"] is False and parsed["log_level"] == "warning"
    else:
        assert parsed["log_access"] is False and parsed["log_level"] == "warning"


def test_the_table_refuses_an_unknown_server() -> None:
    with pytest.raises(ValueError, match="unknown server 'nonesuch': one of hypercorn, uvicorn"):
        servers.command("nonesuch", RUN)
    with pytest.raises(ValueError, match="unknown server"):
        servers.options("nonesuch", RUN)


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
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "service", "serve"]
    server_process = spawn(
        command, env, log_path, ready=url + "/healthz", timeout=60, cwd=ROOT, inherit_env=False
    )
    try:
        articles = httpx.get(url + "/api/v1/articles", timeout=30)
        assert articles.status_code == 200
        assert f"serving with 1 {server} worker(s)" in log_path.read_text(errors="replace")
    finally:
        code = server_process.stop(60)
    assert code in CLEAN_EXIT, log_path.read_text(errors="replace")


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

"""A real ASGI server process serving an app, on a free loopback port, for tests over sockets.

Hypercorn with ``hypercorn.toml`` by default; ``TEST_SERVER=uvicorn`` or ``TEST_SERVER=granian``
(or ``LiveServer(..., server=...)``) runs the same tests against another server, with the
settings of ``hypercorn.toml`` mapped to its options (``service.edge.servers``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.cli.embedded import free_port
from service.cli.harness import Process, spawn
from service.edge import servers

ROOT = Path(__file__).resolve().parents[2]


SERVERS = tuple(servers.SERVERS)


def server_command(server: str, app_path: str, port: int) -> list[str]:
    """The command line of one worker of ``server`` serving ``app_path`` on 127.0.0.1:port,
    from the table ``python -m service serve`` reads too (``service.edge.servers``)."""
    run = servers.Run(app_path, bind=f"127.0.0.1:{port}", workers=1, config=ROOT / "hypercorn.toml")
    return servers.command(server, run)


class LiveServer:
    """One worker of an ASGI server (``server``, else ``TEST_SERVER``, else Hypercorn with
    ``hypercorn.toml``), bound to 127.0.0.1."""

    def __init__(
        self, app_path: str, env: dict[str, str], log_path: Path, *, server: str | None = None
    ) -> None:
        self.server = server or os.environ.get("TEST_SERVER") or "hypercorn"
        self.app_path = app_path
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.port = free_port()
        self.process: Process | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.command: list[str] | None = None  # set by ``as_deployed``

    def as_deployed(self, workers: int = 1) -> LiveServer:
        """Run as the image does, ``python -m service serve`` on this port with ``workers``
        Hypercorn workers under Newsdesk's master (``service.edge.master``), so SIGTERM
        drains them as in production (``Connection: close``, quiesce, then exit); the app is
        always ``service.asgi:app`` then. Call before ``start``."""
        self.env.update(
            {
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "WEB_CONCURRENCY": str(workers),
                "HYPERCORN_CONFIG": str(ROOT / "hypercorn.toml"),
            }
        )
        self.env.pop("BIND", None)
        self.command = [sys.executable, "-m", "service", "serve"]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LiveServer:
        self.process = spawn(
            self.command or server_command(self.server, self.app_path, self.port),
            self.env,
            self.log_path,
            ready=self.url + "/healthz",
            timeout=timeout,
            cwd=ROOT,
            name=f"{self.server} serving {self.app_path}",
        )
        self.proc = self.process.proc
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(30)

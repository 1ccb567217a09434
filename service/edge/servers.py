"""How to run the API on each ASGI server it supports: Hypercorn (the default), uvicorn and
granian, in one table (``SERVERS``).

Everything that starts a server reads it: ``python -m service serve`` (``service.edge.serve``,
in process), the tests' live servers (``tests/support/live.py``) and the benchmark lab
(``bench/lab/core.py``), both as a command line. For a ``Run`` (what app, on which bind, with
how many workers) and the settings of ``hypercorn.toml``:

* ``options(server, run)``: the server's options as the keyword arguments of its Python entry
  point (``uvicorn.run``, ``granian.Granian``; for Hypercorn, ``Config`` attributes set over
  the file, which Hypercorn reads itself);
* ``command(server, run)``: the same options as its command line (``python -m <server>``).

Hypercorn takes ``hypercorn.toml`` as it is (``--config``). uvicorn and granian get its
backlog, its keep-alive (uvicorn; granian has no such option) and its graceful timeout
(uvicorn's graceful shutdown; granian's kill timeout is the graceful plus the shutdown
timeout, as long as Hypercorn's master waits), and uvloop (plus httptools for uvicorn).

Where a caller deliberately differs it says so in the ``Run``, not in a table of its own:
``access_log=False`` (the lab measures serving, not logging), ``log_level`` (e.g. the lab's
``warning``), and ``extra``, flags of the server's own added last on its command line (e.g. an
access log file).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypercorn.config import Config

HYPERCORN_TOML = Path(__file__).resolve().parents[2] / "hypercorn.toml"


@dataclass(frozen=True)
class Run:
    """One server run: ``app`` (``module:attribute``) on ``bind`` (``host:port``; None:
    ``hypercorn.toml``'s) with ``workers`` processes, the settings from ``config``, and the
    caller's deliberate departures from them (see the module docstring)."""

    app: str
    bind: str | None = None
    workers: int = 1
    config: Path | str = HYPERCORN_TOML
    access_log: bool = True
    log_level: str | None = None
    extra: tuple[str, ...] = ()

    def settings(self) -> Config:
        """``hypercorn.toml`` (``config``) as Hypercorn reads it, its defaults included."""
        return Config.from_toml(self.config)

    def host_and_port(self, settings: Config) -> tuple[str, int]:
        host, _, port = (self.bind or settings.bind[0]).rpartition(":")
        return host, int(port)


Options = dict[str, Any]


@dataclass(frozen=True)
class Server:
    """One row of the table: the server's name in logs, its module (``python -m``), its
    options for a run, the command-line flags whose names are not the option's (``--`` and
    the name with dashes), and the flag that hands it ``hypercorn.toml`` itself, if any."""

    title: str
    module: str
    options: Callable[[Run, Config], Options]
    flags: Mapping[str, str]
    config_flag: str | None = None


def _hypercorn(run: Run, settings: Config) -> Options:
    options: Options = {"workers": run.workers}
    if run.bind:
        options["bind"] = [run.bind]
    if not run.access_log:
        options["accesslog"] = ""  # Hypercorn makes no access logger for an empty target
    if run.log_level:
        options["loglevel"] = run.log_level
    return options


def _common(run: Run, settings: Config, spelled: Mapping[str, str]) -> Options:
    """What uvicorn and granian both take, under their names (``spelled``: where granian's
    differ): bind, workers, backlog, access log and log level (if set)."""
    host, port = run.host_and_port(settings)
    values = {
        "host": host,
        "port": port,
        "workers": run.workers,
        "backlog": settings.backlog,
        "access_log": run.access_log,
        "log_level": run.log_level,
    }
    return {spelled.get(name, name): value for name, value in values.items() if value is not None}


def _uvicorn(run: Run, settings: Config) -> Options:
    return {
        **_common(run, settings, {}),
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "timeout_keep_alive": int(settings.keep_alive_timeout),
        "timeout_graceful_shutdown": int(settings.graceful_timeout),
    }


def _granian(run: Run, settings: Config) -> Options:
    return {
        **_common(run, settings, {"host": "address", "access_log": "log_access"}),
        "interface": "asgi",
        "loop": "uvloop",
        "workers_kill_timeout": int(settings.graceful_timeout + settings.shutdown_timeout),
    }


SERVERS: dict[str, Server] = {
    "hypercorn": Server(
        "Hypercorn",
        "hypercorn",
        _hypercorn,
        {"accesslog": "--access-logfile", "loglevel": "--log-level"},
        config_flag="--config",
    ),
    "uvicorn": Server("uvicorn", "uvicorn", _uvicorn, {}),
    "granian": Server(
        "granian", "granian", _granian, {"address": "--host", "log_access": "--access-log"}
    ),
}


def server(name: str) -> Server:
    """The table's row for ``name``; ValueError for a server it does not know."""
    found = SERVERS.get(name)
    if found is None:
        raise ValueError(f"unknown server {name!r}: one of {', '.join(SERVERS)}")
    return found


def options(name: str, run: Run) -> Options:
    """``name``'s options for ``run``, as its Python entry point's keyword arguments."""
    return server(name).options(run, run.settings())


def command(name: str, run: Run) -> list[str]:
    """The command line that serves ``run`` with ``name`` (this interpreter's ``-m``)."""
    row = server(name)
    argv = [sys.executable, "-m", row.module]
    if row.config_flag:
        argv += [row.config_flag, str(run.config)]
    for option, value in row.options(run, run.settings()).items():
        flag = row.flags.get(option, "--" + option.replace("_", "-"))
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag.removeprefix("--"))
        else:
            for item in value if isinstance(value, list) else [value]:
                argv += [flag, str(item)]
    return [*argv, *run.extra, run.app]

"""Command line: ``python -m service run | dev | serve | migrate | worker``.

- ``run``: the local stack in the foreground (``make run``). Starts embedded PostgreSQL and
  Redis in ``.data/`` unless ``DATABASE_URL`` / ``REDIS_URL`` are set, migrates, then serves
  the API on 127.0.0.1:``PORT`` (8000) with one arq worker beside it. Ctrl-C or SIGTERM stops
  the API, waits for it to exit, then the worker (its running jobs may finish), then the
  embedded servers, and leaves no process behind. Variables missing from the environment are
  taken from ``.env`` (see ``service.core.settings``).
- ``dev``: ``run`` with debug logging in text, restarting the API and the worker when a Python
  file under ``service/`` (or a ``RELOAD_DIRS`` directory) changes (``service.cli.dev``).
- ``serve``: Hypercorn with ``hypercorn.toml``, bind and worker count from the environment
  (``BIND``, or ``HOST``/``PORT``; ``WEB_CONCURRENCY``, by default the container's CPU quota,
  see ``service.core.cpus``). ``SERVER=uvicorn`` (uvloop, httptools) or
  ``SERVER=granian`` (``--interface asgi``, uvloop) serves the same app with the same bind,
  workers, backlog and graceful timeout (from ``hypercorn.toml``; uvicorn also its keep-alive).
  uvicorn serves HTTP/1.1 only; their access lines are their own (no route template or
  request id fields). They come with the ``servers`` extra (``pip install 'newsdesk[servers]'``).
- ``migrate``: ``alembic upgrade head``.
- ``worker [--settings module:Class]``: the arq workers, supervised
  (``service.jobs.worker.main``), one per role of ``WORKER_ROLES`` (interactive, bulk,
  periodic: a queue each) on one event loop, or the one ``--settings`` names: they survive
  Redis restarts and let running jobs finish on SIGTERM.
- ``create-user --email E --name N``: a user; the password comes from ``NEWSDESK_PASSWORD``,
  else a prompt (or the first line of a piped stdin). Prints the new user's id.
- ``create-api-key --email E --name N``: an API key for that user, printed once with its
  prefix.
- ``seed --count N [--authors A]``: N fake articles by A seed authors (``service.cli.seed``).
- ``healthcheck [--role api|worker|migrate]``: the image's HEALTHCHECK; the role defaults to
  the container's main command (``service.cli.healthcheck``).
- ``queue [--json]``: per job queue its depth, the age of its oldest job and whether a worker
  runs it, and the view-flush lag, read from ``REDIS_URL`` (``service.cli.queue_status``).

The last three use ``DATABASE_URL``; their errors (e-mail taken, unknown e-mail, invalid input,
database unreachable) are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from dotenv import dotenv_values

from service.cli import dev, harness, healthcheck, metrics_dir, queue_status
from service.cli.admin import count_arg, data_command, positive_arg
from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis, die_with_parent
from service.core.cpus import default_workers
from service.core.logs import configure_logging, default_log_format
from service.core.settings import env_file

log = logging.getLogger("service.cli.commands")
BIN = Path(sys.executable).parent


def serve() -> int:
    """Run Hypercorn with ``hypercorn.toml`` plus the environment's bind and worker count."""
    from hypercorn.config import Config
    from hypercorn.run import run

    from service.cli import master
    from service.web.access_log import AccessLogger

    config = Config.from_toml(os.environ.get("HYPERCORN_CONFIG", "hypercorn.toml"))
    config.application_path = "service.asgi:app"
    config.logger_class = AccessLogger  # access lines in LOG_FORMAT, with route and status
    if os.environ.get("BIND"):
        config.bind = [os.environ["BIND"]]
    elif os.environ.get("HOST") or os.environ.get("PORT"):
        host = os.environ.get("HOST", "0.0.0.0")
        config.bind = [f"{host}:{os.environ.get('PORT', '8000')}"]
    if os.environ.get("WEB_CONCURRENCY"):
        config.workers, why = int(os.environ["WEB_CONCURRENCY"]), "WEB_CONCURRENCY"
    else:
        config.workers, why = default_workers()
    server = os.environ.get("SERVER", "hypercorn")
    if server not in SERVERS:
        raise SystemExit(f"SERVER={server}: one of {', '.join(SERVERS)}")
    configure_logging("INFO")
    log.info("serving with %d %s worker(s): %s", config.workers, SERVERS[server], why)
    # Every worker records its metrics in one directory, clean, that /metrics merges.
    with metrics_dir.prepared():
        if server == "hypercorn" and (config.use_reloader or config.workers == 0):
            return int(run(config) or 0)
        if server == "hypercorn":  # our master: every worker finishes on SIGTERM
            return master.serve(config)
        _serve_with(server, config)
        return 0


SERVERS = {"hypercorn": "Hypercorn", "uvicorn": "uvicorn", "granian": "granian"}


def _serve_with(server: str, config: Any) -> None:
    """Serve ``config.application_path`` with uvicorn or granian, mapping Hypercorn's
    ``config`` (bind, workers, backlog, keep-alive, graceful timeout) to their options."""
    host, _, port = config.bind[0].rpartition(":")
    target, workers, backlog = config.application_path, config.workers, config.backlog
    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            target,
            host=host,
            port=int(port),
            workers=workers,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            backlog=backlog,
            timeout_keep_alive=int(config.keep_alive_timeout),
            timeout_graceful_shutdown=int(config.graceful_timeout),
            log_config=None,  # its loggers reach the root logger, in LOG_FORMAT
        )
        return
    from granian import Granian
    from granian.constants import Interfaces, Loops

    Granian(
        target,
        address=host,
        port=int(port),
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        backlog=backlog,
        workers_kill_timeout=int(config.graceful_timeout + config.shutdown_timeout),
        log_access=True,
    ).serve()


def migrate(env: dict[str, str] | None = None) -> None:
    """``alembic upgrade head`` in a child process (it runs its own event loop)."""
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], check=True, env=env)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    return harness.wait_until(harness.http_ok(url), proc, timeout, 0.25)


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    """Start the stop, once: the first SIGINT or SIGTERM raises ``_Stop``; every later one
    (a second Ctrl-C, a supervisor signalling again) is ignored, so it can never interrupt the
    stop in progress, its logging included, and the stop ends quietly with exit code 0."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        return  # a signal that was already being delivered when the first one was handled
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Stop(signal.Signals(signum).name)


def _stack_env(reload: bool) -> dict[str, str]:
    """The environment the stack's processes get: the process's own, over the dotenv file the
    settings read (``.env``, see ``service.core.settings``), over ``dev``'s defaults."""
    env: dict[str, str] = dict(dev.DEFAULTS) if reload else {}
    path = env_file()
    if path and Path(path).is_file():
        env.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    env.update(os.environ)
    return env


def _start(command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``python -m service <command>`` with ``env`` as its whole environment, its output on
    this process's."""
    return harness.spawn(
        [sys.executable, "-m", "service", command],
        env,
        None,
        inherit_env=False,
        start_new_session=True,  # Ctrl-C reaches this process only; it stops the rest in order
        preexec_fn=die_with_parent,
    ).proc


def _stop_in_order(children: list[tuple[str, subprocess.Popen[bytes], float]]) -> None:
    """SIGTERM each child in turn and wait for it to exit (killed after its timeout) before
    the next one is signalled."""
    for name, child, timeout in children:
        if child.poll() is None:
            log.info("stopping the %s (pid %d, SIGTERM)", name, child.pid)
            child.terminate()
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("the %s did not stop within %.0fs; killing it", name, timeout)
                child.kill()
                child.wait()
        log.info("the %s has stopped (exit code %s)", name, child.returncode)


def run_stack(data_dir: Path, *, reload: bool = False) -> int:
    """Embedded servers (when needed), migrations, API and worker; stop all on a signal, the
    API first, then the worker, then the embedded servers. ``reload``: ``python -m service
    dev``, restarting the API and the worker when code changes (``service.cli.dev``)."""
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    env = _stack_env(reload)
    level = env.get("LOG_LEVEL", "INFO").upper()
    configure_logging(
        level if level in ("DEBUG", "WARNING", "ERROR") else "INFO",
        default_log_format(env.get("ENV"), env.get("LOG_FORMAT")),
    )
    watched = dev.watch_paths(env) if reload else []
    port = env.get("PORT", "8000")
    env["BIND"] = f"127.0.0.1:{port}"
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    children: list[tuple[str, subprocess.Popen[bytes], float]] = []
    try:
        if not env.get("DATABASE_URL"):
            postgres = EmbeddedPostgres(data_dir / "postgres").start()
            env["DATABASE_URL"] = postgres.ensure_database("newsdesk")
            log.info(
                "embedded PostgreSQL on 127.0.0.1:%s (data in %s)", postgres.port, postgres.data_dir
            )
        if not env.get("REDIS_URL"):
            redis = EmbeddedRedis(data_dir / "redis").start()
            env["REDIS_URL"] = redis.url()
            log.info("embedded Redis on 127.0.0.1:%s (data in %s)", redis.port, redis.data_dir)
        migrate(env)
        # The API's metrics directory in the data folder (`serve` empties it at start); the
        # worker serves its own metrics port instead (service.jobs.metrics).
        api_env = {metrics_dir.VARIABLE: str((data_dir / "metrics").resolve()), **env}
        worker_env = {k: v for k, v in env.items() if k != metrics_dir.VARIABLE}
        worker_env.setdefault("WORKER_METRICS_HOST", "127.0.0.1")
        # Stopped in this order; the worker may take WORKER_SHUTDOWN_WAIT_SECONDS for its jobs
        # and up to 30 s more to close.
        worker_wait = float(env.get("WORKER_SHUTDOWN_WAIT_SECONDS", "20")) + 40

        def start_all() -> None:
            children.append(("API", _start("serve", api_env), 30.0))
            children.append(("worker", _start("worker", worker_env), worker_wait))

        start_all()
        base = f"http://127.0.0.1:{port}"
        worker_metrics = f"http://127.0.0.1:{worker_env.get('WORKER_METRICS_PORT', '9101')}"
        if _wait_ready(base + "/readyz", children[0][1], 60):
            print(
                f"\nNewsdesk is up.\n  API:        {base}/api/v1\n"
                f"  API docs:   {base}/docs (OpenAPI: {base}/api/v1/openapi.json)\n"
                f"  liveness:   {base}/healthz\n  readiness:  {base}/readyz\n"
                f"  metrics:    {base}/metrics (worker: {worker_metrics}/metrics)\n"
                + (
                    f"Reloading on changes to Python files in: {', '.join(map(str, watched))}\n"
                    if reload
                    else ""
                )
                + "Ctrl-C stops the API, then the worker, then the embedded servers.\n",
                flush=True,
            )
        if not reload:
            idle = threading.Event()  # never set: wait() is an interruptible pause
            while all(child.poll() is None for _, child, _ in children):
                idle.wait(0.5)
            log.error("a child process exited; stopping everything")
            return 1
        reported: set[int] = set()
        for changed in dev.changes(watched):
            if changed:
                shown = ", ".join(changed[:3]) + (
                    f" and {len(changed) - 3} more" if len(changed) > 3 else ""
                )
                log.info("changed: %s; restarting the API and the worker", shown)
                _stop_in_order(children)
                children.clear()
                reported.clear()
                start_all()
                if _wait_ready(base + "/readyz", children[0][1], 60):
                    log.info("reloaded: the API is ready on %s", base)
                continue
            for name, child, _ in children:
                if child.poll() is not None and child.pid not in reported:
                    reported.add(child.pid)
                    log.error(
                        "the %s exited (code %s); it starts again on the next change",
                        name,
                        child.returncode,
                    )
        return 0
    except _Stop as stop:
        log.info("%s received; stopping the API, then the worker, then the servers", stop)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_in_order(children)
        if redis is not None:
            log.info("stopping embedded Redis")
            redis.stop()
        if postgres is not None:
            log.info("stopping embedded PostgreSQL")
            postgres.stop()
        log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="the local stack in the foreground")
    run_parser.add_argument("--data-dir", type=Path, default=Path(".data"))
    dev_parser = commands.add_parser(
        "dev", help="the local stack, restarted on code changes, with debug logging"
    )
    dev_parser.add_argument("--data-dir", type=Path, default=Path(".data"))
    commands.add_parser("serve", help="Hypercorn with hypercorn.toml (SERVER=uvicorn|granian)")
    commands.add_parser("migrate", help="alembic upgrade head")
    worker_parser = commands.add_parser("worker", help="the arq worker, supervised")
    worker_parser.add_argument(
        "--settings",
        default=None,
        help="one arq WorkerSettings class, as module:Class (default: a worker per role of "
        "WORKER_ROLES: worker:InteractiveSettings, worker:BulkSettings, worker:PeriodicSettings)",
    )
    user_parser = commands.add_parser(
        "create-user", help="create a user (password from NEWSDESK_PASSWORD or a prompt)"
    )
    user_parser.add_argument("--email", required=True)
    user_parser.add_argument("--name", required=True)
    key_parser = commands.add_parser(
        "create-api-key", help="issue an API key for a user; printed once"
    )
    key_parser.add_argument("--email", required=True, help="the user's e-mail")
    key_parser.add_argument("--name", required=True, help="a label for the key")
    seed_parser = commands.add_parser("seed", help="insert fake articles (bulk COPY)")
    seed_parser.add_argument("--count", type=count_arg, required=True, help="articles to insert")
    seed_parser.add_argument("--authors", type=positive_arg, default=100, help="seed authors")
    seed_parser.add_argument("--batch", type=positive_arg, default=50_000, help="rows per COPY")
    seed_parser.add_argument("--random-seed", type=int, default=1, help="for repeatable data")
    seed_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    health_parser = commands.add_parser("healthcheck", help="the image's HEALTHCHECK, per role")
    health_parser.add_argument("--role", choices=["auto", *healthcheck.ROLES], default="auto")
    queue_parser = commands.add_parser(
        "queue", help="job queue depth, oldest job age, workers and view-flush lag"
    )
    queue_parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    if args.command == "queue":
        return queue_status.run(args.json)
    if args.command in ("create-user", "create-api-key", "seed"):
        return data_command(args)
    if args.command in ("run", "dev"):
        return run_stack(args.data_dir, reload=args.command == "dev")
    if args.command == "serve":
        return serve()
    if args.command == "healthcheck":
        return healthcheck.run(args.role)
    if args.command == "worker":
        import importlib

        # One process, one in-memory registry on its own port (service.jobs.metrics): no
        # multiprocess files, whatever the environment says (before prometheus_client loads).
        os.environ.pop(metrics_dir.VARIABLE, None)
        from service.jobs import worker

        if args.settings is None:
            return worker.main()  # a worker per role of WORKER_ROLES
        module, _, name = args.settings.partition(":")
        settings_cls = getattr(importlib.import_module(module), name or "WorkerSettings")
        return worker.main(settings_cls)
    migrate()
    return 0

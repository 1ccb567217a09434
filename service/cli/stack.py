"""The local stack of ``python -m service run`` and ``dev``: ``run_stack``.

Embedded PostgreSQL and Redis in the data directory unless ``DATABASE_URL`` / ``REDIS_URL``
are set, migrations, then the API (``python -m service serve`` on 127.0.0.1:``PORT``) and one
arq worker as child processes. A signal stops the API, waits for it to exit, then the worker
(its running jobs may finish), then the embedded servers, and leaves no process behind;
``reload`` (``dev``) restarts the API and the worker when code changes (``service.cli.dev``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

from dotenv import dotenv_values

from service.cli import dev, harness
from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis, die_with_parent
from service.core.logs import configure_logging, default_log_format
from service.core.settings import env_file
from service.edge import metrics_dir

log = logging.getLogger(__name__)


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

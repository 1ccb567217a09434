"""The servers the fault suite runs and breaks: its own PostgreSQL, Redis, API and worker.

Everything lives in one temporary directory and listens on 127.0.0.1 only, on free ports.
PostgreSQL runs durable (fsync on, as in production) and Redis with its append-only file
(``appendfsync everysec``, Redis's default when persistence is on), because what survives a
crash is part of what is measured. The API is the production command, ``python -m service
serve`` with ``WEB_CONCURRENCY=2``; the worker ``python -m service worker`` (every queue).
Both die with this process if it is killed (``PR_SET_PDEATHSIG``); ``close()`` stops
whatever is still running.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from bench.lab.core import ROOT, prepare
from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis, die_with_parent, free_port
from service.cli.harness import Process, Ready, spawn

DATABASE = "faults"
LOGIN_EMAIL_LIMIT = 5  # wrong-password logins per e-mail and hour (the saturated-loop case)


class Stack:
    def __init__(self, work: Path, articles: int) -> None:
        self.work = work
        self.articles = articles
        self.postgres = EmbeddedPostgres(work / "postgres", durable=True)
        self.redis = EmbeddedRedis(work / "redis", durable=True)
        self.port = free_port()
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return self.postgres.url(DATABASE)

    def start(self) -> None:
        self.postgres.start()
        self.redis.start()
        prepare(self.postgres.ensure_database(DATABASE), self.articles, progress=False)
        self.env = {
            **os.environ,
            "ENV_FILE": "",  # never the checkout's .env
            "ENV": "test",
            "PASSWORD_RESET_URL": "http://127.0.0.1/reset-password#token={token}",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url(),
            "BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": "2",
            "PROMETHEUS_MULTIPROC_DIR": str(self.work / "metrics"),
            "WORKER_METRICS_HOST": "127.0.0.1",
            "WORKER_METRICS_PORT": str(free_port()),
            "MAIL_OUTBOX": str(self.work / "outbox"),
            "LOG_LEVEL": "WARNING",
            # The load comes from one address and one API key: limits that do not refuse it.
            "RATE_LIMIT_READ": "100000000/minute",
            "RATE_LIMIT_WRITE": "100000000/minute",
            "RATE_LIMIT_REGISTER": "100000/hour",
            "RATE_LIMIT_LOGIN_IP": "100000/minute",
            "RATE_LIMIT_LOGIN_EMAIL": f"{LOGIN_EMAIL_LIMIT}/hour",
            # Production budgets where an outage is measured, a little more patient where a
            # busy shared machine would otherwise look like a failing Redis.
            "CACHE_TIMEOUT": "1",
            "DB_POOL_TIMEOUT": "5",
            "DB_CONNECT_TIMEOUT": "5",
            "READINESS_TIMEOUT": "5",
            "VIEW_FLUSH_SECONDS": "1",
        }
        self.start_api()
        self.start_worker()

    def _spawn(
        self, command: str, log: str, *, ready: Ready = None, timeout: float = 60, **extra: str
    ) -> subprocess.Popen[bytes]:
        return spawn(
            [sys.executable, "-m", "service", command],
            {**self.env, **extra},
            self.work / log,
            ready=ready,
            timeout=timeout,
            cwd=ROOT,
            inherit_env=False,  # self.env holds this process's environment already
            name=f"service {command}",
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        ).proc

    def start_api(self) -> None:
        self.api = self._spawn("serve", "api.log", ready=self.url + "/healthz", timeout=120)

    def start_worker(self) -> None:
        # INFO: each view flush logs a line, which the worker-kill case waits for.
        self.worker = self._spawn("worker", "worker.log", LOG_LEVEL="INFO")

    def log(self, name: str) -> str:
        path = self.work / name
        return path.read_text(errors="replace") if path.exists() else ""

    def api_workers(self) -> list[psutil.Process]:
        """The Hypercorn worker processes under the API's master."""
        if self.api is None or self.api.poll() is not None:
            return []
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.api.pid).children()
        return []

    def kill_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.kill()
            self.worker.wait()
        self.worker = None

    def kill_redis(self) -> None:
        assert self.redis.proc is not None
        self.redis.proc.kill()
        self.redis.proc.wait()
        self.redis.proc = None

    def ensure_up(self) -> None:
        """Every server running again (after a case that failed half-way)."""
        if not self.postgres.running:
            self.postgres.start()
        if not self.redis.running:
            self.redis.start()
        for process in self.api_workers():  # a case may have paused them
            with contextlib.suppress(psutil.Error):
                process.resume()
        if self.api is None or self.api.poll() is not None:
            self.start_api()
        if self.worker is None or self.worker.poll() is not None:
            self.start_worker()

    def metric(self, name: str) -> float:
        """The sum of the API's series ``name`` in ``/metrics`` (0 when absent)."""
        text = httpx.get(self.url + "/metrics", timeout=30).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def close(self) -> None:
        for process in self.api_workers():
            with contextlib.suppress(psutil.Error):
                process.resume()
        for proc, log in ((self.api, "api.log"), (self.worker, "worker.log")):
            if proc is not None:
                Process(proc, self.work / log, log).stop(60)
        self.redis.stop()
        self.postgres.stop()

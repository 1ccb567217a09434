"""Session fixtures: real PostgreSQL and Redis servers, a real Hypercorn serving the app; and
the factories a test or module starts its own processes with (``live_server(**env)``,
``worker(**env)``, ``nginx(*servers)``, their ``module_`` variants, stopped after it) and the
SMTP sink (``smtp``).
Every process goes through the one harness, ``service.cli.harness.spawn``."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
import httpx
import pytest

from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis
from service.cli.harness import Ready
from service.cli.nginx import Nginx
from service.core.settings import ENV_FILE_VARIABLE
from tests.support.databases import ServerStack, migrate, plain_url, start_stack
from tests.support.live import LiveServer
from tests.support.smtp import SmtpServer, smtp_server
from tests.support.worker import WorkerProcess

# No dotenv file for the tests and every process they start: a developer's .env (read by
# Settings and `python -m service run`) must not change their outcome.
os.environ[ENV_FILE_VARIABLE] = ""
# Outside development the server will not start without a reset page of its own (a link
# built from the Host header would follow any host a client names); tests of the link set
# their own.
os.environ.setdefault("PASSWORD_RESET_URL", "http://127.0.0.1/reset-password#token={token}")

# The live server's pool: small, so pool-sharing assertions are meaningful.
POOL_SIZE = 5
MAX_OVERFLOW = 2
MAX_BODY = 256 * 1024

APP = "service.asgi:app"  # the production app
PROBE_APP = "tests.support.probe_app:app"  # the app plus the test probes (/_test/...)


@contextlib.contextmanager
def outside_basetemp(prefix: str) -> Iterator[Path]:
    """A directory for an embedded PostgreSQL, outside pytest's temporary root. PostgreSQL
    runs as its own user under root and must traverse the path to its data; every pytest
    session that starts on the machine sets that root back to mode 0700 (pytest's own
    safety rule), which would cut a running server off its files."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[ServerStack]:
    with outside_basetemp("newsdesk-test-servers-") as directory:
        running = start_stack(directory)
        yield running
        running.close()


def server_env(stack: ServerStack, **extra: str) -> dict[str, str]:
    env = {
        "ENV": "test",
        "DATABASE_URL": stack.database_url,
        "REDIS_URL": stack.redis_url,
        "DB_POOL_SIZE": str(POOL_SIZE),
        "DB_MAX_OVERFLOW": str(MAX_OVERFLOW),
        "MAX_CONTENT_LENGTH": str(MAX_BODY),
        # Generous limits: the suite registers and logs in many users from one address.
        # tests/test_ratelimit.py runs its own server with tight ones.
        "RATE_LIMIT_REGISTER": "100000/hour",
        "RATE_LIMIT_LOGIN_IP": "100000/minute",
        "RATE_LIMIT_LOGIN_EMAIL": "100000/minute",
        "RATE_LIMIT_WRITE": "100000/minute",
        "RATE_LIMIT_READ": "100000/minute",
        "RATE_LIMIT_AUTH_FAILURES": "100000/minute",
        "RATE_LIMIT_SEARCH": "100000/minute",
        "RATE_LIMIT_RESET_ADDRESS": "100000/hour",
        # Patient timeouts: on a machine whose cores are busy with other work a healthy Redis or
        # PostgreSQL can take far longer than the production budgets (CACHE_TIMEOUT 0.25 s), and
        # a timeout would open the Redis breaker and change what a test observes. Tests of
        # timeouts and outages set their own.
        "CACHE_TIMEOUT": "5",
        "REDIS_SOCKET_TIMEOUT": "10",
        "READINESS_TIMEOUT": "10",
        "DB_POOL_TIMEOUT": "30",
        "DB_CONNECT_TIMEOUT": "30",
        # A login queued for a hashing thread on such a machine may wait past the 2 s default
        # and get 503 (tests/security/test_password_hashing.py tests that wait itself).
        "PASSWORD_HASH_WAIT_SECONDS": "30",
        # Nor may a loaded loop take an instance out of readiness (tests/web/api/test_health.py
        # tests the stall itself).
        "READINESS_MAX_LOOP_LAG": "30",
        # Workers and their CPU processes at full priority: on a machine whose cores other work
        # keeps busy, an idle-priority step would never run and a niced one would measure that
        # load, not the queues (tests/jobs/test_cpu_pool.py tests these settings themselves).
        "WORKER_NICE": "0",
        "WORKER_CPU_IDLE": "false",
        "WORKER_CPU_NICE": "0",
    }
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def live(stack: ServerStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The app plus test probes, served by a real Hypercorn over loopback sockets."""
    servers = LiveServers(stack, tmp_path_factory.mktemp("live"))
    server = servers(PROBE_APP, start=False)
    # Reset links lead to this server's own page (tests/web/test_reset_page.py opens them).
    server.env["PASSWORD_RESET_URL"] = f"{server.url}/reset-password#token={{token}}"
    server.start()
    yield server
    servers.stop()


class _Stoppable(Protocol):
    def stop(self) -> None: ...


P = TypeVar("P", bound=_Stoppable)


class _Fleet(Generic[P]):
    """Processes a test (or a module) starts on the suite's stack, each logging to its own
    file in ``folder`` (``<kind>.log``, ``<kind>-1.log``...); ``stop()`` stops every one."""

    kind = "process"

    def __init__(self, stack: ServerStack, folder: Path) -> None:
        self.stack = stack
        self.folder = folder
        self.started: list[P] = []

    def _log(self, name: str | None) -> Path:
        count = len(self.started)
        return self.folder / (name or (f"{self.kind}-{count}.log" if count else f"{self.kind}.log"))

    def _keep(self, process: P) -> P:
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.started):
            process.stop()


class LiveServers(_Fleet[LiveServer]):
    """``live_server(app=APP, **env)``: a started ``LiveServer`` with ``env`` over
    ``server_env``'s (``start=False``: not started yet, to set more of its ``env``)."""

    kind = "server"

    def __call__(
        self,
        app: str = APP,
        *,
        server: str | None = None,
        log: str | None = None,
        timeout: float = 30.0,
        start: bool = True,
        **env: str,
    ) -> LiveServer:
        settings = server_env(self.stack, **env)
        live = self._keep(LiveServer(app, settings, self._log(log), server=server))
        return live.start(timeout) if start else live


class Workers(_Fleet[WorkerProcess]):
    """``worker(**env)``: a started ``WorkerProcess``, ``env`` over its defaults, ready when
    ``ready`` holds (a log line, say; by default at once); ``command`` for another command
    line than ``python -m service worker``."""

    kind = "worker"

    def __call__(
        self,
        *,
        settings: str | None = None,
        command: list[str] | None = None,
        log: str | None = None,
        ready: Ready = None,
        start: bool = True,
        **env: str,
    ) -> WorkerProcess:
        log_path = self._log(log)
        process = WorkerProcess(self.stack, log_path, settings=settings, command=command, **env)
        self._keep(process)
        return process.start(ready) if start else process


class Proxies(_Fleet[Nginx]):
    """``nginx(*servers)``: nginx running the shipped configuration (``service.cli.nginx``) in
    front of ``servers``, one upstream ``server`` line each, listening on a free loopback port;
    its files in a directory of its own in ``folder``. The servers trust it as a proxy only
    when started with ``TRUSTED_PROXIES=127.0.0.1``."""

    kind = "nginx"

    def __call__(self, *servers: LiveServer, workers: int = 1) -> Nginx:
        count = len(self.started)
        work = self.folder / (f"{self.kind}-{count}" if count else self.kind)
        upstreams = [f"127.0.0.1:{server.port}" for server in servers]
        return self._keep(Nginx(work, upstreams, workers=workers)).wait_listening()


F = TypeVar("F", bound=_Fleet[Any])


def _stopped_after(fleet: F) -> Iterator[F]:
    yield fleet
    fleet.stop()


@pytest.fixture
def live_server(stack: ServerStack, tmp_path: Path) -> Iterator[LiveServers]:
    """Live servers of the test's own (``live_server(**env)``), stopped after it."""
    yield from _stopped_after(LiveServers(stack, tmp_path))


@pytest.fixture(scope="module")
def module_live_server(
    stack: ServerStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServers]:
    """As ``live_server``, for module-scoped fixtures: stopped after the module."""
    yield from _stopped_after(LiveServers(stack, tmp_path_factory.mktemp("live")))


@pytest.fixture
def worker(stack: ServerStack, tmp_path: Path) -> Iterator[Workers]:
    """arq worker processes of the test's own (``worker(**env)``), stopped after it."""
    yield from _stopped_after(Workers(stack, tmp_path))


@pytest.fixture(scope="module")
def module_worker(
    stack: ServerStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    """As ``worker``, for module-scoped fixtures: stopped after the module."""
    yield from _stopped_after(Workers(stack, tmp_path_factory.mktemp("worker")))


@pytest.fixture
def nginx(stack: ServerStack, tmp_path: Path) -> Iterator[Proxies]:
    """nginx processes of the test's own (``nginx(*servers)``), stopped after it."""
    yield from _stopped_after(Proxies(stack, tmp_path))


@pytest.fixture(scope="module")
def module_nginx(stack: ServerStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxies]:
    """As ``nginx``, for module-scoped fixtures: stopped after the module."""
    yield from _stopped_after(Proxies(stack, tmp_path_factory.mktemp("nginx")))


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    """An SMTP sink (aiosmtpd in a thread of this process) keeping what it receives."""
    with smtp_server() as server:
        yield server


@pytest.fixture
async def client(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        yield http


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server of the test's own, which it may stop and start again (same port) and
    whose queue holds only its own jobs."""
    server = EmbeddedRedis(tmp_path / "redis", durable=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def module_own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """As ``own_redis``, shared by a module's tests: its queues hold only what they enqueue."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis") / "redis", durable=False).start()
    yield server
    server.stop()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of the test's own that keeps its data across a restart (cache entries and the
    job queue survive an outage the test makes)."""
    server = EmbeddedRedis(tmp_path / "redis", durable=True).start()
    yield server
    server.stop()


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of the test's own, its database ``outage`` migrated, which the test may
    stop and start again (same port) without touching the suite's database."""
    with outside_basetemp("newsdesk-test-outage-") as directory:
        server = EmbeddedPostgres(directory / "postgres", durable=False).start()
        database = server.ensure_database("outage")
        migrate(database)
        yield server
        server.stop()


@pytest.fixture
async def pg(stack: ServerStack) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test database, for checks from outside the app."""
    conn = await asyncpg.connect(plain_url(stack.database_url))
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def root() -> Path:
    return Path(__file__).resolve().parents[1]

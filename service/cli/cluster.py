"""The scalability guide's architecture on one machine: ``python -m service cluster``.

One nginx (the shipped ``deploy/nginx/newsdesk.conf``, its upstream list filled in) in front of
several API instances (``python -m service serve`` each on a port of its own, its own metrics
directory); Redis as cache and session store behind Sentinel (a master, a replica, three
Sentinels); PostgreSQL as a primary and a streaming replica that serves the reads that may lag;
one arq worker process per role (interactive, bulk, periodic); the failover controller
(``service.cli.failover``) promotes the replica when the primary stops answering, and the app
follows through its multi-host ``DATABASE_URL``. Every process is a child started
through ``service.cli.harness`` (the servers through their embedded runners), every file under
one work directory. With ``--image`` the API instances, the workers and the migration run from
the container image instead (``service.cli.in_image``: ``docker run`` on the host's network, as
the compose file runs it), so the fleet under test is the one that ships.

``Cluster`` is the Python API the fleet tests build on; ``run_cluster`` is the command: it
brings the fleet up in dependency order (the databases, migrations, the instances, the workers,
nginx), waits until each part is ready, prints what runs where, then waits; a signal stops it in
reverse order (nginx first, so no request reaches an instance that is stopping; the instances
gracefully; the workers, whose jobs may finish; Redis; the replica; the primary).

The pools are sized so the whole fleet fits the primary's ``max_connections`` even when every
connection lands on one server (after a failover the promoted replica takes them all):
``budget`` computes them and prints the sum.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service.cli import harness
from service.cli.embedded import die_with_parent, free_port
from service.cli.failover import Failover
from service.cli.in_image import Containers
from service.cli.nginx import Nginx
from service.cli.replication import Replication
from service.cli.sentinel import SentinelCluster
from service.cli.smoke import SmokeFailed, smoke
from service.cli.stack import _raise_stop, _stack_env, _Stop, migrate
from service.core.logs import configure_logging, default_log_format
from service.edge import metrics_dir

log = logging.getLogger(__name__)

ROLES = ("interactive", "bulk", "periodic")
RESERVED = 10  # connections kept for migrations, psql and an operator's session
START_TIMEOUT = 90.0  # seconds for one process to become ready on a busy machine
# What the fleet must not inherit from the shell or .env: the cluster sets each of these.
OWN = (
    "DATABASE_URL",
    "DATABASE_READ_URL",
    "REDIS_URL",
    "CACHE_REDIS_URL",
    "BIND",
    "HOST",
    "PORT",
    "WORKER_ROLES",
    "WORKER_METRICS_PORT",
    metrics_dir.VARIABLE,
)


@dataclass(frozen=True)
class Budget:
    """PostgreSQL connections: per engine ``pool`` + ``overflow``; an API process has two
    engines (primary and replica URLs), a worker one (it reads nothing that may lag)."""

    max_connections: int
    instances: int
    web_concurrency: int
    workers: int
    pool: int
    overflow: int

    @property
    def per_engine(self) -> int:
        return self.pool + self.overflow

    @property
    def total(self) -> int:
        api = self.instances * self.web_concurrency * 2 * self.per_engine
        return api + self.workers * self.per_engine + RESERVED

    def line(self) -> str:
        return (
            f"PostgreSQL connections: {self.instances} instances x {self.web_concurrency} "
            f"process x 2 engines x ({self.pool} pool + {self.overflow} overflow) + "
            f"{self.workers} workers x 1 engine x ({self.pool} + {self.overflow}) + "
            f"{RESERVED} reserved = {self.total} <= max_connections {self.max_connections}"
        )


def budget(max_connections: int, instances: int, web_concurrency: int, workers: int) -> Budget:
    """The largest equal pools that fit: two thirds kept open, one third overflow."""
    engines = instances * web_concurrency * 2 + workers
    per_engine = (max_connections - RESERVED) // engines
    if per_engine < 2:
        raise ValueError(
            f"max_connections {max_connections} is too small for {engines} engines "
            f"(2 connections each at least, plus {RESERVED} reserved)"
        )
    overflow = per_engine // 3
    return Budget(
        max_connections, instances, web_concurrency, workers, per_engine - overflow, overflow
    )


class Member:
    """One app process of the fleet (an API instance or a worker): its command and
    environment are kept, so it can be killed and started again the same way."""

    def __init__(
        self,
        role: str,
        command: str,
        env: dict[str, str],
        log: Path,
        address: str,
        ready: str,
        containers: Containers | None = None,
    ) -> None:
        self.role = role
        self.containers = containers
        if containers is None:
            self.command = [sys.executable, "-m", "service", command]
            self.env = env
        else:  # the same command in the image (service.cli.in_image)
            env = containers.env(env)
            self.command = containers.command(role, ["python", "-m", "service", command], env)
            self.env = containers.cli_env(env)
        self.log_path = log
        self.address = address
        self.ready = ready
        self.process: harness.Process | None = None
        self._log_start = 0  # where this run's output begins in the (appended) log

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    def running(self) -> bool:
        return self.process is not None and self.process.running()

    def launch(self) -> Member:
        """Start without waiting (``wait_ready`` waits), its output appended to its log."""
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = harness.spawn(
            self.command,
            self.env,
            self.log_path,
            inherit_env=False,
            name=self.role,
            start_new_session=True,  # a Ctrl-C reaches the cluster only; it stops the rest
            preexec_fn=die_with_parent,
        )
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> Member:
        """Until the ready URL answers 200, or the ready line appears in this run's output
        (not an earlier run's, before a restart)."""
        assert self.process is not None
        ready: harness.Ready = self.ready
        if not self.ready.startswith("http"):
            ready = self._logged_since_launch
        self.process.wait_ready(ready, timeout, 0.25)
        return self

    def _logged_since_launch(self) -> bool:
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return self.ready.encode() in log.read()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (a graceful stop), SIGKILL after ``timeout`` seconds."""
        if self.process is not None:
            self.process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL to the whole process group (each member runs in a session of its own): a
        crash of the member, its Hypercorn workers included, as when a container is killed."""
        if self.process is not None and self.process.running():
            if self.containers is not None:  # the container, not only its docker command
                self.containers.kill(self.role)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.proc.wait(30)

    def restart(self, timeout: float = START_TIMEOUT) -> Member:
        """Stop (if running), start again and wait until ready."""
        self.stop()
        return self.launch().wait_ready(timeout)


class Instance(Member):
    """An API instance: ``python -m service serve`` on 127.0.0.1:``port``."""

    def __init__(
        self, index: int, env: dict[str, str], work: Path, containers: Containers | None = None
    ) -> None:
        self.port = free_port()
        directory = work / f"api{index}"
        directory.mkdir(parents=True, exist_ok=True)
        env = {
            **env,
            "BIND": f"127.0.0.1:{self.port}",
            metrics_dir.VARIABLE: str(directory / "metrics"),
        }
        url = f"http://127.0.0.1:{self.port}"
        log_path = directory / "api.log"
        super().__init__(f"api {index}", "serve", env, log_path, url, url + "/readyz", containers)

    @property
    def url(self) -> str:
        return self.address


class Worker(Member):
    """An arq worker process of one role, its metrics on a port of its own."""

    def __init__(
        self, role: str, env: dict[str, str], work: Path, containers: Containers | None = None
    ) -> None:
        self.metrics_port = free_port()
        env = {
            **env,
            "WORKER_ROLES": role,
            "WORKER_METRICS_HOST": "127.0.0.1",
            "WORKER_METRICS_PORT": str(self.metrics_port),
        }
        address = f"metrics http://127.0.0.1:{self.metrics_port}"
        log_path = work / f"worker-{role}.log"
        ready = "Starting worker"
        super().__init__(f"worker {role}", "worker", env, log_path, address, ready, containers)


class Cluster:
    """The whole fleet under ``work_dir``; ``start()``, then ``nginx_url`` and the parts."""

    def __init__(
        self,
        work_dir: Path,
        *,
        instances: int = 3,
        synchronous_commit: bool = True,
        max_connections: int = 100,
        web_concurrency: int = 1,
        port: int | None = None,
        durable: bool = True,
        failover: bool = True,
        env: dict[str, str] | None = None,
        image: str | None = None,
    ) -> None:
        self.work = Path(work_dir).resolve()
        # The API instances, workers and migration from the container image, not this
        # checkout (service.cli.in_image); the servers around them stay this machine's.
        self.containers = Containers(image) if image else None
        # The failover controller (service.cli.failover): promotes the replica when the
        # primary stops answering; off for a drill that promotes by hand.
        self._want_failover = failover
        self.failover: Failover | None = None
        self.port = port
        self.budget = budget(max_connections, instances, web_concurrency, len(ROLES))
        self.postgres = Replication(
            self.work / "postgres",
            synchronous_commit=synchronous_commit,
            max_connections=max_connections,
            durable=durable,
        )
        self.redis = SentinelCluster(self.work / "redis")
        base = {k: v for k, v in _stack_env(reload=False).items() if k not in OWN}
        self.env = {
            **base,
            "WEB_CONCURRENCY": str(web_concurrency),
            "TRUSTED_PROXIES": "127.0.0.1",
            "DB_POOL_SIZE": str(self.budget.pool),
            "DB_MAX_OVERFLOW": str(self.budget.overflow),
            **(env or {}),
        }
        self.instance_count = instances
        self.instances: list[Instance] = []
        self.workers: dict[str, Worker] = {}
        self.nginx: Nginx | None = None

    @property
    def nginx_url(self) -> str:
        if self.nginx is None:
            raise RuntimeError("the cluster is not started")
        return self.nginx.url

    def start(self) -> Cluster:
        """Everything, in dependency order, each part ready before the next; on any failure
        what was started is stopped again and the error raised."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        log.info("starting PostgreSQL: primary and streaming replica")
        self.postgres.start()
        if self._want_failover:
            self.failover = Failover.from_env(self.postgres).start()
        log.info("starting Redis under Sentinel: master, replica, 3 Sentinels")
        self.redis.start()
        if self.containers is not None:
            log.info(
                "running the migration, instances and workers from the image %s",
                self.containers.image,
            )
            self.containers.migrate({**self.env, "DATABASE_URL": self.postgres.primary_url})
        else:
            migrate({**self.env, "DATABASE_URL": self.postgres.primary_url})
        app = {
            **self.env,
            "DATABASE_URL": self.postgres.database_url,
            "REDIS_URL": self.redis.url(),
        }
        api_env = {**app, "DATABASE_READ_URL": self.postgres.read_url}
        self.instances = [
            Instance(i + 1, api_env, self.work, self.containers) for i in range(self.instance_count)
        ]
        self.workers = {role: Worker(role, app, self.work, self.containers) for role in ROLES}
        log.info("starting %d API instances and %d workers", len(self.instances), len(ROLES))
        members: list[Member] = [*self.instances, *self.workers.values()]
        for member in members:
            member.launch()
        for member in members:
            member.wait_ready()
        upstreams = [f"127.0.0.1:{instance.port}" for instance in self.instances]
        self.nginx = Nginx(self.work / "nginx", upstreams, port=self.port)
        self.nginx.wait_listening()
        # /healthz: the shipped file answers /readyz itself (404), for orchestrators only.
        self.nginx.process.wait_ready(self.nginx.url + "/healthz", START_TIMEOUT)

    def members(self) -> list[Member]:
        return [*self.instances, *self.workers.values()]

    def running(self) -> bool:
        """Whether nginx and every app process still run."""
        nginx = self.nginx is not None and self.nginx.process.running()
        return nginx and all(member.running() for member in self.members())

    def rows(self) -> list[tuple[str, int, str, str]]:
        """What runs where: role, pid, address, log file."""
        rows: list[tuple[str, int, str, str]] = []
        if self.nginx is not None:
            error_log = str(self.nginx.work / "error.log")
            rows.append(("nginx", self.nginx.process.pid, self.nginx.url, error_log))
        rows += [(m.role, m.pid, m.address, str(m.log_path)) for m in self.members()]
        for name, node in (("primary", self.postgres.primary), ("replica", self.postgres.replica)):
            pid = node.proc.pid if node.proc else 0
            where = f"postgresql://127.0.0.1:{node.port}"
            rows.append((f"postgres {name}", pid, where, str(node.data_dir / "server.log")))
        redis = [("redis master", self.redis.master), ("redis replica", self.redis.replica)]
        redis += [(f"sentinel {i}", s) for i, s in enumerate(self.redis.sentinels)]
        for name, process in redis:
            pid = process.proc.pid if process.proc else 0
            where = f"redis://127.0.0.1:{process.port}"
            rows.append((name, pid, where, str(process.data_dir / "output.log")))
        return rows

    def table(self) -> str:
        """``rows()`` as aligned text, the logs' paths relative to the current directory
        when they are under it."""
        rows = [("role", "pid", "address", "log")]
        rows += [(r, str(p), a, _shown(f)) for r, p, a, f in self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join(
            f"{r:<{widths[0]}}  {p:>{widths[1]}}  {a:<{widths[2]}}  {f}" for r, p, a, f in rows
        )

    @staticmethod
    def _stop_together(members: Sequence[Member], timeout: float) -> None:
        """SIGTERM to each of ``members`` at once (their drains overlap), then wait for each,
        SIGKILL after ``timeout`` seconds."""
        for member in members:
            if member.process is not None and member.running():
                log.info("stopping %s (pid %d)", member.role, member.pid)
                member.process.proc.terminate()
        for member in members:
            member.stop(timeout)

    def stop(self) -> None:
        """Reverse order: nginx, the instances (gracefully), the workers, Redis and its
        Sentinels, the replica, the primary. Safe to call twice, and on a partial start."""
        if self.failover is not None:  # first: the primary stopping is no failure
            self.failover.stop()
            self.failover = None
        if self.nginx is not None:
            log.info("stopping nginx")
            self.nginx.stop()
        self._stop_together(self.instances, 30)
        wait = float(self.env.get("WORKER_SHUTDOWN_WAIT_SECONDS", "20")) + 40
        self._stop_together(list(self.workers.values()), wait)
        log.info("stopping the Sentinels and Redis")
        self.redis.stop()
        log.info("stopping PostgreSQL: the replica, then the primary")
        self.postgres.stop()
        if self.containers is not None:
            self.containers.remove_all()


def _shown(path: str) -> str:
    here = Path.cwd()
    return str(Path(path).relative_to(here)) if Path(path).is_relative_to(here) else path


def run_cluster(
    work_dir: Path,
    *,
    instances: int = 3,
    synchronous_commit: bool = True,
    port: int = 8080,
    check: bool = False,
    image: str | None = None,
) -> int:
    """``python -m service cluster``: up, the table, then wait for a signal (``check``: a
    smoke request through nginx instead, then stop); 0 unless a part failed."""
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    env = _stack_env(reload=False)
    level = env.get("LOG_LEVEL", "INFO").upper()
    configure_logging(
        level if level in ("DEBUG", "WARNING", "ERROR") else "INFO",
        default_log_format(env.get("ENV"), env.get("LOG_FORMAT")),
    )
    cluster = Cluster(
        work_dir,
        instances=instances,
        synchronous_commit=synchronous_commit,
        port=port,
        image=image,
    )
    try:
        print(cluster.budget.line(), flush=True)
        cluster.start()
        print(f"\nNewsdesk cluster is up: {cluster.nginx_url}/api/v1\n{cluster.table()}\n")
        if check:
            article = smoke(cluster.nginx_url)
            print(f"smoke: user, login, article {article['id']} read back through nginx: ok")
            return 0
        print("Ctrl-C stops nginx, the instances, the workers, Redis, the replica, the primary.")
        idle = threading.Event()  # never set: wait() is an interruptible pause
        while cluster.running():
            idle.wait(0.5)
        log.error("a process of the cluster exited; stopping everything")
        return 1
    except _Stop as stop:
        log.info("%s received; stopping the cluster in reverse order", stop)
        return 0
    except (SmokeFailed, harness.NotReady, RuntimeError) as error:
        log.error("%s", error)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()
        log.info("stopped")

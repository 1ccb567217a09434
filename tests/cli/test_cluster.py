"""The whole architecture on loopback (``service.cli.cluster``), reduced to two API instances:
a write through nginx is readable through each instance, PostgreSQL's replica streams, the
Sentinels report the master, each worker role runs (and restarts), an instance killed and
restarted serves again, a promoted replica takes the app's writes (503s while there is no
primary, never a 500), ``stop()`` leaves no process behind, and so does ``--check``.

One cluster for the module (starting one is the expensive part); the tests run in file order,
the failover after the checks of the healthy fleet, the stop last.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from service.cli import cluster as cluster_module
from service.cli.cluster import Cluster, budget
from service.cli.embedded import free_port
from service.cli.smoke import smoke

pytestmark = pytest.mark.timeout(240)

# The suite's generous limits and patient timeouts (tests.conftest.server_env): the machine is
# shared, and every test here registers from the one address nginx forwards.
ENV = {
    "ENV": "test",
    "LOG_LEVEL": "INFO",
    "RATE_LIMIT_REGISTER": "100000/hour",
    "RATE_LIMIT_LOGIN_IP": "100000/minute",
    "RATE_LIMIT_WRITE": "100000/minute",
    "RATE_LIMIT_READ": "100000/minute",
    "REDIS_SOCKET_TIMEOUT": "10",
    "CACHE_TIMEOUT": "5",
    "READINESS_TIMEOUT": "10",
    "DB_POOL_TIMEOUT": "10",
    "DB_CONNECT_TIMEOUT": "10",
    "WORKER_NICE": "0",
    "WORKER_CPU_IDLE": "false",
    "WORKER_CPU_PROCESSES": "0",
    "WORKER_SHUTDOWN_WAIT_SECONDS": "5",
}


def _eventually(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{check} did not hold within {seconds}s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Cluster]:
    # Not under pytest's base temporary directory: run as root, PostgreSQL runs as another
    # user, and any pytest session that starts meanwhile takes that user's way in away again
    # (pytest keeps /tmp/pytest-of-<user> private), which fails pg_basebackup mid-copy.
    work = Path(tempfile.mkdtemp(prefix="newsdesk-cluster-"))
    running = Cluster(work, instances=2, synchronous_commit=True, durable=False, env=ENV)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_the_budget_fits_max_connections() -> None:
    plan = budget(100, 3, 1, 3)
    assert plan.total <= 100
    assert plan.pool >= 1
    assert "<= max_connections 100" in plan.line()
    with pytest.raises(ValueError, match="too small"):
        budget(20, 3, 1, 3)


def test_a_write_through_nginx_reads_back_through_each_instance(fleet: Cluster) -> None:
    article = smoke(fleet.nginx_url)
    assert len(fleet.instances) == 2
    for instance in fleet.instances:

        def readable(url: str = instance.url) -> bool:
            response = httpx.get(f"{url}/api/v1/articles/{article['id']}", timeout=10)
            assert response.status_code in (200, 404), response.text
            return response.status_code == 200

        _eventually(readable)


def test_the_replica_streams_from_the_primary(fleet: Cluster) -> None:
    postgres = fleet.postgres
    _eventually(postgres.streaming)
    sync = postgres.primary.psql("SELECT sync_state FROM pg_stat_replication")
    assert sync == "sync"  # synchronous_commit=True names it in synchronous_standby_names
    postgres.primary.psql("CREATE TABLE IF NOT EXISTS cluster_probe (n int)", "newsdesk")
    postgres.primary.psql("INSERT INTO cluster_probe VALUES (42)", "newsdesk")
    assert postgres.replica.in_recovery()
    _eventually(
        lambda: postgres.replica.psql("SELECT count(*) FROM cluster_probe", "newsdesk") == "1"
    )


def test_the_sentinels_report_the_master(fleet: Cluster) -> None:
    assert fleet.redis.master_port() == fleet.redis.master.port


def test_each_worker_role_runs(fleet: Cluster) -> None:
    assert set(fleet.workers) == set(cluster_module.ROLES)
    for worker in fleet.workers.values():
        assert worker.running()
        assert "Starting worker" in worker.log_path.read_text()
    bulk = fleet.workers["bulk"]
    before = bulk.pid
    bulk.restart()  # ready again on this run's own log line
    assert bulk.running()
    assert bulk.pid != before
    assert bulk.log_path.read_text().count("Starting worker") == 2


def test_an_instance_killed_and_restarted_serves_again(fleet: Cluster) -> None:
    """nginx passes reads to the other instance while one is down; ``restart()`` brings it
    back on its port."""
    instance = fleet.instances[0]
    before = instance.pid
    instance.kill()
    assert not instance.running()
    for _ in range(4):  # both upstreams in turn: the dead one's requests go to the other
        assert httpx.get(f"{fleet.nginx_url}/healthz", timeout=10).status_code == 200
    instance.restart()
    assert instance.pid != before
    assert httpx.get(f"{instance.url}/readyz", timeout=10).status_code == 200


def test_a_promoted_replica_takes_the_writes(fleet: Cluster) -> None:
    """The primary crashes, the cluster's failover controller promotes the replica: the
    multi-host DATABASE_URL finds it without a restart; meanwhile writes answer 503 (never
    500)."""
    token = httpx.post(
        f"{fleet.nginx_url}/api/v1/auth/login",
        json={"email": _register(fleet), "password": "smoke-test-password"},
        timeout=10,
    ).json()["token"]
    assert fleet.failover is not None
    fleet.postgres.primary.kill()
    assert fleet.failover.wait(60), "the controller did not promote the replica"
    assert not fleet.postgres.replica.in_recovery()
    statuses: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = httpx.post(
            f"{fleet.nginx_url}/api/v1/articles",
            json={"title": "After", "content": "Written on the promoted replica."},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        statuses.append(response.status_code)
        assert response.status_code in (201, 503), response.text
        if response.status_code == 201:
            break
        time.sleep(0.5)
    assert statuses[-1] == 201, statuses


def _register(fleet: Cluster) -> str:
    email = f"failover-{time.monotonic_ns()}@example.com"
    response = httpx.post(
        f"{fleet.nginx_url}/api/v1/users",
        json={"email": email, "password": "smoke-test-password", "name": "Fail"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return email


def test_stop_leaves_no_process(fleet: Cluster) -> None:
    pids = {pid for _, pid, _, _ in fleet.rows() if pid}
    pids |= {child.pid for pid in pids for child in _children(pid)}
    assert len(pids) >= 13  # nginx, 2 instances, 3 workers, 2 PostgreSQL, 2 Redis, 3 Sentinels
    fleet.stop()
    alive = [pid for pid in pids if _alive(pid)]
    assert not alive, alive


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


COMMAND = [sys.executable, "-m", "service", "cluster", "--check", "--instances", "1"]


def test_the_check_command_brings_it_up_smokes_and_stops() -> None:
    """``python -m service cluster --check``: the budget line, the table, the smoke request
    through nginx, then every process of the table gone."""
    work = Path(tempfile.mkdtemp(prefix="newsdesk-cluster-check-"))
    try:
        done = subprocess.run(
            [*COMMAND, "--work-dir", str(work), "--port", str(free_port())],
            env={**os.environ, **ENV},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "<= max_connections 100" in output
    assert "read back through nginx: ok" in output
    rows = [
        re.search(r"\s(\d+)\s+(?:metrics )?[a-z]+://", line) for line in done.stdout.split("\n")
    ]
    pids = [int(row[1]) for row in rows if row]
    assert len(pids) == 12, done.stdout  # nginx, 1 instance, 3 workers, 2 + 2 + 3 servers
    alive = [pid for pid in pids if _alive(pid)]
    assert not alive, alive

"""The API pool the manifests ship (deploy/kubernetes/configmap.yaml, sized by
``python -m service budget`` to fit max_connections 100) under a burst on one Hypercorn worker:
PostgreSQL sees no more connections from the worker than the pool, and the requests beyond it
wait their turn and are answered, not refused.

A real server over loopback, a burst of writes, uncached reads and logins (a login keeps its
connection while its password is hashed); the connections are counted from the server's own
sockets to PostgreSQL, sampled while the burst runs."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import psutil
import yaml

from tests.conftest import LiveServers
from tests.support.api import PASSWORD, account, publish
from tests.support.databases import ROOT

CONFIGMAP = ROOT / "deploy" / "kubernetes" / "configmap.yaml"
CLIENTS = 32  # concurrent HTTP connections: ten times the pool
WRITES, READS, LOGINS = 40, 120, 6


def _shipped_pool() -> tuple[str, str]:
    data = yaml.safe_load(CONFIGMAP.read_text())["data"]
    return data["DB_POOL_SIZE"], data["DB_MAX_OVERFLOW"]


def _postgres_connections(pid: int, port: int) -> int:
    """TCP connections from the server's processes to PostgreSQL's port, now."""
    server = psutil.Process(pid)
    count = 0
    for process in [server, *server.children(recursive=True)]:
        try:
            sockets = process.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        count += sum(1 for s in sockets if s.raddr and s.raddr.port == port)
    return count


async def test_a_burst_on_one_worker_queues_on_the_shipped_pool_and_is_answered(
    live_server: LiveServers,
) -> None:
    size, overflow = _shipped_pool()
    pool = int(size) + int(overflow)
    server = live_server(DB_POOL_SIZE=size, DB_MAX_OVERFLOW=overflow)
    assert server.proc is not None
    postgres_port = urlsplit(server.env["DATABASE_URL"].replace("+asyncpg", "")).port or 5432
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
        who = await account(http)
        first = await publish(http, who)
        seen: list[int] = []
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                seen.append(_postgres_connections(server.proc.pid, postgres_port))  # type: ignore[union-attr]
                await asyncio.sleep(0.02)

        async def write(n: int) -> int:
            body = {"title": f"Burst {n}", "content": "Some content."}
            r = await http.post("/api/v1/articles", json=body, headers=who.api_key)
            return r.status_code

        async def read(n: int) -> int:  # not cached: the count is read from PostgreSQL
            r = await http.get(f"/api/v1/articles/{first['id']}/views")
            return r.status_code

        async def log_in(n: int) -> int:
            body = {"email": who.email, "password": PASSWORD}
            return (await http.post("/api/v1/auth/login", json=body)).status_code

        sampler = asyncio.create_task(sample())
        calls = [write(n) for n in range(WRITES)] + [read(n) for n in range(READS)]
        calls += [log_in(n) for n in range(LOGINS)]
        try:
            statuses = await asyncio.gather(*calls)
        finally:
            done.set()
            await sampler
    answered = {"write": statuses[:WRITES], "read": statuses[WRITES : WRITES + READS]}
    answered["login"] = statuses[WRITES + READS :]
    assert answered == {
        "write": [201] * WRITES,
        "read": [200] * READS,
        "login": [200] * LOGINS,
    }
    assert 0 < max(seen) <= pool, (max(seen), pool)
    assert "QueuePool limit" not in server.log()

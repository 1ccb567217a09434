"""service.infra.resources.connect_args (``DB_PGBOUNCER``): migrations, the API and the worker
all through a real PgBouncer in transaction pooling mode; without the setting the same load
fails, so the setting is what makes it work."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from service.cli.embedded import EmbeddedRedis
from tests.conftest import LiveServers, Workers
from tests.support.api import Account, account, publish
from tests.support.databases import ROOT, ServerStack, migrate, plain_url
from tests.support.pgbouncer import PgBouncer, binary

pytestmark = pytest.mark.skipif(
    binary() is None, reason="pgbouncer is not installed (make test installs it)"
)

REQUESTS = 200  # the load: this many requests ...
CONNECTIONS = 16  # ... over this many connections, a quarter of them writes
POOL_SIZE = 8  # PgBouncer's server connections per database: fewer than the clients
MIGRATE_TIMEOUT = 120.0  # seconds for `alembic upgrade head` (a busy machine is slow)
PROCESSED_WITHIN = 60.0  # seconds for the worker to process every article written
# Waits long enough that a busy two-core machine fails no request of the working set-up:
# a request may queue for a pooled connection, Redis calls may be slow.
PATIENT: dict[str, Any] = {
    "DB_POOL_TIMEOUT": "60",
    "CACHE_TIMEOUT": "5",
    "REDIS_SOCKET_TIMEOUT": "10",
}


@pytest.fixture
def pgbouncer(stack: ServerStack, tmp_path: Path) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(tmp_path / "pgbouncer", stack.server_url, pool_size=POOL_SIZE).start()
    yield bouncer
    bouncer.stop()


@pytest.fixture
def database(stack: ServerStack) -> str:
    """An empty database of its own (made from a plain fixture: ``new_database`` runs an
    event loop of its own)."""
    return stack.new_database("newsdesk_pgbouncer")


def _upgrade(url: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def _load(
    base_url: str, who: Account, article_ids: list[int]
) -> tuple[Counter[int], list[int]]:
    """``REQUESTS`` requests over ``CONNECTIONS`` connections: writes, single reads, list reads
    and authenticated reads. Returns the count of each status and the ids of new articles."""
    statuses: Counter[int] = Counter()
    created: list[int] = []
    gate = asyncio.Semaphore(CONNECTIONS)
    limits = httpx.Limits(max_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:

        async def one(i: int) -> None:
            async with gate:
                kind = i % 4
                if kind == 0:
                    body = {"title": f"Bouncer {i}", "content": f"Pooled write number {i}."}
                    response = await http.post("/api/v1/articles", json=body, headers=who.api_key)
                    if response.status_code == 201:
                        created.append(response.json()["id"])
                elif kind == 1:
                    response = await http.get(
                        f"/api/v1/articles/{article_ids[i % len(article_ids)]}"
                    )
                elif kind == 2:
                    response = await http.get("/api/v1/articles", params={"per_page": 5})
                else:
                    response = await http.get("/api/v1/users/me", headers=who.api_key)
                statuses[response.status_code] += 1

        await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    return statuses, created


async def _prepared_statements_left(bouncer_url: str) -> dict[int, int]:
    """Named prepared statements on each of PgBouncer's server connections to the database.

    ``POOL_SIZE`` transactions held open at once each get a server connection of their own,
    so together they see every one the pool has (or opens a new, empty one)."""
    conns = [
        await asyncpg.connect(plain_url(bouncer_url), statement_cache_size=0)
        for _ in range(POOL_SIZE)
    ]
    try:
        everyone_answered = asyncio.Barrier(POOL_SIZE)

        async def look(conn: asyncpg.Connection) -> tuple[int, int]:
            async with conn.transaction():
                pid, count = await conn.fetchrow(
                    "SELECT pg_backend_pid(), (SELECT count(*) FROM pg_prepared_statements)"
                )
                await asyncio.wait_for(everyone_answered.wait(), 60)
            return int(pid), int(count)

        return dict(await asyncio.gather(*(look(conn) for conn in conns)))
    finally:
        for conn in conns:
            await conn.close()


async def _setup(base_url: str) -> tuple[Account, list[int]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        who = await account(http)
        ids = [(await publish(http, who, title=f"Seed {n}"))["id"] for n in range(4)]
    return who, ids


async def test_migrations_api_and_worker_run_through_pgbouncer_in_transaction_mode(
    worker: Workers,
    pgbouncer: PgBouncer,
    own_redis: EmbeddedRedis,
    database: str,
    tmp_path: Path,
    live_server: LiveServers,
) -> None:
    url = pgbouncer.via(database)

    # Two migrators at once, both through PgBouncer: one migrates, the other waits for the
    # lock, then finds the schema at head.
    runs = [_upgrade(url, DB_PGBOUNCER="true") for _ in range(2)]
    outputs = [run.communicate(timeout=MIGRATE_TIMEOUT)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    head = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_current_head()
    direct = await asyncpg.connect(plain_url(database))
    try:
        assert await direct.fetchval("SELECT version_num FROM alembic_version") == head
        # No advisory lock is left held on a server connection (a session-level lock,
        # taken and released on different server connections, would be).
        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        assert await direct.fetchval(held) == 0

        # The API and the worker through PgBouncer; DB_STATEMENT_TIMEOUT_MS keeps its default
        # (15000), which DB_PGBOUNCER must not send as a start-up parameter.
        through: dict[str, Any] = {
            "DATABASE_URL": url,
            "DB_PGBOUNCER": "true",
            "REDIS_URL": own_redis.url(),
        }
        server = live_server(
            log="api.log",
            CACHE_ENABLED="false",  # every read reaches SQL
            **through,
            **PATIENT,
        )
        process = worker(
            **through,
            # A job whose enqueueing was given up on (a slow Redis opens the breaker) is
            # enqueued again within seconds by the sweeper.
            PROCESS_SWEEP_SECONDS="1",
            PROCESS_STALE_SECONDS="2",
        )
        try:
            who, seeded = await _setup(server.url)
            statuses, created = await _load(server.url, who, seeded)
            assert statuses == Counter({201: REQUESTS // 4, 200: REQUESTS - REQUESTS // 4}), (
                statuses,
                server.log()[-3000:],
            )
            # The worker, through PgBouncer too, processes every article written.
            ids = seeded + created
            processed = "SELECT count(*) FROM articles WHERE id = ANY($1) AND status = 'processed'"
            for _ in range(int(PROCESSED_WITHIN * 5)):
                if await direct.fetchval(processed, ids) == len(ids):
                    break
                if process.proc is None or process.proc.poll() is not None:
                    break  # the worker died: the assertion below shows its log
                await asyncio.sleep(0.2)
            assert await direct.fetchval(processed, ids) == len(ids), process.log()[-3000:]
            assert "is not applied through PgBouncer" in server.log()
        finally:
            process.stop()
            server.stop()
    finally:
        await direct.close()

    # Unnamed statements leave nothing behind on PgBouncer's server connections.
    left = await _prepared_statements_left(url)
    print(f"through PgBouncer: {dict(statuses)}; prepared statements left per server: {left}")
    assert len(left) == POOL_SIZE and sum(left.values()) == 0, left


async def test_without_db_pgbouncer_the_same_load_fails(
    stack: ServerStack,
    pgbouncer: PgBouncer,
    own_redis: EmbeddedRedis,
    database: str,
    tmp_path: Path,
    live_server: LiveServers,
) -> None:
    migrate(database)  # straight to PostgreSQL: only the API goes through PgBouncer here
    # DB_STATEMENT_TIMEOUT_MS=0: otherwise PgBouncer refuses every connection outright
    # ("unsupported startup parameter"); this shows the prepared statements fail too.
    server = live_server(
        log="api.log",
        DATABASE_URL=pgbouncer.via(database),
        REDIS_URL=own_redis.url(),
        CACHE_ENABLED="false",
        DB_STATEMENT_TIMEOUT_MS="0",
    )
    try:
        who, seeded = await _setup(server.url)
        statuses, _ = await _load(server.url, who, seeded)
        failed = sum(n for status, n in statuses.items() if status >= 500)
        errors = server.log().count("prepared statement")
        print(f"without DB_PGBOUNCER: {dict(statuses)}; 'prepared statement' in the log: {errors}")
        assert failed > 0, statuses
        assert "prepared statement" in server.log()
    finally:
        server.stop()

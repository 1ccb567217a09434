"""``REDIS_URL=redis+sentinel://...`` (service.infra.resources, service.jobs.worker): the API and
the worker behind real Sentinels; the master is killed under load, the app follows the
failover, and no acknowledged write is lost."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio.sentinel import SentinelConnectionPool

from service.cli.sentinel import SERVICE, SentinelCluster
from service.core.settings import Settings
from service.infra.resources import Resources
from service.jobs.worker import redis_settings_for
from tests.conftest import LiveServers, Workers
from tests.support.api import PASSWORD, Account, account
from tests.support.databases import ServerStack, migrate, plain_url

CLIENTS = 4  # concurrent clients, each logging in and writing an article in turn
BEFORE_KILL = 8  # successful logins before the master is killed
AFTER_SWITCH = 8  # successful logins that started after the switch, then the load stops
SWITCH_WITHIN = 60.0  # seconds for the Sentinels to promote the replica
RECOVER_WITHIN = 60.0  # seconds after the switch for the app to succeed AFTER_SWITCH times
PROCESSED_WITHIN = 120.0  # seconds for the worker to process every article written


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    running = SentinelCluster(tmp_path / "sentinel").start()
    yield running
    running.stop()


@pytest.fixture
def database(stack: ServerStack) -> str:
    """A migrated database of its own: the worker's sweeper sees only this test's articles."""
    url = stack.new_database("newsdesk_sentinel")
    migrate(url)
    return url


async def test_the_app_clients_reach_the_master_through_the_sentinels(
    cluster: SentinelCluster,
) -> None:
    settings = Settings(redis_url=cluster.url(db=3))
    res = Resources(settings)
    await res.start()
    try:
        assert res.redis is not None and res.cache is not None
        hot = res.cache.redis
        await res.redis.set("sentinel-probe", b"via sentinel")
        assert await hot.get("sentinel-probe") == b"via sentinel"
        for client in (res.redis, hot):
            pool = client.connection_pool
            assert isinstance(pool, SentinelConnectionPool)
            assert pool.master_address == ("127.0.0.1", cluster.master.port)
            assert pool.connection_kwargs["db"] == 3
        # The hot path still has no socket timeout, so redis-py adds no wait_for per command;
        # the other client keeps REDIS_SOCKET_TIMEOUT.
        assert hot.connection_pool.connection_kwargs.get("socket_timeout") is None
        assert res.redis.connection_pool.connection_kwargs["socket_timeout"] == 2.0
    finally:
        await res.close()
    # The worker's arq settings name the same Sentinels, master and database.
    arq = redis_settings_for(cluster.url(db=3))
    assert arq.sentinel and arq.sentinel_master == SERVICE and arq.database == 3
    assert arq.host == [("127.0.0.1", s.port) for s in cluster.sentinels]


@dataclass
class Load:
    """What the clients did: (started, ended, ok) per request, tokens and article ids got."""

    logins: list[tuple[float, float, bool]] = field(default_factory=list)
    writes: list[tuple[float, float, bool]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    articles: list[int] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)  # what failed requests got
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def logins_ok(self, since: float = 0.0) -> int:
        return sum(1 for started, _, ok in self.logins if ok and started >= since)


async def _client(http: httpx.AsyncClient, who: Account, load: Load, n: int) -> None:
    """Logs in (a session written to Redis) and writes an article, until told to stop."""
    i = 0
    while not load.stop.is_set():
        i += 1
        started = time.monotonic()
        try:
            response = await http.post(
                "/api/v1/auth/login", json={"email": who.email, "password": PASSWORD}
            )
            ok = response.status_code == 200
            if ok:
                load.tokens.append(response.json()["token"])
            else:
                load.failures[f"login {response.status_code}"] += 1
        except httpx.HTTPError as exc:
            ok = False
            load.failures[f"login {type(exc).__name__}"] += 1
        load.logins.append((started, time.monotonic(), ok))
        started = time.monotonic()
        try:
            body = {"title": f"Failover {n}.{i}", "content": f"Written by client {n}, turn {i}."}
            response = await http.post("/api/v1/articles", json=body, headers=who.api_key)
            ok = response.status_code == 201
            if ok:
                load.articles.append(response.json()["id"])
            else:
                load.failures[f"write {response.status_code}"] += 1
        except httpx.HTTPError as exc:
            ok = False
            load.failures[f"write {type(exc).__name__}"] += 1
        load.writes.append((started, time.monotonic(), ok))


async def _until(condition: Callable[[], bool], within: float, what: str) -> None:
    """Polls ``condition`` until true; fails after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_failover_under_load_loses_no_write_and_the_app_reconnects(
    worker: Workers,
    cluster: SentinelCluster,
    database: str,
    tmp_path: Path,
    live_server: LiveServers,
) -> None:
    url = cluster.url()
    # REDIS_SOCKET_TIMEOUT: a busy machine must not time out a login or a token check; a
    # killed master refuses connections at once whatever the timeout.
    server = live_server(
        log="api.log", DATABASE_URL=database, REDIS_URL=url, REDIS_SOCKET_TIMEOUT="10"
    )
    process = worker(
        DATABASE_URL=database,
        REDIS_URL=url,
        # A processing job lost with the master is enqueued again within seconds.
        PROCESS_SWEEP_SECONDS="1",
        PROCESS_STALE_SECONDS="2",
        # A job running when the master died keeps arq's in-progress marker (job timeout +
        # 10 s) on the promoted replica, and nobody may run it again until that expires: a
        # short job timeout bounds that wait (processing takes milliseconds).
        JOB_TIMEOUT_SECONDS="15",
    )
    load = Load()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            await process.wait_for_log("Starting worker for")  # it is up before the failover
            who = await account(http)
            clients = [asyncio.create_task(_client(http, who, load, n)) for n in range(CLIENTS)]
            try:
                await _until(lambda: load.logins_ok() >= BEFORE_KILL, 60, "logins before")
                old = cluster.master_port()
                assert old == cluster.master.port
                cluster.node_on(old).kill()
                killed_at = time.monotonic()

                def switched() -> bool:
                    return cluster.master_port() not in (old, None)

                await _until(switched, SWITCH_WITHIN, "the Sentinels to promote the replica")
                switched_at = time.monotonic()
                await _until(
                    lambda: load.logins_ok(since=switched_at) >= AFTER_SWITCH,
                    RECOVER_WITHIN,
                    f"{AFTER_SWITCH} logins after the switch:\n{server.log()[-3000:]}",
                )
            finally:
                load.stop.set()
                await asyncio.gather(*clients)

            # Every session token the API handed out still works on the new master.
            checks = [
                await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
                for token in load.tokens
            ]
            lost_tokens = sum(1 for check in checks if check.status_code == 401)
            assert [check.status_code for check in checks] == [200] * len(checks)
            assert (await http.get("/readyz")).status_code == 200

        # Every article written (201) is processed by the worker, which followed the failover.
        pg = await asyncpg.connect(plain_url(database))
        try:
            query = "SELECT count(*) FROM articles WHERE id = ANY($1) AND status = 'processed'"
            ids = load.articles
            deadline = time.monotonic() + PROCESSED_WITHIN
            while (processed := await pg.fetchval(query, ids)) < len(ids):
                if time.monotonic() > deadline:
                    break
                if process.proc is None or process.proc.poll() is not None:
                    break  # the worker died: the assertion below shows its log
                await asyncio.sleep(0.2)
        finally:
            await pg.close()
        assert processed == len(ids), process.log()[-3000:]
        # The worker did lose its master and start again on the new one.
        assert process.log().count("Starting worker for") >= 2, process.log()[-3000:]
    finally:
        process.stop()
        server.stop()

    failed_logins = sum(1 for _, _, ok in load.logins if not ok)
    failed_writes = sum(1 for _, _, ok in load.writes if not ok)
    first = min(end for start, end, ok in load.logins if ok and start >= switched_at)
    print(
        f"Sentinel failover (SIGKILL of the master): switch {switched_at - killed_at:.2f}s after "
        f"the kill; {len(load.logins)} logins ({failed_logins} failed), {len(load.writes)} "
        f"article writes ({failed_writes} failed), failures {dict(load.failures)}; first login "
        f"started after the switch succeeded {first - switched_at:.2f}s after it; "
        f"tokens lost {lost_tokens} of {len(load.tokens)}, "
        f"articles unprocessed {len(ids) - processed} of {len(ids)}"
    )

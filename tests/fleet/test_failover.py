"""The PostgreSQL primary killed (SIGKILL) under mixed load: the failover controller promotes
the streaming replica, and the running API instance finds it without a restart.

A pair with synchronous replication (``Replication(synchronous_commit=True)``), migrated; one
API instance with the pair's multi-host ``DATABASE_URL`` (``target_session_attrs=read-write``)
and ``DATABASE_READ_URL`` (``prefer-standby``), small pools and a Redis of its own; concurrent
clients read articles and list pages and publish articles with unique titles
(``bench.failover.drill``, the drill the benchmark runs too). While the primary is gone and
the replica not yet promoted every request that needs a write answers 503 with Retry-After,
never 500; once promoted, new connections land on it and writes are acknowledged again; and
since each acknowledged commit was on the replica's disk first, none is missing from it.
``pytest -s`` shows the counts and how long 503s were answered.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.failover import WRITES_BACK_LIMIT, drill, seed
from service.cli.embedded import EmbeddedRedis
from service.cli.replication import Replication
from tests.conftest import LiveServers, outside_basetemp
from tests.support.databases import migrate

# Both servers take every connection after the failover: the instance's two engines at most
# 2 x (3 + 2), the controller's probes and the drill's checks.
MAX_CONNECTIONS = 40
MAX_REQUESTS = 6000  # a bound on the load, whatever the machine's speed


@pytest.fixture
def replication() -> Iterator[Replication]:
    with outside_basetemp("newsdesk-failover-") as base:
        pair = Replication(base, synchronous_commit=True, max_connections=MAX_CONNECTIONS)
        pair.start()
        try:
            yield pair
        finally:
            pair.stop()


async def test_primary_killed_replica_promoted_no_500_no_write_lost(
    replication: Replication, live_server: LiveServers, own_redis: EmbeddedRedis
) -> None:
    migrate(replication.primary_url)
    server = live_server(
        DATABASE_URL=replication.database_url,
        DATABASE_READ_URL=replication.read_url,
        REDIS_URL=own_redis.url(),
        DB_POOL_SIZE="3",
        DB_MAX_OVERFLOW="2",
        DB_POOL_TIMEOUT="10",
        DB_CONNECT_TIMEOUT="5",
    )
    key, ids = await seed(server.url)

    figures = await drill(replication, server.url, key, ids, max_requests=MAX_REQUESTS)
    print("\n" + "\n".join(figures.lines()))

    assert figures.counts.internal_errors == 0, figures.counts.statuses_text()
    assert figures.unexpected == {}, figures.counts.statuses_text()
    assert figures.without_retry_after == 0
    assert not figures.counts.errors, f"requests with no answer: {figures.counts.errors}"
    assert figures.promoted_at is not None, "the controller did not promote the replica"
    assert not replication.replica.in_recovery()
    # Writes work again through the same instance, never restarted, within the bound.
    assert figures.writes_back_at is not None
    assert figures.writes_back_at - figures.killed_at < WRITES_BACK_LIMIT
    assert figures.acknowledged > 0
    assert figures.lost == 0, f"{figures.lost} acknowledged writes missing after the failover"

"""service.jobs.tasks.sweep_pending: every stale pending article is enqueued again, past the
first page of them, and the sweeper tells the jobs it enqueued from those arq refused because
they were still queued. Run against a database and a Redis of the test's own, so the count of
pending articles is exactly the test's."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from service.cli.embedded import EmbeddedRedis
from service.core import keys
from service.core.settings import Settings
from service.infra.resources import Resources
from service.jobs.tasks import SWEEP_PAGE, sweep_pending
from tests.support.databases import ServerStack, migrate, plain_url

PENDING = 1_500
ALREADY_QUEUED = 200  # their jobs are still on the bulk queue, e.g. behind a backlog


@pytest.fixture
def database(stack: ServerStack) -> str:
    url = stack.new_database("newsdesk_sweeper")
    migrate(url)
    return url


@pytest.fixture
async def queue(own_redis: EmbeddedRedis) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(own_redis.url()))
    yield pool
    await pool.aclose()


@pytest.fixture
async def resources(database: str, own_redis: EmbeddedRedis) -> AsyncIterator[Resources]:
    settings = Settings(
        _env_file=None,
        env="test",
        database_url=database,
        redis_url=own_redis.url(),
        process_stale_seconds=60,
    )
    res = Resources(settings, application_name="newsdesk-test-sweeper")
    await res.start()
    yield res
    await res.close()


async def _pending_articles(database: str, count: int) -> list[tuple[int, int]]:
    """``count`` articles pending for ten minutes (their jobs lost); ``(id, version)`` each."""
    conn = await asyncpg.connect(plain_url(database))
    try:
        author = await conn.fetchval(
            "INSERT INTO users (email, name, password_hash) "
            "VALUES ('sweeper@example.com', 'Sweeper', 'x') RETURNING id"
        )
        rows = await conn.fetch(
            "INSERT INTO articles (author_id, title, content, status, version, updated_at) "
            "SELECT $1, 'Lost ' || n, 'Its job was lost.', 'pending', 1 + n % 3, "
            "now() - interval '10 minutes' FROM generate_series(1, $2) AS n "
            "RETURNING id, version",
            author,
            count,
        )
    finally:
        await conn.close()
    return sorted((row["id"], row["version"]) for row in rows)


async def test_the_sweeper_enqueues_every_stale_article_and_counts_those_already_queued(
    database: str, queue: ArqRedis, resources: Resources, caplog: pytest.LogCaptureFixture
) -> None:
    assert PENDING > SWEEP_PAGE  # more than one page
    articles = await _pending_articles(database, PENDING)
    # Some jobs are still queued (nothing serves the queues here), as the API enqueued them.
    for article_id, version in articles[::7][:ALREADY_QUEUED]:
        job = await queue.enqueue_job(
            "process_article",
            article_id,
            version,
            _job_id=keys.process_job_id(article_id, version),
            _queue_name=keys.QUEUE_BULK,
        )
        assert job is not None

    with caplog.at_level(logging.INFO, logger="service.jobs.tasks"):
        counts = await sweep_pending({"resources": resources, "job_try": 1})

    assert counts == {"enqueued": PENDING - ALREADY_QUEUED, "already_queued": ALREADY_QUEUED}
    assert (
        f"sweeper: {PENDING - ALREADY_QUEUED} pending article(s) enqueued again, "
        f"{ALREADY_QUEUED} already queued" in caplog.text
    )
    # Every one of them has its job on the bulk queue, and on no other queue.
    queued = {job_id.decode() for job_id in await queue.zrange(keys.QUEUE_BULK, 0, -1)}
    assert queued == {keys.process_job_id(i, v) for i, v in articles}
    assert await queue.zcard(keys.QUEUE_INTERACTIVE) == 0
    assert await queue.zcard(keys.QUEUE_PERIODIC) == 0

    # Swept again while all are still queued: nothing is counted as enqueued.
    again = await sweep_pending({"resources": resources, "job_try": 1})
    assert again == {"enqueued": 0, "already_queued": PENDING}

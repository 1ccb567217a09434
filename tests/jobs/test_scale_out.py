"""Several worker processes on one queue, SIGKILLed at random: every article is processed once,
at its final version, and every view is counted once.

2 and 4 real ``python -m service worker`` processes (all three roles each, a CPU process
each) share a database and a Redis of the test's own. Articles are queued, some are edited
while the workers run (a new version, queued again), views are added to the Redis buffer as
the API adds them, and every second or so one worker is killed with SIGKILL and started
again. A trigger records every write of a processing result: each article must have exactly
one, for its final version, with that version's summary; ``articles.views`` must hold every
view exactly once. A killed worker's jobs run again once their in-progress marker expires
(``JOB_TIMEOUT_SECONDS`` + 10 s), hence the short job timeout here.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool

from service.cli.embedded import EmbeddedRedis
from service.core import keys
from tests.conftest import Workers
from tests.support.databases import ServerStack, migrate, plain_url

ARTICLES = 1_200  # queued a few at a time while the workers run and die
EDITED = 60  # of them get a second version while the workers run
KILL_FOR = 12.0  # seconds of random SIGKILLs
SETTLE_WITHIN = 180.0  # seconds at most for every effect to land once the kills stop

_RECORD_WRITES = """
CREATE TABLE processing_writes (
  seq bigserial PRIMARY KEY, article_id bigint, version int, summary text
);
CREATE FUNCTION record_processing() RETURNS trigger AS $$
BEGIN
  INSERT INTO processing_writes (article_id, version, summary)
    VALUES (NEW.id, NEW.version, NEW.summary);
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER processing_writes AFTER UPDATE ON articles FOR EACH ROW
  WHEN (OLD.status = 'pending' AND NEW.status <> 'pending') EXECUTE FUNCTION record_processing();
"""


def _content(article_id: int, version: int) -> str:
    # Three sentences: the summary is the whole text, so it names the version it was made from.
    return (
        f"Article {article_id} reports version {version} of the harbour story. "
        f"Crews repaired the northern pier overnight. Ferries resume service on Monday."
    )


@pytest.fixture
def database_url(stack: ServerStack) -> str:
    url = stack.new_database("newsdesk_scale_out")
    migrate(url)
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    url = database_url
    conn = await asyncpg.connect(plain_url(url))
    await conn.execute(_RECORD_WRITES)
    yield url, conn
    await conn.close()


@pytest.fixture
async def queue(own_redis: EmbeddedRedis) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(own_redis.url()))
    yield pool
    await pool.aclose()


async def _enqueue(queue: ArqRedis, article_id: int, version: int) -> None:
    await queue.enqueue_job(
        "process_article",
        article_id,
        version,
        _job_id=keys.process_job_id(article_id, version),
        _queue_name=keys.QUEUE_BULK,
    )


@pytest.mark.parametrize("processes", [2, 4])
async def test_killed_workers_process_every_article_and_count_every_view_once(
    processes: int,
    worker: Workers,
    database: tuple[str, asyncpg.Connection],
    own_redis: EmbeddedRedis,
    queue: ArqRedis,
) -> None:
    url, conn = database
    author = await conn.fetchval(
        "INSERT INTO users (email, name, password_hash) "
        "VALUES ('scale@example.com', 'Scale', 'x') RETURNING id"
    )
    ids = [
        row["id"]
        for row in await conn.fetch(
            "INSERT INTO articles (author_id, title, content, status, version) "
            "SELECT $1, 'Harbour ' || n, 'draft', 'pending', 1 FROM generate_series(1, $2) n "
            "RETURNING id",
            author,
            ARTICLES,
        )
    ]
    await conn.executemany(
        "UPDATE articles SET content = $2 WHERE id = $1", [(i, _content(i, 1)) for i in ids]
    )

    workers = [
        worker(
            DATABASE_URL=url,
            REDIS_URL=own_redis.url(),
            WORKER_CPU_PROCESSES="1",
            WORKER_MAX_JOBS="20",
            JOB_TIMEOUT_SECONDS="5",  # a killed worker's jobs run again 15 s later
            VIEW_FLUSH_SECONDS="1",
            PROCESS_SWEEP_SECONDS="2",
            PROCESS_STALE_SECONDS="5",
            DB_POOL_SIZE="5",
            DB_MAX_OVERFLOW="5",
            LOG_LEVEL="WARNING",
        )
        for _ in range(processes)
    ]
    rng = random.Random(processes)
    edited = rng.sample(ids[: ARTICLES // 2], EDITED)
    arrivals = iter(ids)
    per_tick = ARTICLES // 100
    final = dict.fromkeys(ids, 1)
    views = dict.fromkeys(ids, 0)
    kills = 0
    try:
        started = time.monotonic()
        next_kill = started + rng.uniform(1.0, 2.0)
        edits = iter(edited)
        while time.monotonic() - started < KILL_FOR:
            # New articles, as the API queues them.
            for article_id in [a for _, a in zip(range(per_tick), arrivals, strict=False)]:
                await _enqueue(queue, article_id, 1)
            # Views, as the API records them: one HINCRBY per view.
            for article_id in rng.sample(ids, 20):
                await queue.hincrby(keys.VIEWS_PENDING, str(article_id), 1)  # type: ignore[misc]
                views[article_id] += 1
            # An edit, as the API makes it: a new pending version, then its job.
            article_id = next(edits, None)
            if article_id is not None:
                await conn.execute(
                    "UPDATE articles SET version = 2, status = 'pending', content = $2 "
                    "WHERE id = $1",
                    article_id,
                    _content(article_id, 2),
                )
                final[article_id] = 2
                await _enqueue(queue, article_id, 2)
            if time.monotonic() >= next_kill:
                victim = workers[rng.randrange(processes)]
                victim.kill()
                kills += 1
                victim.start()
                next_kill = time.monotonic() + rng.uniform(0.5, 2.0)
            await asyncio.sleep(0.1)

        for article_id in arrivals:  # any left on a slow machine
            await _enqueue(queue, article_id, 1)
        deadline = time.monotonic() + SETTLE_WITHIN
        expected_views = sum(views.values())
        while time.monotonic() < deadline:
            done = await conn.fetchval(
                "SELECT count(*) FROM articles WHERE author_id = $1 AND status <> 'pending'",
                author,
            )
            counted = await conn.fetchval(
                "SELECT coalesce(sum(views), 0) FROM articles WHERE author_id = $1", author
            )
            if done == ARTICLES and counted == expected_views:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # a duplicate effect would land now
    finally:
        worker.stop()

    assert kills >= 5
    rows = await conn.fetch(
        "SELECT id, version, status, summary, views FROM articles WHERE author_id = $1", author
    )
    assert {r["id"]: r["status"] for r in rows if r["status"] != "processed"} == {}
    assert {r["id"]: r["version"] for r in rows if r["version"] != final[r["id"]]} == {}
    wrong = {
        r["id"]: r["summary"] for r in rows if r["summary"] != _content(r["id"], final[r["id"]])
    }
    assert wrong == {}, "summaries not made from the final version"
    # One write per article and version at most (an edited article's first version may have
    # been processed before the edit), the last one for the final version.
    # In the order they were made (ctid order is not: concurrent inserts land on other pages).
    writes = await conn.fetch("SELECT article_id, version FROM processing_writes ORDER BY seq")
    per_article: dict[int, list[int]] = {}
    for w in writes:
        per_article.setdefault(w["article_id"], []).append(w["version"])
    twice = {i: v for i, v in per_article.items() if len(v) != len(set(v))}
    assert twice == {}, "a version processed twice"
    assert {i: v for i, v in per_article.items() if v[-1] != final[i]} == {}
    assert set(per_article) == set(ids)
    miscounted = {
        r["id"]: (r["views"], views[r["id"]]) for r in rows if r["views"] != views[r["id"]]
    }
    assert miscounted == {}, "views lost or counted twice (counted, sent)"

"""Article view counts: one Redis increment per view, moved into PostgreSQL in batches.

**In the request path** every ``GET /api/v1/articles/{id}`` answered 200 adds one to the
article's field in the Redis hash ``views:pending`` on ``REDIS_URL`` (``HINCRBY``; a cache hit
does it inside its lookup's round trip, ``service.infra.cache``, unless the cache has a Redis
of its own). No job per view.

**The flush** (a cron job every ``VIEW_FLUSH_SECONDS``) runs in three steps, each safe to
repeat after a crash at any point:

1. *claim*: one Lua call renames ``views:pending`` to ``views:flushing`` and gives the batch a
   fresh id, unless a claimed batch is still there (left by a flush that died), which is then
   finished first. New views go to a new ``views:pending`` meanwhile.
2. *apply*: the batch is split by article id into chunks of ``VIEW_FLUSH_BATCH``; each chunk
   commits its increments together with its chunk id in ``view_batches`` in one transaction.
   A chunk whose id is already there was applied before and is skipped: a replayed or
   duplicated batch changes nothing.
3. *release*: the claimed batch is deleted (only if it is still the same batch), and the
   popular ranking's cache generation moves on. Nothing else is invalidated: an article's
   representation holds no view count (``GET /articles/{id}/views`` reads it), and list pages
   show counts as of their caching (``CACHE_TTL_LIST``), so views never empty the cache.

**Reading the count** (``GET /articles/{id}/views``) adds the views still pending in Redis to
those in ``articles.views``, read from ``DATABASE_READ_URL``. A replica that has not replayed a
flush yet would show the count drop (the views left Redis, the replica does not have them), so
the read is fenced by WAL position: after its commits the flush notes the primary's WAL insert
position, and step 3 stores it in ``VIEWS_FLUSHED_LSN`` in the same Redis transaction that
drops the batch. The read fetches the pending views, whether a flush is under way and that
position in one Redis round trip; the replica answers its row and, in the same statement,
whether it has replayed up to the position (``pg_last_wal_replay_lsn()``). When it has not,
or a flush is between its claim and its release, or Redis cannot tell, the count is read from
the primary instead. Chosen over "read the primary for some seconds after a flush": no timer
to tune against a lag that has no bound, and the primary is asked only when the replica is
actually behind. What is left are the windows every reader shares, replica or not, each as
long as one round trip: views claimed but not committed yet are in neither place, and a read
whose Redis step came just before a claim and whose row came just after the commit counts
that batch twice.

A worker killed with SIGKILL before step 2 commits leaves the batch claimed in Redis; one
killed after leaves it claimed and recorded. Either way the next flush finishes it, and no
view is lost or counted twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.types import BigInteger

from service.core import keys
from service.core.errors import REDIS_FAILURES
from service.domain.view_buffer import ViewBuffer
from service.infra import db_cleanup
from service.infra.cache import HitCount
from service.infra.periodic import Background
from service.infra.resources import Resources

log = logging.getLogger(__name__)

# A Redis call that failed this way was sent: Redis may still apply it.
SENT_THEN_TIMED_OUT = (TimeoutError, RedisTimeoutError)

PENDING, FLUSHING, FLUSHING_ID = keys.VIEWS_PENDING, keys.VIEWS_FLUSHING, keys.VIEWS_FLUSHING_ID
FLUSHED_LSN = keys.VIEWS_FLUSHED_LSN

# ARGV[1]: a new batch id. Returns the id of the batch to flush (the one left over, or the
# new one), or false when there is nothing to flush.
_CLAIM = """
local current = redis.call('GET', KEYS[3])
if current and redis.call('EXISTS', KEYS[2]) == 1 then return current end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[3])
  return false
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], ARGV[1])
return ARGV[1]
"""

_RELEASE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""

# KEYS[1]: VIEWS_FLUSHED_LSN; ARGV[1]: a WAL position (bytes since 0/0). It only moves on: a
# replayed batch's release never takes it back.
_RAISE_LSN = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""

# The primary's WAL insert position: at or past the end of every commit made before it, even
# an asynchronous one not yet written out (pg_current_wal_lsn() could be behind it then).
_INSERT_LSN = text("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")

# An article's stored views and whether this server lacks what the primary had at :lsn: a
# standby that has not replayed that far. A primary (or a promoted replica) is never behind.
_STORED_AT = text(
    "SELECT views, CASE WHEN pg_is_in_recovery() "
    "THEN coalesce((pg_last_wal_replay_lsn() - '0/0'::pg_lsn) < CAST(:lsn AS bigint), true) "
    "ELSE false END AS behind FROM articles WHERE id = :id"
)
_STORED = text("SELECT views FROM articles WHERE id = :id")

_APPLY = text(
    "UPDATE articles SET views = articles.views + v.n "
    "FROM unnest(:ids, :counts) AS v(id, n) WHERE articles.id = v.id"
).bindparams(
    bindparam("ids", type_=ARRAY(BigInteger)), bindparam("counts", type_=ARRAY(BigInteger))
)


class ViewCounter:
    """How a view of an article is recorded: one increment of its field in the Redis hash
    ``VIEWS_PENDING``, which a cache hit makes inside its own lookup (``on_hit``).

    The benchmarks subclass it to compare other designs (one job per view) on the same app;
    a subclass that cannot count inside a cache lookup returns None from ``on_hit``."""

    def on_hit(self, article_id: int) -> HitCount | None:
        """The hash field a cache lookup increments when it hits ``article_id``."""
        return HitCount(keys.VIEWS_PENDING, str(article_id))

    def __init__(self) -> None:
        self.buffer: ViewBuffer | None = None  # made by start(), or by the first failed view
        self._retry: Background | None = None

    async def record(self, res: Resources, article_id: int) -> None:
        """One view of ``article_id``, through the process's ``RedisGuard``; the page is served
        whatever happens here.

        An increment that was never sent (Redis refused the connection, or the breaker is
        open after a failure) is kept in the process's ``ViewBuffer`` and counted once Redis
        answers again. One that was sent and timed out is taken as counted: Redis applies
        it when it gets to it (a stalled Redis works through its socket when it resumes), so
        buffering it too would count the view twice."""
        redis = res.clients.hot_redis
        try:
            await res.guard.call(
                lambda: redis.hincrby(keys.VIEWS_PENDING, str(article_id), 1)  # type: ignore[arg-type,return-value]
            )
        except SENT_THEN_TIMED_OUT:
            pass
        except REDIS_FAILURES:
            self._buffer(res).add(article_id)

    def _buffer(self, res: Resources) -> ViewBuffer:
        if self.buffer is None:
            self.buffer = ViewBuffer(res.settings.view_buffer_max)
        return self.buffer

    def start(self, res: Resources) -> None:
        """Start moving buffered views into Redis whenever it answers (the API's lifespan)."""
        buffer = self._buffer(res)
        self._retry = Background(
            lambda: buffer.run(lambda: res.hot_redis, res.guard), name="view-buffer-retry"
        )
        self._retry.start()

    async def stop(self, res: Resources) -> None:
        """Stop retrying, then one last move of what is still buffered."""
        if self._retry is not None:
            await self._retry.stop()
            self._retry = None
        if self.buffer is not None:
            await self.buffer.close(res.hot_redis, res.guard)


@dataclass
class Batch:
    id: str
    counts: dict[int, int]
    # The primary's WAL position once every chunk is committed (set by ``apply``).
    applied_lsn: int | None = None

    def chunks(self, size: int) -> list[tuple[str, list[int], list[int]]]:
        """``(chunk id, article ids, counts)``, the same every time for the same batch."""
        ids = sorted(self.counts)
        return [
            (f"{self.id}:{n}", part, [self.counts[i] for i in part])
            for n, part in enumerate(
                ids[start : start + size] for start in range(0, len(ids), size)
            )
        ]


@dataclass(frozen=True)
class Pending:
    """What Redis says about an article's count: ``views`` not flushed yet; ``flushing``: a
    flush is between its claim and its release; ``flushed_lsn``: the primary's WAL position
    after the last flush (0: none recorded); ``known``: False when Redis did not answer."""

    views: int = 0
    flushing: bool = False
    flushed_lsn: int = 0
    known: bool = True

    @property
    def replica_may_serve(self) -> bool:
        """Whether the replica may answer, provided it has replayed up to ``flushed_lsn``."""
        return self.known and not self.flushing


async def pending(res: Resources, article_id: int) -> Pending:
    """Views of ``article_id`` counted in Redis and not in PostgreSQL yet (those of a flush in
    progress excepted: a count read during a flush may lag by that batch), with the flush's
    state, in one round trip; ``known=False`` (no views) while Redis is unreachable."""
    redis = res.hot_redis
    if redis is None:
        return Pending(known=False)

    async def read() -> list[object]:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hget(PENDING, str(article_id))
            pipe.exists(FLUSHING)
            pipe.get(FLUSHED_LSN)
            return list(await pipe.execute())

    try:
        views, flushing, lsn = await res.guard.call(read)
    except REDIS_FAILURES:
        return Pending(known=False)
    return Pending(int(views or 0), bool(flushing), int(lsn or 0))  # type: ignore[call-overload]


async def stored_views(
    replica: AsyncSession, primary: Callable[[], AsyncSession], article_id: int, fence: Pending
) -> int | None:
    """The views of ``article_id`` in PostgreSQL (None: no such article), never older than
    the last flush that took views out of Redis: from ``replica`` when it has replayed that
    flush, else from ``primary()`` (see the module docstring)."""
    if fence.replica_may_serve:
        found = await replica.execute(_STORED_AT, {"id": article_id, "lsn": fence.flushed_lsn})
        row = found.first()
        # Not there may be an article the replica has not received yet: the primary knows.
        if row is not None and not row.behind:
            return int(row.views)
    found = await primary().execute(_STORED, {"id": article_id})
    views = found.scalar_one_or_none()
    return None if views is None else int(views)


async def claim(redis: Redis) -> Batch | None:
    """Step 1: the batch to flush (a left-over one first), or None when nothing is pending."""
    batch_id = await redis.eval(_CLAIM, 3, PENDING, FLUSHING, FLUSHING_ID, uuid.uuid4().hex)  # type: ignore[misc]
    if not batch_id:
        return None
    raw = await redis.hgetall(FLUSHING)  # type: ignore[misc]
    counts = {int(k): int(v) for k, v in raw.items() if int(v) > 0}
    return Batch(batch_id.decode() if isinstance(batch_id, bytes) else batch_id, counts)


async def apply_chunk(
    session: AsyncSession, chunk_id: str, ids: list[int], counts: list[int]
) -> bool:
    """Step 2 for one chunk, committed; False when it had been applied already."""
    inserted = await session.execute(
        text("INSERT INTO view_batches (id) VALUES (:id) ON CONFLICT DO NOTHING RETURNING id"),
        {"id": chunk_id},
    )
    if inserted.first() is None:
        await db_cleanup.roll_back(session)
        return False
    await session.execute(_APPLY, {"ids": ids, "counts": counts})
    await session.commit()
    return True


async def apply(sessionmaker: async_sessionmaker[AsyncSession], batch: Batch, size: int) -> int:
    """Step 2: every chunk of ``batch`` not applied yet; returns the views added now."""
    added = 0
    for chunk_id, ids, counts in batch.chunks(size):
        async with db_cleanup.session_scope(sessionmaker) as session:
            if await apply_chunk(session, chunk_id, ids, counts):
                added += sum(counts)
    async with db_cleanup.session_scope(sessionmaker) as session:
        # Chunks applied by an earlier, interrupted flush committed before this position too.
        batch.applied_lsn = int((await session.execute(_INSERT_LSN)).scalar_one())
        await db_cleanup.roll_back(session)
    return added


async def release(redis: Redis, batch: Batch, generation_keys: list[str]) -> None:
    """Step 3: drop the flushed batch and move the cache generations on; in the same
    transaction, the WAL position the replicas must reach to serve counts without it."""
    async with redis.pipeline(transaction=True) as pipe:
        if batch.applied_lsn is not None:
            pipe.eval(_RAISE_LSN, 1, FLUSHED_LSN, str(batch.applied_lsn))
        pipe.eval(_RELEASE, 2, FLUSHING, FLUSHING_ID, batch.id)
        for key in generation_keys:
            pipe.incr(key)
        await pipe.execute()


async def prune(session: AsyncSession, keep_days: int = 7) -> int:
    """Forget chunk ids older than ``keep_days`` (a batch is replayed within minutes)."""
    result = await session.execute(
        text("DELETE FROM view_batches WHERE applied_at < now() - make_interval(days => :days)"),
        {"days": keep_days},
    )
    await session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]

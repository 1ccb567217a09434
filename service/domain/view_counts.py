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

A worker killed with SIGKILL before step 2 commits leaves the batch claimed in Redis; one
killed after leaves it claimed and recorded. Either way the next flush finishes it, and no
view is lost or counted twice.
"""

from __future__ import annotations

import logging
import uuid
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

    def chunks(self, size: int) -> list[tuple[str, list[int], list[int]]]:
        """``(chunk id, article ids, counts)``, the same every time for the same batch."""
        ids = sorted(self.counts)
        return [
            (f"{self.id}:{n}", part, [self.counts[i] for i in part])
            for n, part in enumerate(
                ids[start : start + size] for start in range(0, len(ids), size)
            )
        ]


async def not_flushed(res: Resources, article_id: int) -> int:
    """Views of ``article_id`` counted in Redis and not in PostgreSQL yet (those of a flush in
    progress excepted: a count read during a flush may lag by that batch); 0 while Redis is
    unreachable."""
    redis = res.hot_redis
    if redis is None:
        return 0
    try:
        found = await res.guard.call(
            lambda: redis.hget(keys.VIEWS_PENDING, str(article_id))  # type: ignore[arg-type,return-value]
        )
    except REDIS_FAILURES:
        return 0
    return int(found or 0)


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
    return added


async def release(redis: Redis, batch: Batch, generation_keys: list[str]) -> None:
    """Step 3: drop the flushed batch and move the cache generations on."""
    async with redis.pipeline(transaction=True) as pipe:
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

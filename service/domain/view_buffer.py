"""Views that Redis could not take, kept in the process and counted once Redis answers again.

A view is one ``HINCRBY`` of the Redis hash ``views:pending`` (``service.domain.view_counts``).
When that call could not be made (Redis refused the connection, or the breaker skipped it
after a failure), the view goes into this process's ``ViewBuffer`` instead of being lost; a
retry loop (``ViewBuffer.run``, started by the API's lifespan) moves the buffered views into
``views:pending`` as soon as the breaker lets a call through, and the lifespan's shutdown
tries once more before the process exits. (An increment that was sent and timed out is not
buffered: Redis applies it when it gets to it.)

* **Nothing counted twice by a retry**: a batch being moved carries a token; one Lua call
  sets ``views:replayed:<token>`` (``SET NX``) and adds the counts only if the token was new,
  so a move whose answer was lost (timed out after Redis applied it) is not applied again
  when it is retried.
* **Bounded**: at most ``VIEW_BUFFER_MAX`` views are held (the buffer is a dict of article id
  to count, so memory follows the number of distinct articles, never the number of views);
  views past the bound are dropped and counted in ``views_dropped_total``, and logged once
  per outage. ``views_buffered`` shows what a process holds.
* **Lost only with the process**: a process that is killed (or stops while Redis is still
  down) loses what it holds; the shutdown logs how many.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from redis.asyncio import Redis

from service.core import keys
from service.core.errors import REDIS_FAILURES
from service.infra import metrics
from service.infra.guard import RedisGuard

log = logging.getLogger(__name__)

# KEYS[1]: the pending hash, KEYS[2]: the batch's token key; ARGV[1]: the token's lifetime,
# ARGV[2], ARGV[3], ...: article id, count pairs. Returns 1 if applied now, 0 if applied before.
_REPLAY = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

# How long a batch's token is remembered: far longer than any retry of that batch takes.
TOKEN_SECONDS = 24 * 3600
RETRY_SECONDS = 1.0


class ViewBuffer:
    """Views of this process not yet in Redis; see the module docstring."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[int, int] = {}  # views buffered since the last move started
        self.moving: tuple[str, dict[int, int]] | None = None  # (token, counts) being moved
        self.dropping = False  # a drop was logged for the current outage
        self.held = 0  # views in ``counts`` and ``moving``: kept, not summed on every view

    def __len__(self) -> int:
        return self.held

    def add(self, article_id: int) -> bool:
        """Keep one view of ``article_id``; False when the buffer is full (the view is lost)."""
        if len(self) >= self.limit:
            metrics.VIEWS_DROPPED.inc()
            if not self.dropping:
                self.dropping = True
                log.error(
                    "view buffer full (%d views, VIEW_BUFFER_MAX): views are being dropped "
                    "until Redis answers again",
                    self.limit,
                )
            return False
        self.counts[article_id] = self.counts.get(article_id, 0) + 1
        self.held += 1
        metrics.VIEWS_BUFFERED.inc()
        return True

    async def move(self, redis: Redis, guard: RedisGuard, *, force: bool = False) -> int:
        """Move the buffered views into the pending hash; returns how many were moved now
        (0 when there was nothing to move). Raises ``REDIS_FAILURES``; the views stay.
        ``force`` tries even while the breaker is open (at shutdown), within its timeout."""
        if self.moving is None:
            if not self.counts:
                return 0
            self.moving, self.counts = (uuid.uuid4().hex, self.counts), {}
        token, counts = self.moving
        args = [str(TOKEN_SECONDS)]
        for article_id, count in counts.items():
            args += [str(article_id), str(count)]
        replay = keys.views_replayed(token)
        if force:
            async with asyncio.timeout(guard.timeout):
                await redis.eval(_REPLAY, 2, keys.VIEWS_PENDING, replay, *args)  # type: ignore[misc]
        else:
            await guard.call(lambda: redis.eval(_REPLAY, 2, keys.VIEWS_PENDING, replay, *args))  # type: ignore[arg-type,return-value]
        self.moving = None
        moved = sum(counts.values())
        self.held -= moved
        metrics.VIEWS_BUFFERED.dec(moved)
        self.dropping = False
        log.info("%d buffered view(s) of %d article(s) counted", moved, len(counts))
        return moved

    async def run(self, redis: Callable[[], Redis | None], guard: RedisGuard) -> None:
        """Retry the move every ``RETRY_SECONDS`` while views are buffered (until cancelled)."""
        while True:
            await asyncio.sleep(RETRY_SECONDS)
            client = redis()
            if client is None or not len(self) or not guard.allows():
                continue
            try:
                await self.move(client, guard)
            except REDIS_FAILURES:
                continue  # the guard logged it; the views stay for the next try

    async def close(self, redis: Redis | None, guard: RedisGuard) -> None:
        """A last move at shutdown; logs the views this process loses if Redis still fails."""
        if redis is not None and len(self):
            try:
                await self.move(redis, guard, force=True)
            except REDIS_FAILURES as exc:
                lost = len(self)
                log.error("%d buffered view(s) lost at shutdown: Redis unavailable: %r", lost, exc)

"""The response cache in Redis: never stale after a write, no stampede, survives an outage.

Entries hold the final response bytes, served as they are (no model work on a hit).

**Never stale after a write** — generation-versioned keys. A key embeds a generation number
kept in Redis (``gen:article:<id>`` for one article, ``gen:articles`` for every list and the
popular ranking) and a cache-wide epoch. A reader fetches the generations *before* it reads
PostgreSQL and stores what it read under those generations; a writer commits, then increments
the generations, before its response is sent. A reader that read the old row can therefore
only store it under the old generation, which no later reader asks for: the stale-set race
cannot happen, by construction. Looking up a key and its generations is one Lua call.

**No stampede** — on a miss, one request takes a short lock (``SET NX PX``) and recomputes;
the others poll the entry for a moment and serve it when it lands (or, past the wait, read
PostgreSQL themselves).

**Redis down** — every call has a short timeout, and a failure opens a breaker: for
``CACHE_BREAKER_SECONDS`` the cache is skipped (``X-Cache: BYPASS``) without touching Redis,
then one request probes it again. An invalidation that failed while Redis was unreachable
leaves old entries behind, so the process that missed it bumps the epoch, invalidating
everything, as soon as Redis answers again.

**Bounded memory** — an entry bigger than ``CACHE_MAX_ENTRY_BYTES`` is served but not stored
(nor its stale copy): a small marker (``keys.UNCACHEABLE``) takes its place for its TTL, so
its readers compute it at once instead of queueing on the lock. Entries whose keys a client
chooses (every list query is one) are stored under a ``Quota``: at most so many live at once
per generation, counted in a sorted set of their expiry times; past it a page is served
uncached.

**Its own Redis** — with ``CACHE_REDIS_URL`` the cache lives on a Redis of its own (LRU
eviction), away from sessions, rate limits and queues. A lookup counts a rate limit or a view
in its own round trip only when they share its Redis (``inline_counters``); otherwise its
callers count them on ``REDIS_URL`` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis

from service.core import keys
from service.core.errors import REDIS_FAILURES
from service.infra.guard import RedisGuard

log = logging.getLogger(__name__)

HIT, MISS, BYPASS, STALE = "HIT", "MISS", "BYPASS", "STALE"


@dataclass(frozen=True)
class StaleIfError:
    """Keep the last body of an entry at ``key`` for ``ttl`` seconds, whatever its generation,
    and serve it when computing the entry fails with an error ``applies`` accepts (the
    database is unreachable): RFC 5861's ``stale-if-error``."""

    key: str
    ttl: int
    applies: Callable[[BaseException], bool]


# KEYS: the generation keys, then (optionally) a rate-limit counter, then (optionally) a hash
# for ``HitCount``; ARGV[1]: the key template with {e} and {g1}, {g2}...; ARGV[2]: lock token;
# ARGV[3]: lock ms; ARGV[4]: the counter's window in seconds, or '' for none; ARGV[5]: '1' to
# peek (on a miss: no lock, no count); ARGV[6]: the hash field to increment on a hit, or '';
# ARGV[7]: the rate limit, past which the hit is refused and not counted in the hash;
# ARGV[8]: a ``Quota`` template to resolve like the key, or ''; ARGV[9]: the quota's limit.
# Returns {key, value or false, lock taken (1/0), count, quota key or false, uncacheable
# (1/0)}: a cached read costs one round trip, its rate limit (and its view,
# service.domain.view_counts) included. A miss on an ``UNCACHEABLE`` marker, or on a key
# its full quota could not store, takes no lock: the caller computes and stores nothing.
_LOOKUP = """
local gens = #KEYS
local counter, hits
if ARGV[6] ~= '' then hits = KEYS[gens]; gens = gens - 1 end
if ARGV[4] ~= '' then counter = KEYS[gens]; gens = gens - 1 end
local epoch = redis.call('GET', '$EPOCH') or '0'
local values = {}
for i = 1, gens do values[i] = redis.call('GET', KEYS[i]) or '0' end
local function resolve(template)
  local key = string.gsub(template, '{e}', epoch)
  for i = 1, gens do key = string.gsub(key, '{g' .. i .. '}', values[i]) end
  return key
end
local key = resolve(ARGV[1])
local value = redis.call('GET', key)
local uncacheable = value == '$UNCACHEABLE'
if uncacheable then value = false end
if not value and ARGV[5] == '1' then return {key, false, 0, 0, false, 0} end
local quota = false
if ARGV[8] ~= '' then quota = resolve(ARGV[8]) end
local count = 0
if counter then
  count = redis.call('INCR', counter)
  if count == 1 then redis.call('EXPIRE', counter, ARGV[4]) end
end
if value then
  if hits and (not counter or count <= tonumber(ARGV[7])) then
    redis.call('HINCRBY', hits, ARGV[6], 1)
  end
  return {key, value, 0, count, quota, 0}
end
if quota and not uncacheable and not redis.call('ZSCORE', quota, key) then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local live = redis.call('ZCOUNT', quota, '(' .. string.format('%.0f', now), '+inf')
  uncacheable = live >= tonumber(ARGV[9])
end
if uncacheable then return {key, false, 0, count, quota, 1} end
local locked = redis.call('SET', '$LOCK' .. key, ARGV[2], 'NX', 'PX', ARGV[3])
return {key, false, locked and 1 or 0, count, quota, 0}
""".replace("$EPOCH", keys.CACHE_EPOCH).replace("$LOCK", keys.LOCK_PREFIX)
_LOOKUP = _LOOKUP.replace("$UNCACHEABLE", keys.UNCACHEABLE.decode())

# Stores an entry and releases its lock. KEYS: the entry, its lock, then (optionally) its stale
# copy, then (optionally) a ``Quota``'s sorted set; ARGV[1]: the value (``UNCACHEABLE``: the
# stale copy is deleted, not replaced); ARGV[2]: its TTL in seconds; ARGV[3]: the lock token;
# ARGV[4]: the stale copy's TTL, or '' for none; ARGV[5]: the quota's limit, or '' for none.
# The quota's set holds the keys stored under it, scored by when they expire (ms, the server's
# clock): expired ones are dropped first, and a new key past the limit is not stored. The set
# itself expires with its last key. Returns 1 when stored, 0 when the quota was full.
_STORE = """
local n = 3
local stale, quota
if ARGV[4] ~= '' then stale = KEYS[n]; n = n + 1 end
if ARGV[5] ~= '' then quota = KEYS[n] end
local stored = 1
if quota then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', quota, '-inf', string.format('%.0f', now))
  if not redis.call('ZSCORE', quota, KEYS[1])
      and redis.call('ZCARD', quota) >= tonumber(ARGV[5]) then
    stored = 0
  else
    local expires = string.format('%.0f', now + tonumber(ARGV[2]) * 1000)
    redis.call('ZADD', quota, expires, KEYS[1])
    local last = redis.call('ZRANGE', quota, -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', quota, last[2])
  end
end
if stored == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  if stale and ARGV[1] == '$UNCACHEABLE' then
    redis.call('DEL', stale)
  elseif stale then
    redis.call('SET', stale, ARGV[1], 'EX', ARGV[4])
  end
end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return stored
""".replace("$UNCACHEABLE", keys.UNCACHEABLE.decode())

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class Stats:
    """Hits, misses and bypasses per endpoint, in this process; each one also goes to
    ``export`` when metrics are on (``service.infra.sampler.instrument``: the Prometheus
    counter, summed over every worker)."""

    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: {HIT: 0, MISS: 0, BYPASS: 0})
    )
    export: Callable[[str, str], None] | None = None

    def count(self, endpoint: str, outcome: str) -> None:
        counts = self.counts[endpoint]
        counts[outcome] = counts.get(outcome, 0) + 1
        if self.export is not None:
            self.export(endpoint, outcome)

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {name: dict(values) for name, values in self.counts.items()}


@dataclass
class Lookup:
    outcome: str
    value: bytes | None = None
    key: str | None = None
    lock_token: str | None = None
    count: int = 0  # the rate-limit counter after this request, when one was given
    quota_key: str | None = None  # the resolved ``Quota`` key, when one was given
    uncacheable: bool = False  # an ``UNCACHEABLE`` marker: compute without the lock


@dataclass(frozen=True)
class Count:
    """A counter to increment in the lookup's round trip: its key, window (seconds) and limit
    (a hit past the limit increments no ``HitCount``)."""

    key: str
    window: int
    limit: int = 2**62


@dataclass(frozen=True)
class HitCount:
    """A hash field to increment by one when the lookup hits (a view)."""

    key: str
    field: str


@dataclass(frozen=True)
class Quota:
    """At most ``limit`` entries live at once under one resolution of ``template`` (a key
    template with the entry's own ``{e}`` and ``{g1}``...: ``keys.LIST_ENTRIES`` counts the
    list pages of one generation). Past it an entry is served and not stored."""

    template: str
    limit: int


class ResponseCache:
    """Cached response bodies under generation-versioned keys (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        *,
        guard: RedisGuard,
        lock_ms: int = 5000,
        wait_seconds: float = 1.0,
        enabled: bool = True,
        max_entry_bytes: int = 256 * 1024,
        inline_counters: bool = True,
    ) -> None:
        self.redis = redis
        self.enabled = enabled
        self.guard = guard
        # Bigger entries are served, not stored (CACHE_MAX_ENTRY_BYTES).
        self.max_entry_bytes = max_entry_bytes
        # Rate-limit counters and view counts live on this Redis (the cache shares REDIS_URL),
        # so a lookup may count them (``Count``, ``HitCount``); False with CACHE_REDIS_URL.
        self.inline_counters = inline_counters
        # An invalidation failed while Redis was unreachable: bump the epoch before any read.
        self.must_bump_epoch = False
        self.lock_ms = lock_ms
        self.wait_seconds = wait_seconds
        self.stats = Stats()
        self._scripts: dict[str, Any] = {}
        # Lock tokens only need to differ between holders: a per-process prefix and a counter.
        self._token_prefix = secrets.token_hex(6)
        self._tokens = itertools.count()

    async def _call(self, make: Callable[[], Awaitable[Any]]) -> Any:
        """One guarded Redis round trip (``service.infra.guard``): failures open the breaker
        and re-raise.

        Owed an epoch bump (an invalidation was missed), it pays that first, so no entry from
        before the outage is read again."""

        async def epoch_then_call() -> Any:
            if self.must_bump_epoch:
                await self.redis.incr(keys.CACHE_EPOCH)
                self.must_bump_epoch = False
                log.info("cache: Redis is back; epoch bumped after missed invalidations")
            return await make()

        return await self.guard.call(epoch_then_call)

    def usable(self) -> bool:
        """Enabled, and Redis not known to be failing."""
        return self.enabled and self.guard.allows()

    async def fetch(
        self,
        endpoint: str,
        *,
        generations: Sequence[str],
        template: str,
        ttl: int,
        compute: Callable[[], Awaitable[bytes | None]],
        count: Count | None = None,
        on_count: Callable[[int], None] | None = None,
        stale: StaleIfError | None = None,
        quota: Quota | None = None,
    ) -> tuple[bytes | None, str]:
        """The cached body for ``template`` (computing and storing it on a miss) and the
        outcome. ``template`` holds ``{e}`` and ``{g1}``... for the epoch and the generations
        named by ``generations``; ``compute`` returns the body, or None to store nothing.
        ``count`` (only when ``inline_counters``) is incremented in the same round trip and
        ``on_count(count)`` called with the result before anything is computed (it may
        raise, e.g. a 429). With ``stale``, a failed computation may be answered with the last
        stored body (``STALE``). With ``quota``, the body is stored only within it.
        """
        if count is not None and not self.inline_counters:
            raise ValueError("this cache's Redis holds no rate-limit counter: count elsewhere")
        if not self.usable():
            self.stats.count(endpoint, BYPASS)
            return await compute(), BYPASS
        token = f"{self._token_prefix}{next(self._tokens)}"
        try:
            lookup = await self._lookup(generations, template, token, count, quota=quota)
        except REDIS_FAILURES:
            self.stats.count(endpoint, BYPASS)
            return await compute(), BYPASS
        if count is not None and on_count is not None:
            try:
                on_count(lookup.count)
            except BaseException:
                if lookup.key is not None and lookup.lock_token is not None:
                    await self._store(lookup, None, ttl)  # unlock only
                raise
        try:
            if lookup.value is None and lookup.lock_token is None and not lookup.uncacheable:
                lookup = await self._wait_for_entry(generations, template, token, quota)
        except REDIS_FAILURES:
            self.stats.count(endpoint, BYPASS)
            return await compute(), BYPASS
        if lookup.value is not None:
            self.stats.count(endpoint, HIT)
            return lookup.value, HIT
        self.stats.count(endpoint, MISS)
        try:
            body = await compute()
        except BaseException as exc:
            if lookup.key is not None and lookup.lock_token is not None:
                await self._store(lookup, None, ttl)  # unlock only
            served = await self._stale(stale, exc)
            if served is None:
                raise
            self.stats.count(endpoint, STALE)
            return served, STALE
        if lookup.key is not None and lookup.lock_token is not None:
            await self._store(lookup, body, ttl, stale, quota)
        return body, MISS

    async def _stale(self, stale: StaleIfError | None, exc: BaseException) -> bytes | None:
        """The last stored body under ``stale``, if ``exc`` is an error it covers."""
        if stale is None or not isinstance(exc, Exception) or not stale.applies(exc):
            return None
        try:
            found = await self._call(lambda: self.redis.get(stale.key))
        except REDIS_FAILURES:
            return None
        return cast(bytes | None, found)

    async def forget(self, key: str) -> None:
        """Delete ``key`` (a stale copy of something deleted); best effort."""
        with contextlib.suppress(*REDIS_FAILURES):
            await self._call(lambda: self.redis.delete(key))

    def _eval(self, script: str, keys: list[str], args: Sequence[str | bytes]) -> Awaitable[Any]:
        runner = self._scripts.get(script)
        if runner is None:  # EVALSHA, loading the script once
            runner = self._scripts[script] = self.redis.register_script(script)
        return cast(Awaitable[Any], runner(keys=keys, args=args))

    async def _lookup(
        self,
        generations: Sequence[str],
        template: str,
        token: str,
        count: Count | None = None,
        *,
        peek: bool = False,
        on_hit: HitCount | None = None,
        quota: Quota | None = None,
    ) -> Lookup:
        keys_ = [*generations]
        window = field = limit = ""
        if count is not None:
            keys_.append(count.key)
            window, limit = str(count.window), str(count.limit)
        if on_hit is not None:
            keys_.append(on_hit.key)
            field = on_hit.field
        args = [template, token, str(self.lock_ms), window, "1" if peek else "", field, limit]
        args += [quota.template, str(quota.limit)] if quota is not None else ["", ""]
        found = await self._call(lambda: self._eval(_LOOKUP, keys_, args))
        key, value, locked, counted, quota_key, uncacheable = found
        key = key.decode() if isinstance(key, bytes) else key
        quota_key = quota_key.decode() if isinstance(quota_key, bytes) else quota_key
        if value:
            return Lookup(HIT, value=value, key=key, count=int(counted), quota_key=quota_key)
        return Lookup(
            MISS,
            key=key,
            lock_token=token if locked else None,
            count=int(counted),
            quota_key=quota_key,
            uncacheable=bool(uncacheable),
        )

    async def peek(
        self,
        endpoint: str,
        *,
        generations: Sequence[str],
        template: str,
        count: Count | None,
        on_hit: HitCount | None = None,
    ) -> tuple[bytes, int] | None:
        """The cached body and the counter after this request, on a hit; None otherwise.

        A miss takes no lock and counts nothing, so the caller can hand the request to the
        full path (``fetch``) as if this call had not happened; ``on_hit`` is incremented
        only on a hit. ``count`` and ``on_hit`` only when ``inline_counters``. Redis errors
        open the breaker and propagate."""
        if (count is not None or on_hit is not None) and not self.inline_counters:
            raise ValueError("this cache's Redis holds no counter: count elsewhere")
        if not self.usable():
            return None
        lookup = await self._lookup(generations, template, "", count, peek=True, on_hit=on_hit)
        if lookup.value is None:
            return None
        self.stats.count(endpoint, HIT)
        return lookup.value, lookup.count

    async def _wait_for_entry(
        self, generations: Sequence[str], template: str, token: str, quota: Quota | None
    ) -> Lookup:
        """Another request is computing this entry: poll briefly for it (or for the lock)."""
        deadline = time.monotonic() + self.wait_seconds
        delay = 0.005
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            lookup = await self._lookup(generations, template, token, quota=quota)
            if lookup.value is not None or lookup.lock_token is not None or lookup.uncacheable:
                return lookup
        return Lookup(MISS)  # waited long enough: compute without storing

    async def _store(
        self,
        lookup: Lookup,
        body: bytes | None,
        ttl: int,
        stale: StaleIfError | None = None,
        quota: Quota | None = None,
    ) -> None:
        """Store ``body`` (None: nothing) at the lookup's key within ``quota`` and release the
        lock, in one round trip. A body over ``max_entry_bytes`` is stored as the
        ``UNCACHEABLE`` marker and its stale copy deleted (older than what was just served)."""
        assert lookup.key is not None and lookup.lock_token is not None
        lock = keys.LOCK_PREFIX + lookup.key
        script, keys_ = _UNLOCK, [lock]
        args: list[str | bytes] = [lookup.lock_token]
        if body is not None:
            if len(body) > self.max_entry_bytes:
                log.debug("cache: %s not stored: %d bytes", lookup.key, len(body))
                body = keys.UNCACHEABLE
            script, keys_ = _STORE, [lookup.key, lock]
            args = [body, str(ttl), lookup.lock_token, "", ""]
            if stale is not None and stale.ttl > 0:
                keys_.append(stale.key)
                args[3] = str(stale.ttl)
            if quota is not None and lookup.quota_key is not None:
                keys_.append(lookup.quota_key)
                args[4] = str(quota.limit)
        # On a failure the breaker has noted it; the lock expires by itself.
        with contextlib.suppress(*REDIS_FAILURES):
            await self._call(lambda: self._eval(script, keys_, args))

    async def move_on(self, generation_keys: Sequence[str]) -> None:
        """Move the named generations on, in one guarded round trip; Redis failures propagate
        (a job that fails here is tried again)."""

        async def bump() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in generation_keys:
                    pipe.incr(key)
                return await pipe.execute()

        await self._call(bump)

    async def invalidate(self, generation_keys: Sequence[str]) -> None:
        """Move the named generations on (after a commit): older entries are never read again.

        If Redis cannot be reached, the epoch is bumped once it can (see the module docstring).
        """
        try:
            await self.move_on(generation_keys)
        except REDIS_FAILURES:
            self.must_bump_epoch = True
            log.warning("cache: invalidation of %s deferred until Redis is back", generation_keys)

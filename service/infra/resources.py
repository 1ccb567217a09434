"""The loop-bound clients of one process: database engines and the Redis clients.

They are created by ``start()`` on the running event loop (the ASGI lifespan start-up, or a
worker's ``on_startup``) and closed by ``close()``, never at import time: asyncpg,
SQLAlchemy's async pool and redis.asyncio connections belong to the loop that made them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from service.core.redis_url import is_sentinel_url, parse_sentinel_url
from service.core.settings import Settings
from service.infra import db_errors
from service.infra.cache import ResponseCache
from service.infra.guard import RedisGuard

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Redis)


def _unnamed_statement() -> str:
    return ""


def connect_args(settings: Settings, *, application_name: str) -> dict[str, Any]:
    """asyncpg's connection arguments: timeouts, start-up parameters and, with
    ``DB_PGBOUNCER``, what PgBouncer's transaction pooling needs (also used by alembic/env.py).

    Behind PgBouncer in transaction mode, consecutive transactions of one client connection
    run on different server connections, so a prepared statement kept from one transaction is
    missing (or, by name, already taken) in the next. Hence: no statement cache in asyncpg
    (``statement_cache_size=0``) nor in SQLAlchemy's dialect
    (``prepared_statement_cache_size=0``), and SQLAlchemy's statements prepared unnamed
    (``prepared_statement_name_func`` returning ``""``). Unnamed rather than the uuid names
    SQLAlchemy's documentation suggests: asyncpg then parses the statement again in the same
    message batch as its execution (its own PgBouncer path), and nothing is left behind on
    the server, whereas a named statement is closed only with the client's next transaction,
    on whichever server connection that gets: after the load of tests/infra/test_pgbouncer.py
    (200 requests), uuid names had left 257 statements on PgBouncer's 8 server connections,
    unnamed ones none.

    PgBouncer 1.18 refuses the connection when a start-up parameter other than a few it
    tracks is sent (``unsupported startup parameter: statement_timeout``), and
    ``ignore_startup_parameters`` would only drop it silently. So ``statement_timeout`` is
    not sent: set it on the server (``ALTER ROLE ... SET statement_timeout``, deploy/README.md)
    and ``DB_STATEMENT_TIMEOUT_MS=0``; until then a warning says so. ``application_name`` is
    one PgBouncer tracks, so it is kept."""
    server_settings = {"application_name": application_name}
    args: dict[str, Any] = {"timeout": settings.db_connect_timeout}
    if settings.db_pgbouncer:
        if settings.db_statement_timeout_ms:
            log.warning(
                "DB_STATEMENT_TIMEOUT_MS=%d is not applied through PgBouncer (it refuses the "
                "start-up parameter): set statement_timeout on the server (ALTER ROLE ... SET "
                "statement_timeout = %d), then DB_STATEMENT_TIMEOUT_MS=0",
                settings.db_statement_timeout_ms,
                settings.db_statement_timeout_ms,
            )
        args.update(
            statement_cache_size=0,
            prepared_statement_cache_size=0,
            prepared_statement_name_func=_unnamed_statement,
        )
    elif settings.db_statement_timeout_ms:
        server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    args["server_settings"] = server_settings
    return args


def make_engine(url: str, settings: Settings, *, application_name: str) -> AsyncEngine:
    """An asyncpg engine with the pool limits and timeouts from ``settings``."""
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        connect_args=connect_args(settings, application_name=application_name),
    )
    ping_idle_connections(engine)
    db_errors.watch(engine)
    return engine


# A pooled connection idle longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 2.0


def ping_idle_connections(engine: AsyncEngine) -> None:
    """SQLAlchemy's ``pool_pre_ping``, but only for connections that sat idle.

    ``pool_pre_ping`` pings on every checkout, and asyncpg's ping is three round trips (BEGIN,
    ``;``, ROLLBACK): a primary-key read paid six round trips instead of three (profiled in
    docs/PROFILE.md). Connections reused within ``PING_AFTER_IDLE_SECONDS`` (every one under
    load) skip it; one that sat idle (where a restarted server, PgBouncer's idle timeout or a
    firewall has most likely dropped it) is pinged as before, and a failed ping replaces it
    (``DisconnectionError`` makes the pool retry with a fresh connection). A connection that
    dies within the window fails its request with a disconnect error, which invalidates the
    whole pool, so the following checkouts reconnect.
    """
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _idle_from(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return  # new (just connected) or recently used
        try:
            dbapi_connection.ping()
        except Exception as error:
            raise exc.DisconnectionError(f"pooled connection failed its ping: {error}") from error


def _redis_client(settings: Settings, redis_class: type[R], url: str, **options: Any) -> R:
    """A ``redis_class`` client of ``url`` (``REDIS_URL`` or ``CACHE_REDIS_URL``) with
    connection ``options``.

    A ``redis+sentinel://`` URL gives a client of the master the Sentinels name: each new
    connection asks them where the master is, so after a failover the next connection goes
    to the new one (and a connection still on a demoted master is dropped when it answers
    READONLY). Questions to the Sentinels have ``REDIS_SOCKET_TIMEOUT`` as their timeout: they
    happen only when a connection is opened, never per command."""
    if not is_sentinel_url(url):
        pool = ConnectionPool.from_url(url, **options)
        return redis_class(connection_pool=pool)
    target = parse_sentinel_url(url)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        list(target.sentinels),
        sentinel_kwargs={
            "socket_timeout": settings.redis_socket_timeout,
            "socket_connect_timeout": settings.redis_socket_timeout,
        },
        db=target.db,
        username=target.username,
        password=target.password,
    )
    client: R = sentinel.master_for(target.service, redis_class=redis_class, **options)
    return client


async def close_redis(client: Redis) -> None:
    """Close ``client`` and its pool, and the Sentinel clients of a Sentinel-managed one."""
    pool = client.connection_pool
    await client.aclose(close_connection_pool=True)
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose(close_connection_pool=True)


def make_redis(settings: Settings) -> ArqRedis:
    """One Redis client for cache, rate limits, sessions and the arq queue.

    ``ArqRedis`` is a ``redis.asyncio.Redis`` that can also enqueue jobs. It is built directly
    rather than with ``arq.create_pool`` so that start-up does not wait for Redis: readiness
    reports Redis being down instead. Short timeouts keep a dead server from stalling requests.
    """
    return _redis_client(
        settings,
        ArqRedis,
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_socket_timeout,
        health_check_interval=30,
    )


def make_hot_path_redis(settings: Settings, url: str | None = None) -> Redis:
    """A second Redis client for the cache and rate limits, the per-request hot path, of
    ``url`` (``REDIS_URL`` by default; the cache's own is ``CACHE_REDIS_URL``).

    It has no socket timeout of its own: with one, redis-py wraps every send in
    ``asyncio.wait_for`` (a task per command). Its callers bound each call, connecting
    included, with ``CACHE_TIMEOUT`` of loop time and a breaker instead
    (``service.infra.guard``); the connect timeout is only a backstop, as long as the other
    client's, so that a connection opened while the loop lags is not given up on the clock."""
    return _redis_client(
        settings,
        Redis,
        url or settings.redis_url,
        max_connections=settings.redis_max_connections,
        socket_connect_timeout=max(settings.cache_timeout, settings.redis_socket_timeout),
    )


@dataclass
class Resources:
    """What a process needs to talk to its dependencies; one per ASGI app or worker."""

    settings: Settings
    application_name: str = "newsdesk-api"
    engine: AsyncEngine | None = None
    read_engine: AsyncEngine | None = None
    redis: ArqRedis | None = None
    # The per-request client of REDIS_URL (``make_hot_path_redis``): rate limits, view counts,
    # and the cache's entries unless CACHE_REDIS_URL gives the cache a Redis of its own.
    hot_redis: Redis | None = None
    cache: ResponseCache | None = None
    # The timeout and breaker every per-request call to REDIS_URL shares (rate limits, view
    # counts, enqueueing, and the cache when it shares that Redis): one failing Redis opens it
    # for all of them. A cache on its own Redis has a breaker of its own (``cache.guard``).
    guard: RedisGuard = field(init=False, repr=False)
    sessionmaker: async_sessionmaker | None = field(default=None, repr=False)  # type: ignore[type-arg]
    read_sessionmaker: async_sessionmaker | None = field(default=None, repr=False)  # type: ignore[type-arg]

    def __post_init__(self) -> None:
        self.guard = RedisGuard(
            timeout=self.settings.cache_timeout,
            breaker_seconds=self.settings.cache_breaker_seconds,
        )

    @property
    def started(self) -> bool:
        return self.engine is not None

    async def start(self) -> None:
        """Create engines and the Redis client on the running loop."""
        if self.started:
            return
        s = self.settings
        self.engine = make_engine(s.database_url, s, application_name=self.application_name)
        if s.read_database_url == s.database_url:
            self.read_engine = self.engine
        else:
            self.read_engine = make_engine(
                s.read_database_url, s, application_name=self.application_name + "-read"
            )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessionmaker = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self.redis = make_redis(s)
        self.hot_redis = make_hot_path_redis(s)
        self.cache = self._make_cache(self.hot_redis)

    def _make_cache(self, hot_redis: Redis) -> ResponseCache:
        """The response cache: on ``hot_redis`` (counting rate limits and views in its own
        lookups), or with CACHE_REDIS_URL on a Redis of its own, with its own breaker, where
        it counts nothing: rate limits and view counts stay on REDIS_URL, which never evicts."""
        s = self.settings
        redis, guard = hot_redis, self.guard
        if s.cache_redis_url:
            redis = make_hot_path_redis(s, s.cache_redis_url)
            guard = RedisGuard(
                timeout=s.cache_timeout, breaker_seconds=s.cache_breaker_seconds, lag=guard.lag
            )
        return ResponseCache(
            redis,
            guard=guard,
            enabled=s.cache_enabled,
            max_entry_bytes=s.cache_max_entry_bytes,
            inline_counters=redis is hot_redis,
        )

    async def close(self) -> None:
        """Dispose the pools; safe to call twice."""
        if self.cache is not None:
            if self.cache.redis is not self.hot_redis:
                await close_redis(self.cache.redis)
            self.cache = None
        if self.hot_redis is not None:
            await close_redis(self.hot_redis)
            self.hot_redis = None
        if self.redis is not None:
            await close_redis(self.redis)
            self.redis = None
        if self.read_engine is not None and self.read_engine is not self.engine:
            await self.read_engine.dispose()
        if self.engine is not None:
            await self.engine.dispose()
        self.engine = self.read_engine = None
        self.sessionmaker = self.read_sessionmaker = None

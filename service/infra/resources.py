"""The loop-bound clients of one process: database engines and the Redis clients.

They are created by ``start()`` on the running event loop (the ASGI lifespan start-up, or a
worker's ``on_startup``) and closed by ``close()``, never at import time: asyncpg,
SQLAlchemy's async pool and redis.asyncio connections belong to the loop that made them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from service.core.redis_url import is_sentinel_url, parse_sentinel_url
from service.core.settings import Settings
from service.infra import db_errors, tracing
from service.infra.cache import ResponseCache
from service.infra.guard import RedisGuard
from service.infra.reads import Reads

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Redis)
T = TypeVar("T")


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


def redis_settings_for(url: str) -> RedisSettings:
    """arq's connection settings for ``REDIS_URL``, a ``redis+sentinel://`` one included.

    arq's ``from_dsn`` knows only single-server URLs; for Sentinel, arq builds a redis-py
    ``Sentinel`` over ``host`` (the list of Sentinel addresses) and asks it for the master
    named ``sentinel_master``, so the worker follows a failover the same way the API does."""
    if not is_sentinel_url(url):
        return RedisSettings.from_dsn(url)
    target = parse_sentinel_url(url)
    return RedisSettings(
        host=list(target.sentinels),
        sentinel=True,
        sentinel_master=target.service,
        database=target.db,
        username=target.username,
        password=target.password,
    )


@dataclass(frozen=True)
class Clients:
    """The clients of a started ``Resources``: every one there (``Resources.clients``)."""

    engine: AsyncEngine
    read_engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession] = field(repr=False)
    read_sessionmaker: async_sessionmaker[AsyncSession] = field(repr=False)
    # One-statement reads without a transaction, on the same pools (``service.infra.reads``).
    reads: Reads = field(repr=False)
    replica_reads: Reads = field(repr=False)
    redis: ArqRedis
    # The per-request client of REDIS_URL (``make_hot_path_redis``): rate limits, view counts,
    # and the cache's entries unless CACHE_REDIS_URL gives the cache a Redis of its own.
    hot_redis: Redis
    cache: ResponseCache


class _ClientOf(Generic[T]):
    """A ``Resources`` attribute reading the started client of the same name, or None."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, res: Resources, owner: type | None = None) -> T | None:
        clients = res._clients
        return None if clients is None else cast(T, getattr(clients, self.name))


@dataclass
class Resources:
    """What a process needs to talk to its dependencies; one per ASGI app or worker.

    Its clients exist from ``start()`` to ``close()``: ``clients`` holds them all (and raises
    before ``start()``); the attributes of the same names read None outside that span."""

    settings: Settings
    application_name: str = "newsdesk-api"
    # The timeout and breaker every per-request call to REDIS_URL shares (rate limits, view
    # counts, enqueueing, and the cache when it shares that Redis): one failing Redis opens it
    # for all of them. A cache on its own Redis has a breaker of its own (``cache.guard``).
    guard: RedisGuard = field(init=False, repr=False)
    # The process's tracing (``Runtime.trace``), for the jobs these clients enqueue.
    tracing: tracing.Tracing = field(default=tracing.OFF, init=False, repr=False)
    _clients: Clients | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.guard = RedisGuard(
            timeout=self.settings.cache_timeout,
            breaker_seconds=self.settings.cache_breaker_seconds,
        )

    @property
    def started(self) -> bool:
        return self._clients is not None

    @property
    def clients(self) -> Clients:
        """The clients, once ``start()`` has made them."""
        if self._clients is None:
            raise RuntimeError(
                f"{self.application_name}: resources not started (start() makes the clients)"
            )
        return self._clients

    # The same clients as attributes: None outside ``start()``..``close()``.
    engine = _ClientOf[AsyncEngine]()
    read_engine = _ClientOf[AsyncEngine]()
    sessionmaker = _ClientOf["async_sessionmaker[AsyncSession]"]()
    read_sessionmaker = _ClientOf["async_sessionmaker[AsyncSession]"]()
    redis = _ClientOf[ArqRedis]()
    hot_redis = _ClientOf[Redis]()
    cache = _ClientOf[ResponseCache]()

    async def start(self) -> None:
        """Create engines and the Redis client on the running loop."""
        if self.started:
            return
        s = self.settings
        engine = make_engine(s.database_url, s, application_name=self.application_name)
        read_engine = engine
        if s.read_database_url != s.database_url:
            read_engine = make_engine(
                s.read_database_url, s, application_name=self.application_name + "-read"
            )
        hot_redis = make_hot_path_redis(s)
        self._clients = Clients(
            engine=engine,
            read_engine=read_engine,
            sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
            read_sessionmaker=async_sessionmaker(read_engine, expire_on_commit=False),
            reads=Reads(engine),
            replica_reads=Reads(read_engine),
            redis=make_redis(s),
            hot_redis=hot_redis,
            cache=self._make_cache(hot_redis),
        )

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
        clients, self._clients = self._clients, None
        if clients is None:
            return
        if clients.cache.redis is not clients.hot_redis:
            await close_redis(clients.cache.redis)
        await close_redis(clients.hot_redis)
        await close_redis(clients.redis)
        if clients.read_engine is not clients.engine:
            await clients.read_engine.dispose()
        await clients.engine.dispose()

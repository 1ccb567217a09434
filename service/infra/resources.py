"""The loop-bound clients of one process: database engines and the Redis client.

They are created by ``start()`` on the running event loop (the ASGI lifespan start-up, or a
worker's ``on_startup``) and closed by ``close()``, never at import time: asyncpg,
SQLAlchemy's async pool and redis.asyncio connections belong to the loop that made them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from service.core.settings import Settings
from service.infra.cache import ResponseCache
from service.infra.guard import RedisGuard


def make_engine(url: str, settings: Settings, *, application_name: str) -> AsyncEngine:
    """An asyncpg engine with the pool limits and timeouts from ``settings``."""
    server_settings = {"application_name": application_name}
    if settings.db_statement_timeout_ms:
        server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,
        connect_args={
            "timeout": settings.db_connect_timeout,
            "server_settings": server_settings,
        },
    )


def make_redis(settings: Settings) -> ArqRedis:
    """One Redis client for cache, rate limits, sessions and the arq queue.

    ``ArqRedis`` is a ``redis.asyncio.Redis`` that can also enqueue jobs. It is built directly
    rather than with ``arq.create_pool`` so that start-up does not wait for Redis: readiness
    reports Redis being down instead. Short timeouts keep a dead server from stalling requests.
    """
    pool = ConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_socket_timeout,
        health_check_interval=30,
    )
    return ArqRedis(connection_pool=pool)


def make_hot_path_redis(settings: Settings) -> Redis:
    """A second Redis client for the cache and rate limits, the per-request hot path.

    It has no socket timeout of its own: with one, redis-py wraps every send in
    ``asyncio.wait_for`` (a task per command). Its callers bound each call with
    ``asyncio.timeout(CACHE_TIMEOUT)`` and a breaker instead (``service.infra.guard``)."""
    pool = ConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        socket_connect_timeout=settings.cache_timeout,
    )
    return Redis(connection_pool=pool)


@dataclass
class Resources:
    """What a process needs to talk to its dependencies; one per ASGI app or worker."""

    settings: Settings
    application_name: str = "newsdesk-api"
    engine: AsyncEngine | None = None
    read_engine: AsyncEngine | None = None
    redis: ArqRedis | None = None
    cache: ResponseCache | None = None
    # The timeout and breaker every per-request Redis call shares (cache, rate limits, view
    # counts, enqueueing): one failing Redis opens it for all of them.
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
        self.cache = ResponseCache(
            make_hot_path_redis(s), guard=self.guard, enabled=s.cache_enabled
        )

    async def close(self) -> None:
        """Dispose the pools; safe to call twice."""
        if self.cache is not None:
            await self.cache.redis.aclose(close_connection_pool=True)
            self.cache = None
        if self.redis is not None:
            await self.redis.aclose(close_connection_pool=True)
            self.redis = None
        if self.read_engine is not None and self.read_engine is not self.engine:
            await self.read_engine.dispose()
        if self.engine is not None:
            await self.engine.dispose()
        self.engine = self.read_engine = None
        self.sessionmaker = self.read_sessionmaker = None

"""Throwaway PostgreSQL databases and Redis servers for the test session.

Embedded servers (``service.cli.embedded``) by default; ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL``
point the tests at external ones instead. On an external PostgreSQL the session creates its
own database (``newsdesk_test_<random>``) and drops it at the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from service.cli.embedded import EmbeddedPostgres, EmbeddedRedis
from service.core.settings import normalise_database_url

ROOT = Path(__file__).resolve().parents[2]


def plain_url(url: str) -> str:
    """asyncpg's own URL form (no SQLAlchemy driver suffix)."""
    return normalise_database_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


def with_database(url: str, name: str) -> str:
    base, _, query = plain_url(url).partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return base + ("?" + query if query else "")


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(server_url: str, name: str) -> str:
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def migrate(database_url: str, revision: str = "head") -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", revision],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "DATABASE_URL": database_url},
    )


@dataclass
class ServerStack:
    """Where the session's PostgreSQL and Redis are, and how to tear them down."""

    database_url: str
    redis_url: str
    server_url: str
    database_name: str
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    created: list[str] = field(default_factory=list)

    def new_database(self, prefix: str = "newsdesk_extra") -> str:
        """Another empty database on the same server, dropped at the end of the session."""
        name = f"{prefix}_{secrets.token_hex(4)}"
        url = create_database(self.server_url, name)
        self.created.append(name)
        return url

    def close(self) -> None:
        for name in [*self.created, self.database_name]:
            drop_database(self.server_url, name)
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


def start_stack(tmp: Path) -> ServerStack:
    postgres = redis = None
    server_url = os.environ.get("TEST_DATABASE_URL")
    if not server_url:
        postgres = EmbeddedPostgres(tmp / "postgres", durable=False).start()
        server_url = postgres.url("postgres")
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        redis = EmbeddedRedis(tmp / "redis", durable=False).start()
        redis_url = redis.url()
    name = f"newsdesk_test_{secrets.token_hex(4)}"
    database_url = create_database(server_url, name)
    migrate(database_url)
    return ServerStack(database_url, redis_url, server_url, name, postgres, redis)

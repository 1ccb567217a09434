"""Alembic environment: async (asyncpg), URL from ``service.core.settings``, one migrator at a time.

``alembic upgrade head`` takes a PostgreSQL advisory lock before looking at the schema, so
several replicas starting together run the migrations once: the others wait, then find the
database at head and do nothing.

The lock is transaction-level (``pg_advisory_xact_lock``), taken in the one transaction that
runs every migration and released by its commit or rollback. A session-level lock would break
behind PgBouncer in transaction pooling (``DB_PGBOUNCER``): taken on one server connection,
"released" on another, it would stay held on the first and block the next migration for
good. (A migration that used ``autocommit_block`` would end that transaction and the lock
with it; none does.)
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from service.core.settings import Settings
from service.domain.models import metadata
from service.infra.resources import connect_args

# Any fixed 64-bit number shared by every migrator of this schema ("newsdesk" in ASCII).
MIGRATION_LOCK_ID = 0x6E657773_6465736B

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def database_url() -> str:
    return config.attributes.get("database_url") or Settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _migrate(connection: Connection) -> None:
    # The transaction this begins is Alembic's too (it sees it as an external one): the lock
    # is held until the commit below, the schema is read only once it is held.
    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


async def run_migrations_online() -> None:
    # A migration is a one-off process: one connection, no pool to keep. Its connection
    # arguments are the app's (DB_PGBOUNCER: no named prepared statements, see
    # service.infra.resources.connect_args) but without the app's statement_timeout, which
    # would cut a long migration (an index on a big table) short.
    settings = Settings().model_copy(update={"db_statement_timeout_ms": 0})
    engine = create_async_engine(
        database_url(),
        poolclass=pool.NullPool,
        connect_args=connect_args(settings, application_name="newsdesk-migrate"),
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_migrate)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())

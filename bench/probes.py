"""What every benchmarked app serves: the same two probes, the same query, the same table.

- ``GET /bench/hello``: a small JSON body, no I/O.
- ``GET /bench/items/<id>``: one primary-key lookup through SQLAlchemy asyncio + asyncpg.
"""

from __future__ import annotations

import os

from sqlalchemy import Column, Integer, MetaData, Table, Text, bindparam, select

metadata = MetaData()
items = Table(
    "bench_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("body", Text, nullable=False),
)
ROWS = 10_000

item_by_id = select(items.c.id, items.c.name).where(items.c.id == bindparam("id"))


def database_url() -> str:
    return os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://", 1)


def pool_size() -> int:
    return int(os.environ.get("DB_POOL_SIZE", "10"))

"""A database of its own holding seeded articles, for tests that need searches to take time."""

from __future__ import annotations

import asyncio

from service.cli.seed import seed_articles
from tests.support.databases import ServerStack, migrate


def seeded_database(stack: ServerStack, count: int) -> str:
    """The URL of a new migrated database with ``count`` seeded articles (dropped with the
    session's other databases)."""
    url = stack.new_database("newsdesk_seeded")
    migrate(url)
    asyncio.run(seed_articles(url, count=count, progress=False))
    return url

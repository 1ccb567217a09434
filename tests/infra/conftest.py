from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from service.core.settings import normalise_database_url
from tests.support.databases import ServerStack
from tests.support.watched_pool import Watched, watched_engine


@pytest.fixture
async def watched(stack: ServerStack) -> AsyncIterator[Watched]:
    """A watched engine on the test database, a pool of two."""
    made = watched_engine(normalise_database_url(stack.database_url), db_pool_size=2)
    yield made
    await made.engine.dispose()

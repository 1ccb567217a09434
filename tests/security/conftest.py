"""Servers for the abuse suite: each test starts the app with the limits it proves, on a
Redis of its own (its counters, sessions and queue hold only what the test did)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from service.cli.embedded import EmbeddedRedis
from tests.conftest import LiveServers
from tests.support.live import LiveServer

StartServer = Callable[..., LiveServer]


@pytest.fixture
def serve(own_redis: EmbeddedRedis, live_server: LiveServers) -> StartServer:
    """``serve(**env)``: a live server on the test's own Redis with ``env`` over the suite's
    defaults; stopped after the test."""

    def start(**env: Any) -> LiveServer:
        return live_server(REDIS_URL=own_redis.url(), **env)

    return start

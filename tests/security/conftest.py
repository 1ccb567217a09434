"""Servers for the abuse suite: each test starts the app with the limits it proves, on a
Redis of its own (its counters, sessions and queue hold only what the test did)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.cli.embedded import EmbeddedRedis
from tests.conftest import server_env
from tests.support.databases import ServerStack
from tests.support.live import LiveServer

StartServer = Callable[..., LiveServer]


@pytest.fixture
def serve(stack: ServerStack, own_redis: EmbeddedRedis, tmp_path: Path) -> Iterator[StartServer]:
    """``serve(**env)``: a live server with ``env`` over the suite's defaults; stopped after
    the test."""
    started: list[LiveServer] = []

    def start(**env: str) -> LiveServer:
        log = tmp_path / f"server-{len(started)}.log"
        settings = server_env(stack, REDIS_URL=own_redis.url(), **env)
        server = LiveServer("service.asgi:app", settings, log).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()

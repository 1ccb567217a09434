"""service.cli.failover: the checks that decide a promotion, against real servers and ports
where nothing listens (the whole failover, a kill and a promotion under load, is
tests/fleet/test_failover.py)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import make_url

from service.cli.embedded import free_port
from service.cli.failover import CHECK_SECONDS, Failover, accepting
from service.cli.replication import PostgresNode, Replication
from tests.support.databases import ServerStack


def _live(stack: ServerStack, tmp_path: Path) -> PostgresNode:
    """A node naming the suite's running server (never started nor stopped here)."""
    return PostgresNode(tmp_path / "live", port=make_url(stack.database_url).port or 5432)


def _pair(tmp_path: Path) -> Replication:
    """A pair that was never started: nothing listens on either port."""
    return Replication(tmp_path / "pair")


def test_a_running_server_accepts_and_a_closed_port_does_not(
    stack: ServerStack, tmp_path: Path
) -> None:
    assert accepting(_live(stack, tmp_path))
    assert not accepting(PostgresNode(tmp_path / "none", port=free_port()))


def test_a_server_that_never_answers_fails_within_the_bound(tmp_path: Path) -> None:
    # A socket that listens but never speaks: what a stopped (SIGSTOP) server looks like.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        node = PostgresNode(tmp_path / "silent", port=silent.getsockname()[1])
        started = time.monotonic()
        assert not accepting(node, timeout=1)
        assert time.monotonic() - started < 30  # bounded, however slow the machine


def test_the_primary_is_down_only_after_consecutive_failed_checks(
    stack: ServerStack, tmp_path: Path
) -> None:
    pair = _pair(tmp_path)
    pair.replica = _live(stack, tmp_path)  # a replica that answers
    controller = Failover(pair, down_after=3, probe_timeout=1)
    assert [controller.check() for _ in range(3)] == [False, False, True]


def test_a_primary_that_answers_again_resets_the_count(stack: ServerStack, tmp_path: Path) -> None:
    pair = _pair(tmp_path)
    controller = Failover(pair, down_after=2, probe_timeout=1)
    assert not controller.check()
    dead_primary = pair.primary
    pair.primary = _live(stack, tmp_path)
    assert not controller.check()
    assert controller.failed_checks == 0
    pair.primary = dead_primary
    assert not controller.check()
    assert controller.failed_checks == 1


def test_no_promotion_while_the_replica_is_down_too(tmp_path: Path) -> None:
    controller = Failover(_pair(tmp_path), down_after=1, probe_timeout=1)
    assert [controller.check() for _ in range(3)] == [False, False, False]
    assert controller.promoted_at is None


def test_the_thread_stops_without_promoting(stack: ServerStack, tmp_path: Path) -> None:
    pair = _pair(tmp_path)
    pair.primary = _live(stack, tmp_path)
    controller = Failover(pair, check_seconds=0.05).start()
    time.sleep(0.3)
    controller.stop()
    assert controller.done
    assert controller.promoted_at is None
    assert controller.error is None


def test_settings_from_the_environment(tmp_path: Path) -> None:
    pair = _pair(tmp_path)
    controller = Failover.from_env(
        pair, {"FAILOVER_CHECK_SECONDS": "0.2", "FAILOVER_DOWN_AFTER": "5"}
    )
    assert (controller.check_seconds, controller.down_after) == (0.2, 5)
    assert Failover.from_env(pair, {}).check_seconds == CHECK_SECONDS
    with pytest.raises(ValueError):
        Failover(pair, down_after=0)

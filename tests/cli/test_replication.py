"""PostgreSQL primary and streaming replica (``service.cli.replication``) on their own:
synchronous or not as asked, the app's multi-host URLs, and a promoted replica taking writes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.cli.replication import DATABASE, PostgresNode, Replication

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def work() -> Iterator[Path]:
    # Outside pytest's base temporary directory, as tests/cli/test_cluster.py explains.
    path = Path(tempfile.mkdtemp(prefix="newsdesk-replication-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _until(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds}s"
        time.sleep(0.1)


def _count(node: PostgresNode) -> str:
    """The probe's rows on ``node``; empty while the table has not reached it yet."""
    try:
        return node.psql("SELECT count(*) FROM probe", DATABASE)
    except subprocess.CalledProcessError:
        return ""


def test_asynchronous_replica_streams_and_a_promoted_one_takes_writes(work: Path) -> None:
    pair = Replication(work, synchronous_commit=False, durable=False).start()
    try:
        _until(pair.streaming)
        assert pair.primary.psql("SELECT sync_state FROM pg_stat_replication") == "async"
        assert pair.primary.psql("SHOW synchronous_standby_names") == ""
        assert "target_session_attrs=read-write" in pair.database_url
        assert "target_session_attrs=prefer-standby" in pair.read_url
        pair.primary.psql("CREATE TABLE probe (n int)", DATABASE)
        pair.primary.psql("INSERT INTO probe VALUES (1)", DATABASE)
        _until(lambda: _count(pair.replica) == "1")  # asynchronous: a moment later
        pair.primary.kill()
        pair.replica.promote()
        assert not pair.replica.in_recovery()
        pair.replica.psql("INSERT INTO probe VALUES (2)", DATABASE)
        assert pair.replica.psql("SELECT count(*) FROM probe", DATABASE) == "2"
    finally:
        pair.stop()

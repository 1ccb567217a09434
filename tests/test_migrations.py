"""alembic/env.py: migrations run under an advisory lock, so concurrent runs do not race."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.support.databases import ROOT, ServerStack, migrate, plain_url

LOCK_ID = 0x6E657773_6465736B


def head() -> str:
    config = Config(str(ROOT / "alembic.ini"))
    found = ScriptDirectory.from_config(config).get_current_head()
    assert found is not None
    return found


def test_the_models_match_the_migrations(stack: ServerStack) -> None:
    """``alembic check``: autogenerate finds nothing the migrations lack."""
    url = stack.new_database("newsdesk_check")
    migrate(url)
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": url},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr


def _upgrade(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_upgrade_waits_for_the_lock_and_concurrent_upgrades_both_succeed(
    stack: ServerStack,
) -> None:
    asyncio.run(_lock_scenario(stack.new_database("newsdesk_migrate")))


async def _lock_scenario(url: str) -> None:
    holder = await asyncpg.connect(plain_url(url))
    await holder.execute("SELECT pg_advisory_lock($1)", LOCK_ID)
    runs = [_upgrade(url), _upgrade(url)]
    try:
        # Both migrators queue on the lock we hold, and neither has touched the schema.
        for _ in range(300):
            waiting = await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            if waiting == 2:
                break
            await asyncio.sleep(0.05)
        assert waiting == 2
        assert await holder.fetchval("SELECT to_regclass('alembic_version')") is None
    finally:
        await holder.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
    outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert await holder.fetch("SELECT version_num FROM alembic_version") == [(head(),)]
    await holder.close()

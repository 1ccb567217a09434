"""The migrations: they match the models; ``alembic/env.py`` runs them under an advisory lock,
so concurrent runs do not race; every downgrade undoes its upgrade, and a rollback on a
populated database keeps what the older schema keeps (deploy/README.md, Procedures)."""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
from alembic.config import Config
from alembic.script import ScriptDirectory
from redis.asyncio import Redis

from service.cli.embedded import EmbeddedRedis
from service.core import keys
from tests.conftest import LiveServers
from tests.support.api import account, login, publish
from tests.support.databases import ROOT, ServerStack, migrate, plain_url
from tests.support.live import LiveServer
from tests.support.view_flush import flush_once

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


# --- rollback: every downgrade undoes its upgrade, and keeps what its schema keeps -----------


def _alembic(url: str, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": url},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def revisions() -> list[str]:
    """Every revision, oldest first."""
    config = Config(str(ROOT / "alembic.ini"))
    return [script.revision for script in ScriptDirectory.from_config(config).walk_revisions()][
        ::-1
    ]


SCHEMA = """
SELECT 'column', table_name || '.' || column_name,
       concat_ws(' ', data_type, is_nullable, column_default, generation_expression)
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass || '.' || conname, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
ORDER BY 1, 2
"""


async def schema(url: str) -> list[tuple[str, str, str]]:
    """The public schema's columns, indexes and constraints, as comparable rows (without
    alembic's own table, which stays at base)."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        rows = [(str(kind), str(name), str(text)) for kind, name, text in await conn.fetch(SCHEMA)]
        return [row for row in rows if not row[1].startswith("alembic_version")]
    finally:
        await conn.close()


def test_every_downgrade_undoes_its_upgrade(stack: ServerStack) -> None:
    """Down one revision at a time from head to base, then up again: at every revision the
    schema is the one the upgrade made, so each ``downgrade()`` is the exact reverse."""
    asyncio.run(_steps(stack.new_database("newsdesk_steps")))


async def _steps(url: str) -> None:
    chain = revisions()
    assert chain[0] == "0001" and chain[-1] == head()
    migrate(url)
    on_the_way_down = {chain[-1]: await schema(url)}
    for revision in reversed(chain[:-1]):
        _alembic(url, "downgrade", "-1")
        on_the_way_down[revision] = await schema(url)
    _alembic(url, "downgrade", "-1")  # to base
    assert await schema(url) == []
    for revision in chain:
        _alembic(url, "upgrade", "+1")
        assert await schema(url) == on_the_way_down[revision], revision


USERS = "SELECT id, email, name, password_hash, created_at FROM users ORDER BY id"
API_KEYS = (
    "SELECT id, user_id, name, prefix, key_hash, created_at, revoked_at FROM api_keys ORDER BY id"
)
ARTICLES = (
    "SELECT id, author_id, title, content, summary, keywords, tags, status, views,"
    " published_at, updated_at, version FROM articles ORDER BY id"
)


async def _rows(conn: asyncpg.Connection, query: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in await conn.fetch(query)]


def test_a_rollback_keeps_the_data_its_schema_keeps(
    stack: ServerStack, live_server: LiveServers, own_redis: EmbeddedRedis
) -> None:
    """On a database the API has written (users, API keys, articles, views; sessions in
    Redis), ``alembic downgrade -1`` then ``upgrade head`` keeps every user, key and article
    as it was. What 0003's downgrade drops by nature is lost, and said so: each article's
    ``processing_error`` (a failed article then shows no error, its status still ``failed``)
    and the applied view batches (``view_batches``: a view batch replayed from before the
    rollback would be counted again). ``downgrade base`` drops everything (0002 made the
    tables). The API works after each way back."""
    asyncio.run(_rollback(stack.new_database("newsdesk_rollback"), live_server, own_redis))


async def _rollback(url: str, live_server: LiveServers, redis_server: EmbeddedRedis) -> None:
    migrate(url)

    def start(log: str) -> LiveServer:
        return live_server(
            DATABASE_URL=url,
            REDIS_URL=redis_server.url(),
            DB_POOL_SIZE="3",
            DB_MAX_OVERFLOW="2",
            log=log,
        )

    conn = await asyncpg.connect(plain_url(url))
    redis = Redis.from_url(redis_server.url())
    try:
        server = start("before.log")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            ann = await account(http, name="Ann")
            ids = [(await publish(http, ann, title=f"Story {n}"))["id"] for n in range(3)]
            for _ in range(2):
                assert (await http.get(f"/api/v1/articles/{ids[0]}")).status_code == 200
            await conn.execute(
                "UPDATE articles SET status = 'failed', processing_error = 'boom' WHERE id = $1",
                ids[1],
            )
            failed = await http.get(f"/api/v1/articles/{ids[1]}")  # now cached, as failed
            assert failed.json()["processing_error"] == "processing failed"
        server.stop()
        assert await flush_once(url, redis_server.url()) == 3  # two reads of one, one of another
        await _down_and_up(url, conn)
        server = start("after.log")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            # Cached before the rollback: served as it was until the cache epoch moves on.
            cached = await http.get(f"/api/v1/articles/{ids[1]}")
            assert cached.json()["processing_error"] == "processing failed"
            await redis.incr(keys.CACHE_EPOCH)
            failed = (await http.get(f"/api/v1/articles/{ids[1]}")).json()
            assert (failed["status"], failed["processing_error"]) == ("failed", None)
            views = (await http.get(f"/api/v1/articles/{ids[0]}/views")).json()
            assert views["views"] == 2
            # Sessions (Redis), API keys and passwords (PostgreSQL) are as they were.
            assert (await http.get("/api/v1/users/me", headers=ann.session)).status_code == 200
            assert await login(http, ann.email)
            await publish(http, ann, title="After the rollback")
        server.stop()

        _alembic(url, "downgrade", "base")
        assert await schema(url) == []  # 0002's downgrade drops users, keys and articles
        _alembic(url, "upgrade", "head")
        server = start("from-base.log")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            assert (await http.get(f"/api/v1/articles/{ids[0]}")).status_code == 404
            # Ids start over, but a session names its user by id and creation time: Ann's
            # token left in Redis does not open Bob's account, who received her id.
            bob = await account(http, name="Bob")
            assert bob.id == ann.id
            stolen = await http.get("/api/v1/users/me", headers=ann.session)
            assert stolen.status_code == 401, stolen.text
            assert (await http.get("/api/v1/users/me", headers=bob.session)).status_code == 200
            # The procedure still ends every session when users are lost (the keys stay
            # otherwise until their TTL).
            for pattern in ("session:*", "user-sessions*"):
                async for key in redis.scan_iter(match=pattern):
                    await redis.delete(key)
            assert (await http.get("/api/v1/users/me", headers=bob.session)).status_code == 401
    finally:
        await redis.aclose()
        await conn.close()


async def _down_and_up(url: str, conn: asyncpg.Connection) -> None:
    """``downgrade -1`` then ``upgrade head``: users, keys and articles as they were; the
    processing errors and the applied view batches gone."""
    tables = (USERS, API_KEYS, ARTICLES)
    kept = [await _rows(conn, query) for query in tables]
    assert await conn.fetchval("SELECT count(*) FROM view_batches") == 1
    _alembic(url, "downgrade", "-1")
    assert [await _rows(conn, query) for query in tables] == kept
    assert await conn.fetchval("SELECT to_regclass('view_batches')") is None
    _alembic(url, "upgrade", "head")
    assert [await _rows(conn, query) for query in tables] == kept
    assert await conn.fetch("SELECT id FROM articles WHERE processing_error IS NOT NULL") == []
    assert await conn.fetchval("SELECT count(*) FROM view_batches") == 0


# --- expand, then contract: the code of release N runs on the schema of release N+1 ---------

# What an upgrade() may do and still leave the previous release's code working: add tables,
# nullable columns (or columns with a server default), indexes, constraints on what it adds.
ADDING = {"create_table", "add_column", "create_index", "f"}
# Revisions allowed to drop, rename or retype: each ships one release after the code stopped
# using what it removes (deploy/README.md, Procedures). None so far.
CONTRACTING: set[str] = set()


def _upgrade_calls(path: Path) -> list[tuple[str, ast.Call]]:
    tree = ast.parse(path.read_text())
    upgrade = next(
        node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "upgrade"
    )
    return [
        (node.func.attr, node)
        for node in ast.walk(upgrade)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "op"
    ]


def test_every_upgrade_only_adds() -> None:
    """Each upgrade() only adds, so rolling back the image needs no schema downgrade, and
    migrations run before the new code starts; raw SQL is CREATE only."""
    for path in sorted((ROOT / "alembic" / "versions").glob("*.py")):
        revision = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_revision(
            path.name.split("_")[1]
        )
        assert revision is not None and revision.path == str(path), path
        if revision.revision in CONTRACTING:
            continue
        for name, call in _upgrade_calls(path):
            if name == "execute":
                sql = call.args[0]
                assert isinstance(sql, ast.Constant) and str(sql.value).startswith("CREATE "), path
            elif name == "add_column":
                column = ast.unparse(call.args[1])
                assert "nullable=False" not in column or "server_default" in column, column
            else:
                assert name in ADDING, f"{path.name}: op.{name} in upgrade()"

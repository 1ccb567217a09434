"""service.infra.schema: the database's migrations against the code's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from service.core.settings import Settings, normalise_database_url
from service.infra import schema
from service.infra.reads import Reads
from service.infra.resources import make_engine
from service.infra.schema import CodeSchema, SchemaCheck, check_schema, code_schema
from tests.support.databases import ROOT, ServerStack, migrate, plain_url

SCRIPTS = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini")))
HEAD = SCRIPTS.get_current_head()


def test_the_state_of_a_revision() -> None:
    code = CodeSchema("0003", frozenset({"0001", "0002", "0003"}))
    assert code.state_of("0003") == "current"
    assert code.state_of("0002") == "behind"
    assert code.state_of(None) == "behind"  # never migrated
    assert code.state_of("0004") == "ahead"  # a later release's migration


def test_the_code_schema_is_the_projects_migrations() -> None:
    found = code_schema()
    assert found is not None
    assert found.head == HEAD
    assert found.known == {script.revision for script in SCRIPTS.walk_revisions()}


def test_alembic_ini_is_found_where_alembic_looks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # not the checkout: found beside the source tree
    assert schema._alembic_ini() == ROOT / "alembic.ini"
    named = tmp_path / "elsewhere.ini"
    named.write_text("[alembic]\n")
    monkeypatch.setenv("ALEMBIC_CONFIG", str(named))
    assert schema._alembic_ini() == named


@pytest.fixture
async def reads_on() -> AsyncIterator[Callable[[str], Reads]]:
    engines = []

    def reads(url: str) -> Reads:
        settings = Settings(_env_file=None, database_url=normalise_database_url(url))
        engine = make_engine(settings.database_url, settings, application_name="test-schema")
        engines.append(engine)
        return Reads(engine)

    yield reads
    for engine in engines:
        await engine.dispose()


async def test_a_migrated_database_is_current(
    stack: ServerStack, reads_on: Callable[[str], Reads]
) -> None:
    assert await check_schema(reads_on(stack.database_url)) == SchemaCheck("current", HEAD, HEAD)


@pytest.fixture
def empty_database(stack: ServerStack) -> str:
    return stack.new_database("newsdesk_schema_empty")


@pytest.fixture
def old_database(stack: ServerStack) -> str:
    url = stack.new_database("newsdesk_schema_old")
    migrate(url, "0002")
    return url


async def test_a_database_never_migrated_is_behind(
    empty_database: str, reads_on: Callable[[str], Reads]
) -> None:
    found = await check_schema(reads_on(empty_database))
    assert found == SchemaCheck("behind", None, HEAD)
    assert found.describe() == (
        f"database schema behind the code (at no revision, needs {HEAD}: run the migrations)"
    )


async def test_a_database_at_an_earlier_revision_is_behind_and_a_later_one_ahead(
    old_database: str, reads_on: Callable[[str], Reads]
) -> None:
    reads = reads_on(old_database)
    assert await check_schema(reads) == SchemaCheck("behind", "0002", HEAD)
    connection = await asyncpg.connect(plain_url(old_database))
    try:  # a later release's migration ran (expand: the old code still works on it)
        await connection.execute("UPDATE alembic_version SET version_num = 'f00d_later'")
    finally:
        await connection.close()
    assert await check_schema(reads) == SchemaCheck("ahead", "f00d_later", HEAD)

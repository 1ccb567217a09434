"""Is the database's schema the one this code was written for?

Code deployed before its migration (a new image whose migration Job has not run, or failed)
would otherwise pass every readiness check and then answer its first request that touches a
new column with an error. Alembic records the database's revision in ``alembic_version``; the
code knows its own migrations (``alembic/versions``). Compared, the database is:

- ``current``: at the code's head;
- ``ahead``: at a revision the code does not know, a later release's migration. Migrations
  only add (tests/test_migrations.py), so the code it was written before still works on it:
  the old instances of a rolling deploy keep serving after the new release's migration ran;
- ``behind``: at one of the code's earlier revisions, or never migrated. The instance is not
  ready (``/readyz`` 503, condition ``schema``) until the migration has run, so a load
  balancer or a rolling deploy never sends it traffic, and the old release keeps serving.

Where the code's migrations cannot be found (a package installed without its ``alembic/``
folder) the state is ``unknown`` and nothing is refused.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.infra.db_errors import sqlstate
from service.infra.reads import Reads

log = logging.getLogger(__name__)

SchemaState = Literal["current", "ahead", "behind", "unknown"]

_REVISION = text("SELECT version_num FROM alembic_version")
# PostgreSQL's "undefined_table": the database was never migrated.
UNDEFINED_TABLE = "42P01"


@dataclass(frozen=True)
class CodeSchema:
    """The code's migrations: the head it needs, and every revision it knows."""

    head: str
    known: frozenset[str]

    def state_of(self, revision: str | None) -> SchemaState:
        """The database's state, at ``revision`` (None: never migrated)."""
        if revision == self.head:
            return "current"
        if revision is None or revision in self.known:
            return "behind"
        return "ahead"


def _alembic_ini() -> Path | None:
    """``ALEMBIC_CONFIG`` (Alembic's own variable), else ``alembic.ini`` in the working
    directory (the image's /app), else beside the source tree (a checkout)."""
    named = os.environ.get("ALEMBIC_CONFIG")
    candidates = [Path(named)] if named else []
    candidates += [Path("alembic.ini"), Path(__file__).resolve().parents[2] / "alembic.ini"]
    return next((path for path in candidates if path.is_file()), None)


@functools.cache
def code_schema() -> CodeSchema | None:
    """The code's migrations, read once per process; None when they cannot be found."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    ini = _alembic_ini()
    if ini is None:
        log.warning("schema check off: no alembic.ini (set ALEMBIC_CONFIG to its path)")
        return None
    scripts = ScriptDirectory.from_config(Config(str(ini)))
    heads = scripts.get_heads()
    if len(heads) != 1:
        log.warning("schema check off: the migrations have %d heads", len(heads))
        return None
    return CodeSchema(heads[0], frozenset(rev.revision for rev in scripts.walk_revisions()))


async def database_revision(reads: Reads) -> str | None:
    """The revision ``alembic_version`` records; None when it has none or does not exist."""
    try:
        rows = await reads.execute(_REVISION)
    except DBAPIError as exc:
        if sqlstate(exc) == UNDEFINED_TABLE:
            return None
        raise
    revision = rows.scalar_one_or_none()
    return None if revision is None else str(revision)


@dataclass(frozen=True)
class SchemaCheck:
    """One comparison, as ``/readyz`` reports it."""

    state: SchemaState
    database: str | None = None
    code: str | None = None

    def describe(self) -> str:
        return (
            f"database schema behind the code (at {self.database or 'no revision'}, "
            f"needs {self.code}: run the migrations)"
        )


async def check_schema(reads: Reads) -> SchemaCheck:
    """The database's revision against the code's; raises what the read raises (an
    unreachable database is reported by the dependency checks, not here)."""
    code = await asyncio.to_thread(code_schema)
    if code is None:
        return SchemaCheck("unknown")
    revision = await database_revision(reads)
    return SchemaCheck(code.state_of(revision), revision, code.head)

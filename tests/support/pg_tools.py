"""PostgreSQL's client tools (pg_dump, pg_restore) for a given server, as an operator would
pick them: pg_dump must be at least as new as the server it dumps (it refuses a newer server),
and a pg_restore reads the archives of its own and older pg_dumps.

The tools bundled with the ``pgserver`` package come first (``EmbeddedPostgres.bin_dir``,
PostgreSQL 16); for a newer external server (``TEST_DATABASE_URL``) the ones on ``PATH``
are used when they are new enough."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import asyncpg

from service.cli.embedded import EmbeddedPostgres
from tests.support.databases import plain_url


def tool_major(path: Path | str) -> int:
    """The major version of a client tool, from ``--version`` ("pg_dump (PostgreSQL) 16.2")."""
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"\) (\d+)", out.stdout)
    assert found, out.stdout
    return int(found.group(1))


async def server_major(url: str) -> int:
    """The major version of the server at ``url``."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        return int(await conn.fetchval("SHOW server_version_num")) // 10000
    finally:
        await conn.close()


def client_tool(name: str, major: int) -> Path:
    """``name`` (pg_dump, pg_restore) of version ``major`` or newer: the bundled one, else the
    one on ``PATH``; AssertionError when neither is new enough."""
    candidates = [EmbeddedPostgres(Path("/nonexistent")).bin_dir / name]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.exists() and tool_major(path) >= major:
            return path
    raise AssertionError(f"no {name} of PostgreSQL {major} or newer in {candidates}")


# A column option some PostgreSQL builds set on every column, which a stock server refuses
# ("unrecognized parameter"), so a dump of such a server cannot be restored into a stock one
# as it is: the statements setting it are left out (they carry no data).
FOREIGN_COLUMN_OPTION = re.compile(
    r"^ALTER TABLE ONLY \S+ ALTER COLUMN \S+ SET \(pg_attver=\d+\);$"
)


async def sets_foreign_column_options(url: str) -> bool:
    """True when the server at ``url`` keeps the column option ``pg_attver``."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        return bool(
            await conn.fetchval(
                "SELECT exists(SELECT FROM pg_attribute"
                " WHERE array_to_string(attoptions, ',') LIKE '%pg_attver=%')"
            )
        )
    finally:
        await conn.close()


def run(*command: str | Path, stdin: str | None = None) -> str:
    """Run a client tool; its output, or AssertionError with everything it said."""
    result = subprocess.run(
        [str(part) for part in command], input=stdin, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def restore(dump: Path, url: str, *, major: int, foreign_options: bool = False) -> None:
    """``pg_restore`` the custom-format ``dump`` into the empty database at ``url``, as the
    Procedures say (no owners, no grants, stop at the first error); with
    ``foreign_options``, through psql without the ``FOREIGN_COLUMN_OPTION`` statements."""
    pg_restore = client_tool("pg_restore", major)
    options = ("--no-owner", "--no-privileges", "--exit-on-error")
    if not foreign_options:
        run(pg_restore, *options, f"--dbname={url}", dump)
        return
    script = run(pg_restore, *options, "--file=-", dump)
    kept = [line for line in script.splitlines() if not FOREIGN_COLUMN_OPTION.match(line)]
    psql = pg_restore.parent / "psql"
    run(
        psql,
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        f"--dbname={url}",
        stdin="\n".join(kept) + "\n",
    )

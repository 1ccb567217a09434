"""Article processing: an extractive summary and keywords, written only for the version read.

Create and update (of title or content) leave an article ``pending`` in the same transaction
and, after the commit, enqueue ``process_article(id, version)`` under the job id
``process:<id>:<version>``, so duplicates collapse. If Redis cannot take the job, the write
still succeeds: ``sweep_pending`` (a cron job) enqueues every article pending for longer
than ``PROCESS_STALE_SECONDS``.

The job reads the article, computes off the event loop (``analyser`` is CPU work, normally
``service.domain.text_analysis.analyse``, run by ``offload``: a thread by default, the bulk
worker's process pool in production, ``service.jobs.cpu_pool``), and writes summary,
keywords and ``processed`` only ``WHERE version = <the version read> AND status =
'pending'``: a job for an old version, or a job run twice, changes nothing. A failure is
retried with a growing delay; after the last try the article becomes ``failed`` with the
reason in ``processing_error`` and the log, for the operators: the public article says only
that processing failed (``service.domain.schemas.PROCESSING_FAILED``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from service.core.types import ArticleStatus
from service.domain.models import Article
from service.infra import db_cleanup, db_errors

if TYPE_CHECKING:  # the analyser (YAKE) is loaded by the worker only
    from service.domain.text_analysis import Analysis

log = logging.getLogger(__name__)

PENDING = ArticleStatus.PENDING


@dataclass(frozen=True)
class Pending:
    title: str
    content: str


# The job's two statements, built once (building a statement costs more loop time than
# PostgreSQL takes to run it): the version and status in ``WHERE`` make each safe alone.
_THIS_VERSION = (
    Article.id == bindparam("article_id"),
    Article.version == bindparam("article_version"),
    Article.status == PENDING,
)
_READ = select(Article.title, Article.content).where(*_THIS_VERSION)
_PROCESSED = (
    update(Article)
    .where(*_THIS_VERSION)
    .values(
        summary=bindparam("new_summary"),
        keywords=bindparam("new_keywords"),
        status=ArticleStatus.PROCESSED,
        processing_error=None,
    )
)
_FAILED = (
    update(Article)
    .where(*_THIS_VERSION)
    .values(status=ArticleStatus.FAILED, processing_error=bindparam("new_error"))
)


async def pending_version(conn: AsyncConnection, article_id: int, version: int) -> Pending | None:
    """The text of ``article_id`` if it is still pending at ``version``; None otherwise."""
    found = await conn.execute(_READ, {"article_id": article_id, "article_version": version})
    row = found.first()
    return Pending(row.title, row.content) if row is not None else None


async def finish(
    conn: AsyncConnection,
    article_id: int,
    version: int,
    *,
    analysis: Analysis | None = None,
    error: str | None = None,
) -> bool:
    """Record the outcome for ``version``; False when the article moved on. One statement:
    on an autocommit connection (``process``) it is its own transaction."""
    this = {"article_id": article_id, "article_version": version}
    if analysis is not None:
        outcome = {"new_summary": analysis.summary, "new_keywords": analysis.keywords}
        result = await conn.execute(_PROCESSED, {**this, **outcome})
    else:
        reason = (error or "unknown error")[:500]
        result = await conn.execute(_FAILED, {**this, "new_error": reason})
    return bool(result.rowcount)


@functools.lru_cache(maxsize=16)
def _autocommit(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` (its pool) handing out connections in autocommit mode."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def retry_delay(attempt: int) -> int:
    """Seconds before try ``attempt + 1``: 2, 4, 8 ... at most 60."""
    return int(min(2**attempt, 60))


# How the CPU step is run: ``offload(analyser, title, content)``; ``asyncio.to_thread`` fits.
Offload = Callable[..., Awaitable["Analysis"]]


class RetryLater(Exception):
    """Processing failed on try ``attempt``; run it again after ``delay`` seconds."""

    def __init__(self, delay: int, reason: str) -> None:
        super().__init__(reason)
        self.delay = delay


async def process(
    engine: AsyncEngine,
    article_id: int,
    version: int,
    *,
    attempt: int,
    max_tries: int,
    analyser: Callable[[str, str], Analysis],
    offload: Offload | None = None,
) -> str:
    """One try at processing ``article_id`` at ``version``; the outcome in a word.

    ``processed`` (written), ``skipped`` (not pending at that version: newer, done or gone),
    ``failed`` (the last try failed; recorded). Earlier failures raise ``RetryLater``. A last
    try that failed because of the database, not the article (unreachable, or lacking a column
    this code uses), records nothing and raises: the article stays pending for the sweeper.

    The read and the write are single statements on autocommit connections: no BEGIN,
    COMMIT or ROLLBACK around them (a round trip each), and no ORM session; the write's
    ``WHERE`` makes it safe on its own. A bulk worker runs this some hundred times a second,
    and each round trip is event-loop time taken from the next job."""
    autocommit = _autocommit(engine)
    try:
        async with db_cleanup.connection_scope(autocommit) as conn:
            text = await pending_version(conn, article_id, version)
        if text is None:
            return "skipped"
        analysis = await (offload or asyncio.to_thread)(analyser, text.title, text.content)
        async with db_cleanup.connection_scope(autocommit) as conn:
            written = await finish(conn, article_id, version, analysis=analysis)
        return "processed" if written else "skipped"
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if attempt < max_tries:
            log.warning("processing article %s failed (try %d): %s", article_id, attempt, reason)
            raise RetryLater(retry_delay(attempt), reason) from exc
        if db_errors.unreachable(exc) or db_errors.schema_missing(exc):
            # Not the article's fault: the database was away, or is behind this code's
            # migrations (a worker deployed before its migration ran). The article stays
            # pending, and the sweeper queues it again once the database can take it.
            log.error(
                "processing article %s failed after %d tries, left pending: %s",
                article_id,
                attempt,
                reason,
            )
            raise
        log.error(
            "processing article %s failed for good after %d tries: %s", article_id, attempt, reason
        )
        async with db_cleanup.connection_scope(autocommit) as conn:
            await finish(conn, article_id, version, error=reason)
        return "failed"


async def stale_pending(
    session: AsyncSession, older_than_seconds: int, *, after_id: int = 0, limit: int = 1000
) -> list[tuple[int, int]]:
    """``(id, version)`` of up to ``limit`` articles pending for longer than
    ``older_than_seconds``, by id, from the first id past ``after_id``: pass the last id of
    one page to read the next (keyset pagination)."""
    rows = await session.execute(
        select(Article.id, Article.version)
        .where(
            Article.status == PENDING,
            Article.updated_at < func.now() - timedelta(seconds=older_than_seconds),
            Article.id > after_id,
        )
        .order_by(Article.id)
        .limit(limit)
    )
    return [(row.id, row.version) for row in rows]

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
reason in ``processing_error``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.core.types import ArticleStatus
from service.domain.models import Article

if TYPE_CHECKING:  # the analyser (YAKE) is loaded by the worker only
    from service.domain.text_analysis import Analysis

log = logging.getLogger(__name__)

PENDING = ArticleStatus.PENDING


@dataclass(frozen=True)
class Pending:
    title: str
    content: str


async def pending_version(session: AsyncSession, article_id: int, version: int) -> Pending | None:
    """The text of ``article_id`` if it is still pending at ``version``; None otherwise."""
    row = (
        await session.execute(
            select(Article.title, Article.content).where(
                Article.id == article_id,
                Article.version == version,
                Article.status == PENDING,
            )
        )
    ).first()
    return Pending(row.title, row.content) if row is not None else None


async def finish(
    session: AsyncSession,
    article_id: int,
    version: int,
    *,
    analysis: Analysis | None = None,
    error: str | None = None,
) -> bool:
    """Record the outcome for ``version`` (committed); False when the article moved on."""
    values: dict[str, object]
    if analysis is not None:
        values = {
            "summary": analysis.summary,
            "keywords": analysis.keywords,
            "status": ArticleStatus.PROCESSED,
            "processing_error": None,
        }
    else:
        values = {
            "status": ArticleStatus.FAILED,
            "processing_error": (error or "unknown error")[:500],
        }
    result = await session.execute(
        update(Article)
        .where(
            Article.id == article_id,
            Article.version == version,
            Article.status == PENDING,
        )
        .values(**values)
    )
    await session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


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
    sessionmaker: async_sessionmaker[AsyncSession],
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
    ``failed`` (the last try failed; recorded). Earlier failures raise ``RetryLater``."""
    try:
        async with sessionmaker() as session:
            text = await pending_version(session, article_id, version)
        if text is None:
            return "skipped"
        analysis = await (offload or asyncio.to_thread)(analyser, text.title, text.content)
        async with sessionmaker() as session:
            written = await finish(session, article_id, version, analysis=analysis)
        return "processed" if written else "skipped"
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if attempt < max_tries:
            log.warning("processing article %s failed (try %d): %s", article_id, attempt, reason)
            raise RetryLater(retry_delay(attempt), reason) from exc
        log.error(
            "processing article %s failed for good after %d tries: %s", article_id, attempt, reason
        )
        async with sessionmaker() as session:
            await finish(session, article_id, version, error=reason)
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

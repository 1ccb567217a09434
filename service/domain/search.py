"""Title search (``q``) and what bounds its cost.

A search is a PostgreSQL full-text query on ``articles.title_search`` (GIN): every word of
``q`` is a prefix (``flask:* & scal:*``) that titles must contain, in any case. A prefix's
cost grows with the words it matches: ``c:*`` matches most titles (at 1,000,000 articles
its bitmap covers about 600,000 rows, which the page then reads and sorts), and ten of them
were allowed. Three bounds, each set by ``Settings``:

- every word is at least ``SEARCH_MIN_PREFIX`` characters long, and there are at most
  ``SEARCH_MAX_TERMS`` words (repeats counted once): ``search_query`` refuses anything else
  with 422 ``validation_error``, naming the rule in ``details``, before any query runs;
- the search's statements (the page, the capped count, the ``EXPLAIN`` of the estimate) run
  under ``bounded``: inside a savepoint whose ``SET LOCAL statement_timeout`` is
  ``SEARCH_TIMEOUT_MS``. A statement cut there is ``SearchTooBroad`` (422
  ``search_too_broad``); the savepoint is rolled back in any case (the search only reads), so
  the timeout ends with it and the request's transaction stays usable. The same savepoint
  plans each search statement for its own words (``plan_cache_mode = force_custom_plan``):
  every search is one prepared statement, which PostgreSQL may switch to a generic plan
  after five runs, and a generic plan cannot know how many titles a prefix matches, so it
  reads every match and sorts them (measured at 1,000,000 articles, a 2-letter prefix's
  deepest page: 2 s generic, 70 ms planned for its words, walking the newest-first index and
  stopping at the page);
- ``RATE_LIMIT_SEARCH`` per client, counted by the web layer (``service.web.api.articles``).

Words are split the way PostgreSQL's parser can only agree with: runs of letters and decimal
digits. Anything else separates words, so that no word this module measured can reach
PostgreSQL as a shorter one (``a_b`` would be ``a`` and ``b`` there, ``a²`` just ``a``). What
the rules cannot see (a two-letter prefix of a very common word) the timeout bounds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from service.core.errors import InvalidInput
from service.infra import db_errors, metrics


class SearchTooBroad(InvalidInput):
    """A search statement ran past ``SEARCH_TIMEOUT_MS`` and PostgreSQL cancelled it.

    422, not 503 with ``Retry-After``: what made the search slow is the search itself (its
    prefixes match too many titles, or its page lies deep among them), so the same request
    would cost the database the same time again and be cut again. A 503 tells clients and
    their retry policies to repeat exactly that, which multiplies the cost the bound exists
    to cap; a 422 tells them to change the request (longer or more words, ``author_id`` or
    ``tag``), as ``page_too_deep`` does for offsets. Under an overloaded database a search
    that is usually quick can be cut too; the answer then still says what makes a search
    cheaper, which is the useful thing to do at that moment."""

    code = "search_too_broad"

    def __init__(self, timeout_ms: int) -> None:
        super().__init__(
            f"The search took longer than {timeout_ms} ms and was stopped: its words match "
            "too many titles. Search with longer or more words, or add author_id or tag.",
            details=[
                {
                    "loc": ["query", "q"],
                    "message": f"stopped after {timeout_ms} ms",
                    "type": "search_timeout",
                }
            ],
        )


def word_character(character: str) -> bool:
    """Whether ``character`` belongs to a word: a letter or a decimal digit."""
    return character.isalpha() or character.isdecimal()


def search_words(q: str) -> list[str]:
    """The words of ``q``, lower-cased, each once, in order: runs of letters and decimal
    digits (see the module docstring); a letter that lower-cases into something else (``İ``
    into ``i`` and a combining dot) keeps only its letters."""
    words: list[str] = []
    run: list[str] = []
    for character in [*q, " "]:
        if word_character(character):
            run.append(character)
            continue
        if run:
            word = "".join(c for c in "".join(run).lower() if word_character(c))
            if word and word not in words:
                words.append(word)
            run = []
    return words


def search_query(q: str, *, min_prefix: int = 1, max_terms: int | None = None) -> str:
    """``"Flask scal"`` -> ``"flask:* & scal:*"``: every word, as a prefix, any case.

    ``InvalidInput`` (422) when ``q`` has no word, a word shorter than ``min_prefix``
    characters or more than ``max_terms`` words (both rules reported at once, one
    ``details`` entry each). The web layer passes ``SEARCH_MIN_PREFIX`` and
    ``SEARCH_MAX_TERMS``; statements built later from the same ``q`` need no rules again."""
    words = search_words(q)
    if not words:
        raise InvalidInput.at(
            ["query", "q"], "q must contain at least one word.", why="no word to search for"
        )
    problems: list[dict[str, object]] = []
    reasons: list[str] = []
    short = [word for word in words if len(word) < min_prefix]
    if short:
        listed = ", ".join(repr(word) for word in short)
        problems.append(
            {
                "loc": ["query", "q"],
                "message": f"shorter than {min_prefix} characters: {listed}",
                "type": "search_word_too_short",
            }
        )
        fewer = "has fewer" if len(short) == 1 else "have fewer"
        reasons.append(f"each word needs at least {min_prefix} characters ({listed} {fewer})")
    if max_terms is not None and len(words) > max_terms:
        problems.append(
            {
                "loc": ["query", "q"],
                "message": f"{len(words)} words; at most {max_terms}",
                "type": "search_too_many_words",
            }
        )
        reasons.append(f"at most {max_terms} different words ({len(words)} given)")
    if problems:
        raise InvalidInput(f"The search is too broad: {'; '.join(reasons)}.", details=problems)
    return " & ".join(f"{word}:*" for word in words)


@asynccontextmanager
async def bounded(session: AsyncSession, timeout_ms: int) -> AsyncIterator[None]:
    """Run the body's statements with ``statement_timeout = timeout_ms`` (each statement on
    its own), each planned for its own parameters; a statement cancelled by the timeout raises
    ``SearchTooBroad``.

    Both are set with ``set_config(..., is_local => true)`` (``SET LOCAL``) inside a
    savepoint that is always rolled back: the body only reads, and rolling back ends the
    settings and the aborted state a cancelled statement leaves, so later statements of the
    transaction run as before, under the connection's own timeout (``DB_STATEMENT_TIMEOUT_MS``,
    whose expiry outside this block is not turned into ``SearchTooBroad``). ``SET LOCAL``
    lasts no longer than the transaction, which PgBouncer's transaction pooling allows."""
    savepoint = await session.begin_nested()
    finished = False
    try:
        await session.execute(
            select(
                func.set_config("statement_timeout", str(timeout_ms), True),
                func.set_config("plan_cache_mode", "force_custom_plan", True),
            )
        )
        yield
        finished = True
    except DBAPIError as exc:
        if not db_errors.query_canceled(exc):
            raise
        metrics.SEARCHES_CUT.inc()
        raise SearchTooBroad(timeout_ms) from None
    finally:
        if savepoint.is_active:
            if finished:
                await savepoint.rollback()
            else:
                # The body's own error is the answer; a connection that cannot even roll back
                # is discarded by the request's clean-up (``service.infra.db_cleanup``).
                with suppress(Exception):
                    await savepoint.rollback()

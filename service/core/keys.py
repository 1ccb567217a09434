"""Every Redis key and stored format, in one place (as arq keeps its own in ``constants.py``).

Keys are namespaced by their first segment; a new kind of key gets its template here, never
as a string literal where it is used. The Lua scripts that touch keys receive them as
arguments, except ``CACHE_EPOCH`` and ``LOCK_PREFIX``, which ``service.infra.cache`` formats
into its script from these constants.
"""

from __future__ import annotations

import hashlib
import json

# --- response cache (service.infra.cache) ---------------------------------------------------
# Entries are versioned by a cache-wide epoch ({e}) and by generations ({g1}, {g2}...), which
# writers move on after a commit. See the cache module for why this cannot serve stale data.
CACHE_EPOCH = "cache:epoch"
LOCK_PREFIX = "lock:"  # + the entry's key: the one request recomputing it
ARTICLES_GENERATION = "gen:articles"  # every list page and the popular ranking


def article_generation(article_id: int) -> str:
    """The generation of one article's cached representation."""
    return f"gen:article:{article_id}"


def article_entry(article_id: int) -> tuple[list[str], str]:
    """The generations and key template of one article's cache entry."""
    return [article_generation(article_id)], f"cache:{{e}}:article:{article_id}:{{g1}}"


def article_stale(article_id: int) -> str:
    """The last body stored for one article, whatever its generation: served when the
    database is unreachable and the current entry is missing (stale-if-error)."""
    return f"stale:article:{article_id}"


# The popular ranking follows the view counts: every view flush moves it on, as edits do.
POPULAR_GENERATION = "gen:popular"
POPULAR_ENTRY: tuple[list[str], str] = (
    [ARTICLES_GENERATION, POPULAR_GENERATION],
    "cache:{e}:popular:{g1}:{g2}",
)


def list_entry(query_digest: str) -> tuple[list[str], str]:
    """The generations and key template of one list page (``query_digest`` names the query)."""
    return [ARTICLES_GENERATION], f"cache:{{e}}:list:{{g1}}:{query_digest}"


def list_digest(
    *,
    page: int | None,
    per_page: int,
    after: tuple[str, int] | None = None,
    author_id: int | None = None,
    tag: str | None = None,
    terms: str | None = None,
) -> str:
    """The name of a list query in the cache, one per page whatever its spelling: ``page``
    (None with a cursor), ``per_page``, the cursor's position (``after``: ISO time, id), the
    filters, a search by the terms it searches for. Flask's list view and the fast path
    (``service.edge.fastpath``) both name pages with it."""
    canonical = {
        "page": page,
        "per_page": per_page,
        "after": None if after is None else list(after),
        "author_id": author_id,
        "tag": tag,
        "q": terms,
    }
    # "v3": canonical queries; entries named before it are not served.
    digest_of = b"v3:" + json.dumps(canonical, sort_keys=True).encode()
    return hashlib.blake2b(digest_of, digest_size=12).hexdigest()


# The list pages stored under one generation of the lists (the {e} and {g1} of ``list_entry``):
# a sorted set of their keys scored by expiry time (ms), which bounds how many are stored at
# once (CACHE_MAX_LIST_KEYS, ``service.infra.cache.Quota``).
LIST_ENTRIES = "cache:{e}:lists:{g1}"


def pack_entry(etag: str, body: bytes) -> bytes:
    """A cached response as stored: its ETag, a newline, its body."""
    return etag.encode("latin-1") + b"\n" + body


# Stored in place of an entry bigger than CACHE_MAX_ENTRY_BYTES (never a packed entry, which
# holds at least a newline): readers compute the response at once, without waiting on a lock.
UNCACHEABLE = b""


def unpack_entry(stored: bytes) -> tuple[bytes, bytes]:
    """``(raw ETag, body)`` of a stored entry (the ETag as latin-1 bytes, as sent)."""
    raw_etag, _, body = stored.partition(b"\n")
    return raw_etag, body


# --- rate limits (service.domain.rate_limits) --------------------------------------------


def rate_limit(name: str, identity: str, window_index: int) -> str:
    """The counter of one clock-aligned window of limit ``name`` for ``identity``."""
    return f"rl:{name}:{identity}:{window_index}"


# --- login sessions (service.domain.login_sessions) -----------------------------------------


LOGIN_SESSION_PREFIX = "session:"


def login_session(token_hash: str) -> str:
    """Holds the user id of a live session token (by its SHA-256, hex)."""
    return f"{LOGIN_SESSION_PREFIX}{token_hash}"


def user_sessions(user_id: int) -> str:
    """A user's live session hashes, a sorted set scored by creation time (to revoke them all
    at once, and to end the oldest past MAX_SESSIONS_PER_USER)."""
    return f"user-sessions-by-age:{user_id}"


def legacy_user_sessions(user_id: int) -> str:
    """The unordered set of session hashes that releases before the sorted set wrote; read
    only to revoke them, and gone within SESSION_TTL_SECONDS of an upgrade."""
    return f"user-sessions:{user_id}"


# --- view counts (service.domain.view_counts) ----------------------------------------------
VIEWS_PENDING = "views:pending"  # hash: article id -> views not yet in PostgreSQL
VIEWS_FLUSHING = "views:flushing"  # the batch being flushed
VIEWS_FLUSHING_ID = "views:flushing:id"  # its batch id
VIEWS_FLUSHED_AT = "views:flushed-at"  # Unix time of the last successful flush (view-flush lag)
# The primary's WAL position (bytes since 0/0) after the last flush's commits: a replica that
# has replayed less answers an article's count from before that flush (view_counts.stored_views).
VIEWS_FLUSHED_LSN = "views:flushed-lsn"


def views_replayed(token: str) -> str:
    """Set once a batch of buffered views (``service.domain.view_buffer``) has been counted."""
    return f"views:replayed:{token}"


# --- jobs (service.infra.queue, service.jobs) -----------------------------------------------
# Three arq queues, each served by workers of its own role (service.jobs.worker), so periodic
# and interactive work never waits behind a backlog of bulk work. The bulk queue keeps arq's
# default name: jobs queued before the queues were split are still found and run there.
QUEUE_INTERACTIVE = "arq:queue:interactive"  # a person is waiting: send_email, ping
QUEUE_BULK = "arq:queue"  # as much as there is: process_article
QUEUE_PERIODIC = "arq:queue:periodic"  # the cron jobs, enqueued by their own workers
# Each queue by its role (WORKER_ROLES, metric labels).
QUEUES: dict[str, str] = {
    "interactive": QUEUE_INTERACTIVE,
    "bulk": QUEUE_BULK,
    "periodic": QUEUE_PERIODIC,
}


def process_job_id(article_id: int, version: int) -> str:
    """The arq job id of ``process_article(article_id, version)``: duplicates collapse."""
    return f"process:{article_id}:{version}"

"""Every Prometheus metric the API processes export, defined once; they import nothing of
Newsdesk, so any module may count into them. How a process feeds its pool, process and GC
figures (the sampler, which reads the runtime's engines) is ``service.infra.sampler``.

**Multiprocess mode.** Hypercorn runs several worker processes per instance, and a scrape
reaches only one of them. With ``PROMETHEUS_MULTIPROC_DIR`` set before prometheus_client is
imported (``python -m service serve`` sets it, and cleans it, before Hypercorn spawns its
workers), every value lives in a per-process memory-mapped file in that directory and
``/metrics`` merges the files of every worker (``service.infra.exposition``). Counters and
histograms of a worker that exited stay in the sum, so totals never go backwards; a gauge says
how its files merge: the pool figures add up over live workers (``livesum``), the breaker is the
worst live worker (``livemax``). Without the variable (a test server, the arq worker) values
live in memory and prometheus_client's default registry serves them.

**Process and GC figures.** prometheus_client's own process and GC collectors describe only
the process that answers the scrape, so in multiprocess mode each worker writes its own every
``METRICS_SAMPLE_SECONDS`` (``service.infra.sampler``) under the same names: CPU seconds and
GC counts are counters (summed over every worker that ever ran), memory and open files are
summed over live workers, the start time is the oldest live worker's. The pool figures come
from the same sampler: a pool's own ``checkedout()`` read every few seconds costs nothing per
request, where pool events would write the files on every checkout and checkin.

The job worker's metrics (``service.jobs.metrics``) are defined apart: an API process must not
export job figures it never sets.
"""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram, values

# A cache hit is answered in about a millisecond; a slow list page takes a second or more.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by method, route template and status (cache hits included).",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from the request reaching the application to the end of its response.",
    ["method", "route", "status"],
    buckets=HTTP_BUCKETS,
)
CACHE_LOOKUPS = Counter(
    "cache_lookups",
    "Response cache lookups by cache endpoint (article, list, popular) and outcome "
    "(hit, miss, bypass: cache off or Redis failing).",
    ["endpoint", "outcome"],
)
RATE_LIMIT_REFUSALS = Counter(
    "rate_limit_refusals",
    "Requests refused with 429, by rate limit name.",
    ["limit"],
)
REDIS_ERRORS = Counter(
    "redis_errors",
    "Per-request Redis calls (cache, rate limits, view counts, enqueueing) that failed, by "
    "error class.",
    ["error"],
)
REDIS_BREAKER_OPENS = Counter(
    "redis_breaker_opens",
    "Times a process's Redis breaker opened (Redis is then skipped for CACHE_BREAKER_SECONDS).",
)
REDIS_BREAKER_OPEN = Gauge(
    "redis_breaker_open",
    "1 from a Redis failure until the next successful Redis call (worst live worker).",
    multiprocess_mode="livemax",
)
SEARCHES_CUT = Counter(
    "searches_cut",
    "Searches (?q=) whose statement ran past SEARCH_TIMEOUT_MS: answered 422 search_too_broad.",
)
DATABASE_UNAVAILABLE = Counter(
    "database_unavailable",
    "Requests answered 503 because PostgreSQL could not be reached.",
)
DEPENDENCY_UP = Gauge(
    "dependency_up",
    "1 when the dependency answered the last readiness check, else 0 (worst live worker). "
    "Reported, never a reason to leave the load balancer.",
    ["dependency"],
    multiprocess_mode="livemin",
)
SCHEMA_BEHIND = Gauge(
    "database_schema_behind",
    "1 while the database's schema is behind this code's migrations, as the last readiness "
    "check found it (the instance is then unready: /readyz 503, condition schema), else 0.",
    multiprocess_mode="livemax",
)
EVENT_LOOP_LAG = Gauge(
    "event_loop_lag_seconds",
    "How late the event loop ran callbacks, worst of the last second (worst live worker).",
    multiprocess_mode="livemax",
)
VIEWS_BUFFERED = Gauge(
    "views_buffered",
    "Article views held in API processes because Redis could not take them (counted later).",
    multiprocess_mode="livesum",
)
VIEWS_DROPPED = Counter(
    "views_dropped",
    "Article views lost because a process's view buffer was full (VIEW_BUFFER_MAX).",
)
REQUEST_BODIES_CUT = Counter(
    "request_bodies_cut",
    "Requests whose body arrived slower than BODY_MIN_RATE once BODY_GRACE_SECONDS had passed: "
    "answered 408 where still possible, their connection closed.",
)
DB_POOL_CHECKED_OUT = Gauge(
    "db_pool_checked_out",
    "Database connections in use, by engine (sum over live workers).",
    ["engine"],
    multiprocess_mode="livesum",
)
DB_POOL_OVERFLOW = Gauge(
    "db_pool_overflow",
    "Connections open beyond DB_POOL_SIZE, by engine (sum over live workers).",
    ["engine"],
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "db_pool_size",
    "DB_POOL_SIZE, by engine (sum over live workers).",
    ["engine"],
    multiprocess_mode="livesum",
)
DB_POOL_MAX_OVERFLOW = Gauge(
    "db_pool_max_overflow",
    "DB_MAX_OVERFLOW, by engine (sum over live workers).",
    ["engine"],
    multiprocess_mode="livesum",
)

# Written by the sampler in multiprocess mode only; never registered, so they cannot clash
# with prometheus_client's own process and GC collectors, which serve the one-process case.
PROCESS_CPU = Counter(
    "process_cpu_seconds", "User and system CPU time of the workers.", registry=None
)
PROCESS_MEMORY = Gauge(
    "process_resident_memory_bytes",
    "Resident memory, summed over live workers.",
    registry=None,
    multiprocess_mode="livesum",
)
PROCESS_OPEN_FDS = Gauge(
    "process_open_fds",
    "Open file descriptors, summed over live workers.",
    registry=None,
    multiprocess_mode="livesum",
)
PROCESS_START = Gauge(
    "process_start_time_seconds",
    "Start time of the oldest live worker, in seconds since the epoch.",
    registry=None,
    multiprocess_mode="livemin",
)
GC_COLLECTIONS = Counter(
    "python_gc_collections", "Collections by generation.", ["generation"], registry=None
)
GC_COLLECTED = Counter(
    "python_gc_objects_collected",
    "Objects collected by generation.",
    ["generation"],
    registry=None,
)
GC_UNCOLLECTABLE = Counter(
    "python_gc_objects_uncollectable",
    "Uncollectable objects found by generation.",
    ["generation"],
    registry=None,
)


def multiprocess() -> bool:
    """Whether this process records into ``PROMETHEUS_MULTIPROC_DIR`` (decided by
    prometheus_client when it was imported)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


@functools.cache
def _cache_lookup_series(endpoint: str, outcome: str) -> Counter:
    return CACHE_LOOKUPS.labels(endpoint, outcome.lower())


def count_cache_lookup(endpoint: str, outcome: str) -> None:
    """One cache lookup of ``endpoint`` with ``outcome`` (``HIT``, ``MISS`` or ``BYPASS``)."""
    _cache_lookup_series(endpoint, outcome).inc()


def count_redis_error(exc: BaseException) -> None:
    REDIS_ERRORS.labels(type(exc).__name__).inc()

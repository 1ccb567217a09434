"""The job worker's metrics, served on a port of its own: ``WORKER_METRICS_PORT`` (9101).

Why a port, not the API's ``PROMETHEUS_MULTIPROC_DIR``: the worker is deployed apart (its own
container or pod), so it shares no filesystem with an API instance, and a directory shared
with one would be emptied whenever that instance starts. A worker is one process, so its
registry is prometheus_client's default one, with the standard process and GC collectors;
the command that starts it (``python -m service worker``) drops ``PROMETHEUS_MULTIPROC_DIR``
from its environment. The port is served by a small Hypercorn server on the worker's own event
loop (``WorkerMetricsServer``), for the life of the process, across the supervisor's restarts
of the arq worker; ``arq worker.WorkerSettings`` run bare serves none.

Besides the worker's pool and Redis figures (``service.infra.metrics``):

* ``job_runs_total`` by ``function``, ``queue`` (the queue of the worker that ran it) and
  ``outcome`` (``completed``, ``retried``, ``failed``, or ``cancelled``: timed out or
  stopped), ``job_duration_seconds`` by ``function`` and ``outcome``;
* ``view_flush_batch_size`` (articles per flushed batch) and ``view_flush_views_total``;
* read from Redis at each scrape, the same from every worker replica (aggregate them with
  ``max``, not ``sum``): ``job_queue_depth`` by ``queue`` (``interactive``, ``bulk``,
  ``periodic``) and ``state`` (``ready``, or ``deferred`` to a later time),
  ``job_queue_oldest_job_age_seconds`` and ``job_queue_running`` by ``queue``,
  ``views_pending_articles`` (articles with views not yet flushed),
  ``view_flush_last_success_timestamp_seconds``, ``view_flush_lag_seconds`` (since the last
  successful flush, by any worker) and ``view_flush_oldest_pending_seconds`` (how old the
  oldest view not yet flushed can be); definitions in ``service.infra.backlog``. A scrape
  while Redis is down omits these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

from hypercorn.asyncio import serve
from hypercorn.config import Config
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from service.core.errors import REDIS_FAILURES
from service.core.settings import Settings
from service.core.types import Message, Receive, Scope, Send
from service.infra.backlog import Backlog, queue_label, read_backlog
from service.infra.resources import close_redis, make_redis

log = logging.getLogger(__name__)

JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

JOB_RUNS = Counter(
    "job_runs", "Job runs by function, queue and outcome.", ["function", "queue", "outcome"]
)
JOB_DURATION = Histogram(
    "job_duration_seconds",
    "Job run time by function and outcome.",
    ["function", "outcome"],
    buckets=JOB_BUCKETS,
)
VIEW_FLUSH_BATCH = Histogram(
    "view_flush_batch_size",
    "Articles in each flushed batch of view counts.",
    buckets=(1, 10, 100, 1_000, 10_000, 100_000),
)
VIEW_FLUSH_VIEWS = Counter("view_flush_views", "Views moved from Redis into PostgreSQL.")


def record_job(function: str, outcome: str, started: float, queue: str | None = None) -> None:
    """One run of ``function`` that began at ``started`` (``time.perf_counter()``) on the
    worker of arq queue ``queue`` (its Redis key)."""
    JOB_RUNS.labels(function, queue_label(queue), outcome).inc()
    JOB_DURATION.labels(function, outcome).observe(time.perf_counter() - started)


def record_flush(articles: int, views: int) -> None:
    VIEW_FLUSH_BATCH.observe(articles)
    VIEW_FLUSH_VIEWS.inc(views)


class QueueCollector(Collector):
    """Yields the figures the scrape read just before rendering (none if Redis failed)."""

    def __init__(self) -> None:
        self.figures: Backlog | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = self.figures
        if figures is None:
            return
        depth = GaugeMetricFamily(
            "job_queue_depth", "Jobs waiting, by queue and state.", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "job_queue_oldest_job_age_seconds",
            "Seconds the oldest job due to run has waited, by queue (0: none due).",
            labels=["queue"],
        )
        running = GaugeMetricFamily(
            "job_queue_running",
            "1 while a worker of the queue keeps its health record (written every 10 s).",
            labels=["queue"],
        )
        for queue in figures.queues:
            depth.add_metric([queue.name, "ready"], queue.ready)
            depth.add_metric([queue.name, "deferred"], queue.deferred)
            oldest.add_metric([queue.name], queue.oldest_job_age_seconds)
            running.add_metric([queue.name], 1.0 if queue.running else 0.0)
        yield depth
        yield oldest
        yield running
        yield GaugeMetricFamily(
            "views_pending_articles",
            "Articles with views counted in Redis and not yet flushed.",
            value=figures.views_pending_articles,
        )
        lag = figures.view_oldest_pending_seconds
        if lag is not None:
            yield GaugeMetricFamily(
                "view_flush_oldest_pending_seconds",
                "How old the oldest view not yet flushed can be (0: none waits).",
                value=lag,
            )
        if figures.view_flushed_at is not None:
            yield GaugeMetricFamily(
                "view_flush_last_success_timestamp_seconds",
                "When a view flush last succeeded (any worker).",
                value=figures.view_flushed_at,
            )
            yield GaugeMetricFamily(
                "view_flush_lag_seconds",
                "Seconds since a view flush last succeeded (any worker).",
                value=max(0.0, figures.read_at - figures.view_flushed_at),
            )


QUEUE = QueueCollector()
REGISTRY.register(QUEUE)


class WorkerMetricsServer:
    """``GET /metrics`` on ``host:port``, served on the running loop from ``start()`` to
    ``close()``. A port already taken is logged, and the worker runs on without metrics."""

    def __init__(self, settings: Settings, *, host: str, port: int) -> None:
        self.settings = settings
        self.config = Config()
        self.config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        self.config.accesslog = None
        self.config.errorlog = log
        self.config.graceful_timeout = 2.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._redis: Redis | None = None

    async def start(self) -> None:
        self._redis = make_redis(self.settings)
        self._task = asyncio.get_running_loop().create_task(
            serve(self, self.config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
        )
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("worker metrics not served on %s: %s", self.config.bind[0], task.exception())

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        if self._redis is not None:
            await close_redis(self._redis)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics" or scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 404, b"Not found: the metrics are at /metrics.\n", "text/plain")
            return
        accept = ",".join(v.decode("latin-1") for k, v in scope["headers"] if k == b"accept")
        body, content_type = await self.scrape(accept)
        await _respond(send, 200, body, content_type, head=scope["method"] == "HEAD")

    async def scrape(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition of this worker, with the queue figures read now."""
        assert self._redis is not None
        redis = self._redis
        try:
            async with asyncio.timeout(self.settings.readiness_timeout):
                QUEUE.figures = await read_backlog(redis)
        except REDIS_FAILURES as exc:
            QUEUE.figures = None
            log.warning("metrics: queue figures not read, Redis unavailable: %s", exc)
        encoder, content_type = choose_encoder(accept)
        return encoder(REGISTRY), content_type


async def _respond(
    send: Send, status: int, body: bytes, content_type: str, *, head: bool = False
) -> None:
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", b"%d" % len(body)),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": b"" if head else body})

"""How a process feeds the metrics of ``service.infra.metrics`` from its started
``Resources``: the pool figures, and in multiprocess mode the process and GC figures, every
``METRICS_SAMPLE_SECONDS`` (see that module's docstring for why they are sampled).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import psutil
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from service.infra.metrics import (
    DB_POOL_CHECKED_OUT,
    DB_POOL_MAX_OVERFLOW,
    DB_POOL_OVERFLOW,
    DB_POOL_SIZE,
    GC_COLLECTED,
    GC_COLLECTIONS,
    GC_UNCOLLECTABLE,
    PROCESS_CPU,
    PROCESS_MEMORY,
    PROCESS_OPEN_FDS,
    PROCESS_START,
    REDIS_ERRORS,
    count_cache_lookup,
    multiprocess,
)
from service.infra.periodic import Background, every
from service.infra.resources import Resources

log = logging.getLogger(__name__)


def instrument(res: Resources) -> None:
    """Feed the metrics from ``res`` (started): its cache counts its lookups here, and the
    error series an outage produces exist at zero from the start, so ``rate()`` sees the
    first failure."""
    if res.cache is not None:
        res.cache.stats.export = count_cache_lookup
    for error in ("ConnectionError", "TimeoutError"):
        REDIS_ERRORS.labels(error)


def _engines(res: Resources) -> Iterator[tuple[str, AsyncEngine]]:
    if res.engine is not None:
        yield "primary", res.engine
    if res.read_engine is not None and res.read_engine is not res.engine:
        yield "read", res.read_engine


class _ProcessFigures:
    """This process's CPU time and GC counts as last recorded: the counters grow by the
    difference at each sample."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.gc: list[dict[str, int]] = []

    def sample(self) -> None:
        process = psutil.Process()
        with process.oneshot():
            times = process.cpu_times()
            memory = process.memory_info().rss
            fds = process.num_fds()
            started = process.create_time()
        cpu = times.user + times.system
        PROCESS_CPU.inc(max(0.0, cpu - self.cpu))
        self.cpu = cpu
        PROCESS_MEMORY.set(memory)
        PROCESS_OPEN_FDS.set(fds)
        PROCESS_START.set(started)
        stats = gc.get_stats()
        if len(self.gc) != len(stats):
            self.gc = [{"collections": 0, "collected": 0, "uncollectable": 0} for _ in stats]
        for generation, (now, before) in enumerate(zip(stats, self.gc, strict=True)):
            label = str(generation)
            GC_COLLECTIONS.labels(label).inc(now["collections"] - before["collections"])
            GC_COLLECTED.labels(label).inc(now["collected"] - before["collected"])
            GC_UNCOLLECTABLE.labels(label).inc(now["uncollectable"] - before["uncollectable"])
            self.gc[generation] = dict(now)


_process = _ProcessFigures()


def sample(res: Resources) -> None:
    """Record this process's pool figures now, and in multiprocess mode its process and GC
    figures (see the module docstring)."""
    for name, engine in _engines(res):
        pool = engine.pool
        if isinstance(pool, QueuePool):
            DB_POOL_CHECKED_OUT.labels(name).set(pool.checkedout())
            DB_POOL_OVERFLOW.labels(name).set(max(0, pool.overflow()))
            DB_POOL_SIZE.labels(name).set(pool.size())
            DB_POOL_MAX_OVERFLOW.labels(name).set(res.settings.db_max_overflow)
    if multiprocess():
        _process.sample()


def sampler(res: Resources, seconds: float) -> Background:
    """Calls ``sample(res)`` every ``seconds`` on the running loop, from ``start()`` (after
    ``res.start()``) until ``stop()`` (before ``res.close()``)."""

    def sample_now() -> None:
        try:
            sample(res)
        except (OSError, psutil.Error) as exc:  # /proc unreadable: try again next time
            log.warning("metrics: figures of this process not sampled: %s", exc)

    return every(seconds, sample_now)

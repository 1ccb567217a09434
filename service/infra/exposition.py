"""The metrics of this instance in the Prometheus text format (or OpenMetrics, on request).

In multiprocess mode (``service.infra.metrics``) a scrape reads the files every Hypercorn
worker of the instance wrote in ``PROMETHEUS_MULTIPROC_DIR`` and merges them
(``MultiProcessCollector``), whichever worker answers. Otherwise it is this process's own
registry, with prometheus_client's process and GC collectors.

Workers that are gone: counters and histograms keep their files (their counts stay in the
totals). A worker's live gauges (pool use, breaker, memory) must leave with it: a worker
removes its own when its lifespan ends (``mark_this_process_dead``), and a scrape removes
those of any process that no longer exists (killed before it could), so a dead worker's
pool never shows as in use.
"""

from __future__ import annotations

import glob
import os
import re

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from service.infra.metrics import multiprocess

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def _directory() -> str | None:
    return os.environ.get(MULTIPROC_DIR_ENV) if multiprocess() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def forget_dead_processes(directory: str) -> list[int]:
    """Remove the live-gauge files of processes that no longer exist; their pids."""
    gone: set[int] = set()
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        match = _LIVE_GAUGE_FILE.fullmatch(os.path.basename(path))
        if match is not None and not _alive(pid := int(match.group(1))):
            gone.add(pid)
    for pid in gone:
        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    return sorted(gone)


def mark_this_process_dead() -> None:
    """At the end of a worker's lifespan: its live gauges leave the sums."""
    directory = _directory()
    if directory:
        mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


def render(accept: str | None) -> tuple[bytes, str]:
    """The exposition (body, content type) for a scraper sending ``accept``.

    Reads every worker's files in multiprocess mode: file I/O and parsing, so callers on the
    event loop run it in a thread."""
    directory = _directory()
    if directory:
        forget_dead_processes(directory)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type

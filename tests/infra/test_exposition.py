"""service.infra.exposition: one scrape sums every Hypercorn worker of an instance.

Two real workers under ``python -m service serve``, sharing a PROMETHEUS_MULTIPROC_DIR that
holds an earlier instance's files at start: the files are gone, requests spread over both
workers add up in any scrape, scrapes never go backwards, and gauges of processes that are gone
leave the sums.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from service.infra.exposition import forget_dead_processes
from tests.conftest import POOL_SIZE, server_env
from tests.support.databases import ServerStack
from tests.support.metrics import Exposition, scrape
from tests.support.serve import ServeProcess

STALE = ("counter_4190001.db", "histogram_4190001.db", "gauge_livesum_4190001.db")


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("multiproc")
    for name in STALE:  # an earlier instance's files: counted if they stayed
        (directory / name).write_bytes(os.urandom(4096))
    return directory


@pytest.fixture(scope="module")
def instance(
    stack: ServerStack, metrics_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    env = server_env(stack, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    server = ServeProcess(env, tmp_path_factory.mktemp("serve") / "serve.log", workers=2)
    server.start()
    yield server
    server.stop()


def requests_by_worker(directory: Path, route: str) -> dict[int, float]:
    """``http_requests_total`` of ``route`` in each worker's own file."""
    found: dict[int, float] = {}
    for path in glob.glob(str(directory / "counter_*.db")):
        pid = int(Path(path).stem.split("_")[1])
        for metric in MultiProcessCollector.merge([path]):  # type: ignore[no-untyped-call]
            for sample in metric.samples:
                if sample.name == "http_requests_total" and sample.labels["route"] == route:
                    found[pid] = found.get(pid, 0) + sample.value
    return found


async def fresh_connections(url: str, count: int) -> None:
    """``count`` concurrent GETs, each on a new connection, so both workers accept some."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        responses = await asyncio.gather(*(http.get(url) for _ in range(count)))
    assert all(response.status_code == 200 for response in responses)


def test_an_earlier_instances_files_are_removed_at_start(
    instance: ServeProcess, metrics_dir: Path
) -> None:
    left = {path.name for path in metrics_dir.iterdir()}
    assert not left & set(STALE)
    assert len(instance.worker_pids()) == 2


async def test_requests_spread_over_both_workers_add_up_in_one_scrape(
    instance: ServeProcess, metrics_dir: Path
) -> None:
    route = "/readyz"
    sent = 0
    per_worker: dict[int, float] = {}
    for _ in range(50):  # until both workers have answered some (bounded)
        await fresh_connections(instance.url + route, 20)
        sent += 20
        per_worker = requests_by_worker(metrics_dir, route)
        if len([n for n in per_worker.values() if n]) == 2:
            break
    assert set(per_worker) == instance.worker_pids(), per_worker
    assert all(0 < n < sent for n in per_worker.values()), per_worker
    metrics = scrape(instance.url + "/metrics")
    assert metrics.total("http_requests_total", route=route) == sent
    assert metrics.total("http_request_duration_seconds_count", route=route) == sent
    assert metrics.total("http_requests_total", route=route, method="GET", status="200") == sent


async def test_consecutive_scrapes_never_go_backwards(instance: ServeProcess) -> None:
    limits = httpx.Limits(max_keepalive_connections=0)  # each scrape may reach either worker
    previous: dict[str, float] = {}
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        for _ in range(20):
            await fresh_connections(instance.url + "/healthz", 5)
            response = await http.get(instance.url + "/metrics")
            assert response.status_code == 200
            metrics = Exposition.parse(response.text)
            now = {
                "requests": metrics.total("http_requests_total"),
                "healthz": metrics.total("http_requests_total", route="/healthz"),
                "cpu": metrics.total("process_cpu_seconds_total"),
                "gc": metrics.total("python_gc_collections_total"),
            }
            for name, value in previous.items():
                assert now[name] >= value, (name, previous, now)
            assert now["healthz"] >= previous.get("healthz", 0) + 5
            previous = now


def test_pool_gauges_sum_over_the_live_workers(instance: ServeProcess) -> None:
    metrics = scrape(instance.url + "/metrics")
    assert metrics.total("db_pool_size", engine="primary") == 2 * POOL_SIZE
    assert metrics.types["db_pool_checked_out"] == "gauge"
    assert metrics.total("process_resident_memory_bytes") > 0
    assert metrics.total("process_open_fds") > 0


def test_a_dead_workers_gauges_leave_the_sums(instance: ServeProcess, metrics_dir: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = finished.pid  # a process that existed and is gone
    live = sorted(glob.glob(str(metrics_dir / "gauge_livesum_*.db")))[0]
    ghost = metrics_dir / f"gauge_livesum_{dead}.db"
    shutil.copy(live, ghost)  # as if a worker had died without its lifespan shutdown

    metrics = scrape(instance.url + "/metrics")
    assert metrics.total("db_pool_size", engine="primary") == 2 * POOL_SIZE
    assert not ghost.exists()


def test_a_worker_that_stops_takes_its_live_gauges_and_leaves_its_counts(
    stack: ServerStack, tmp_path: Path
) -> None:
    directory = tmp_path / "multiproc"
    env = server_env(stack, PROMETHEUS_MULTIPROC_DIR=str(directory))
    server = ServeProcess(env, tmp_path / "serve.log", workers=1).start()
    [pid] = server.worker_pids()
    assert glob.glob(str(directory / f"gauge_live*_{pid}.db"))
    assert server.stop() == 0
    assert not glob.glob(str(directory / f"gauge_live*_{pid}.db")), server.log()
    assert (directory / f"counter_{pid}.db").exists()
    assert (directory / f"histogram_{pid}.db").exists()


def test_after_the_instance_stops_nothing_live_is_left_for_a_scrape(
    instance: ServeProcess, metrics_dir: Path
) -> None:
    """Hypercorn stops the remaining workers with SIGTERM as soon as one has exited, which may
    cut a lifespan shutdown short: the next scrape (or start) removes what such a worker left."""
    pids = instance.worker_pids()
    assert instance.stop() == 0
    forget_dead_processes(str(metrics_dir))
    assert not glob.glob(str(metrics_dir / "gauge_live*.db"))
    for pid in pids:
        assert (metrics_dir / f"counter_{pid}.db").exists()

"""service.edge.metrics_dir: the instance's PROMETHEUS_MULTIPROC_DIR, clean before workers start;
``python -m service serve`` without one makes a private directory and removes it on exit."""

from __future__ import annotations

from pathlib import Path

import httpx

from service.edge import metrics_dir
from tests.conftest import server_env
from tests.support.databases import ServerStack
from tests.support.metrics import scrape
from tests.support.serve import ServeProcess


def test_a_given_directory_keeps_everything_but_metric_files(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_12.db").write_bytes(b"old")
    (directory / "gauge_livesum_12.db").write_bytes(b"old")
    (directory / "README").write_text("an operator's file")
    environ = {metrics_dir.VARIABLE: str(directory)}
    with metrics_dir.prepared(environ) as used:
        assert used == directory
        assert sorted(p.name for p in directory.iterdir()) == ["README"]
    assert environ == {metrics_dir.VARIABLE: str(directory)}
    assert directory.exists()  # not ours to remove


def test_a_given_directory_that_does_not_exist_is_created(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    with metrics_dir.prepared({metrics_dir.VARIABLE: str(directory)}):
        assert directory.is_dir()


def test_without_one_a_private_directory_lives_as_long_as_the_server(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    with metrics_dir.prepared(environ) as used:
        assert environ[metrics_dir.VARIABLE] == str(used)
        assert used.is_dir()
        (used / "counter_1.db").write_bytes(b"x")
    assert metrics_dir.VARIABLE not in environ
    assert not used.exists()


async def test_serve_aggregates_its_workers_in_a_private_directory(
    stack: ServerStack, tmp_path: Path
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    # No PROMETHEUS_MULTIPROC_DIR: serve makes one under TMPDIR for its two workers.
    server = ServeProcess(server_env(stack, TMPDIR=str(scratch)), tmp_path / "serve.log")
    server.start()
    try:
        [private] = list(scratch.glob("newsdesk-metrics-*"))
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=30) as http:
            for _ in range(40):
                assert (await http.get(server.url + "/readyz")).status_code == 200
        metrics = scrape(server.url + "/metrics")
        assert metrics.total("http_requests_total", route="/readyz") == 40
        pids = {int(p.stem.rsplit("_", 1)[1]) for p in private.glob("counter_*.db")}
        assert pids == server.worker_pids()
    finally:
        assert server.stop() == 0
    assert not private.exists(), server.log()

"""service.core.cpus: the default Hypercorn worker count follows the cgroup CPU quota
(real cgroup files written to a temporary directory), and ``python -m service serve`` starts
that many workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from service.cli.embedded import free_port
from service.core.cpus import (
    available_cpus,
    cgroup_cpu_limit,
    default_workers,
    parse_cfs,
    parse_cpu_max,
)
from tests.support.databases import ROOT, ServerStack

SERVE_READY_WITHIN = 60.0  # seconds for `serve` to answer /healthz on a busy machine


def _cgroup_v2(root: Path, cpu_max: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(cpu_max)
    return root


def _cgroup_v1(root: Path, quota: str, period: str, controller: str = "cpu") -> Path:
    (root / controller).mkdir(parents=True, exist_ok=True)
    (root / controller / "cpu.cfs_quota_us").write_text(quota)
    (root / controller / "cpu.cfs_period_us").write_text(period)
    return root


def test_the_file_formats() -> None:
    assert parse_cpu_max("50000 100000\n") == 0.5
    assert parse_cpu_max("max 100000\n") is None
    assert parse_cpu_max("200000\n") == 2.0  # the period defaults to the kernel's 100 ms
    assert parse_cfs("150000\n", "100000\n") == 1.5
    assert parse_cfs("-1\n", "100000\n") is None


@pytest.mark.parametrize(
    ("cpu_max", "cpus", "expected"),
    [
        ("50000 100000", 16, 1),  # half a CPU on a 16-core node: one worker, not 16
        ("150000 100000", 16, 2),  # rounded up
        ("400000 100000", 16, 4),
        ("400000 100000", 2, 2),  # never more than the CPUs this process may use
        ("1000 100000", 8, 1),  # at least one
        ("max 100000", 6, 6),  # no quota: the available CPUs
    ],
)
def test_cgroup_v2_quota(tmp_path: Path, cpu_max: str, cpus: int, expected: int) -> None:
    workers, why = default_workers(_cgroup_v2(tmp_path / "cg", cpu_max), cpus=cpus)
    assert workers == expected, why


@pytest.mark.parametrize("controller", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_quota(tmp_path: Path, controller: str) -> None:
    root = _cgroup_v1(tmp_path / "cg", "250000\n", "100000\n", controller)
    assert cgroup_cpu_limit(root) == 2.5
    assert default_workers(root, cpus=8) == (3, "cgroup CPU quota 2.5 of 8 CPU(s)")
    unlimited = _cgroup_v1(tmp_path / "unlimited", "-1\n", "100000\n", controller)
    assert default_workers(unlimited, cpus=8)[0] == 8


def test_v2_wins_over_v1_and_nothing_readable_means_no_quota(tmp_path: Path) -> None:
    root = _cgroup_v1(_cgroup_v2(tmp_path / "both", "100000 100000"), "400000", "100000")
    assert cgroup_cpu_limit(root) == 1.0
    assert cgroup_cpu_limit(tmp_path / "missing") is None
    assert cgroup_cpu_limit(_cgroup_v2(tmp_path / "garbled", "lots of it")) is None
    assert default_workers(tmp_path / "missing", cpus=3)[0] == 3


def test_without_a_quota_the_available_cpus_count() -> None:
    assert available_cpus() == len(os.sched_getaffinity(0))


def test_serve_starts_the_computed_number_of_workers(stack: ServerStack, tmp_path: Path) -> None:
    expected, why = default_workers()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "WEB_CONCURRENCY"}
    env.update(
        ENV="test",
        DATABASE_URL=stack.database_url,
        REDIS_URL=stack.redis_url,
        BIND=f"127.0.0.1:{port}",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + SERVE_READY_WITHIN
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert f"serving with {expected} Hypercorn worker(s): {why}" in log.read_text()
        children = psutil.Process(proc.pid).children()
        workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == expected, log.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

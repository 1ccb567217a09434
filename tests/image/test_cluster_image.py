"""The cluster run from the built image (``python -m service cluster --image newsdesk:local
--check``, ``make image-test``): the API instances, workers and migration are containers of the
image behind nginx, PostgreSQL primary and replica and Redis under Sentinel; a smoke request
goes through nginx and nothing of it is left running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.cli.embedded import free_port
from tests.support import containers
from tests.support.databases import ROOT

pytestmark = pytest.mark.skipif(
    not containers.available(),
    reason="no Docker daemon with newsdesk:local (make image-test builds it first)",
)


def test_the_cluster_runs_from_the_image_and_leaves_nothing_behind(tmp_path: Path) -> None:
    work = tmp_path / "cluster"
    command = [sys.executable, "-m", "service", "cluster", "--image", containers.IMAGE]
    command += ["--check", "--instances", "2", "--work-dir", str(work), "--port", str(free_port())]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "read back through nginx: ok" in output
    assert f"from the image {containers.IMAGE}" in output
    assert "Running upgrade" in output  # the migration ran, from the image
    names = containers.docker("ps", "--all", "--format", "{{.Names}}").split()
    assert not [name for name in names if name.startswith("newsdesk-cluster-")], names

"""deploy/compose.yaml brought up from the built image (``make image-test``): PostgreSQL, the two
Redis servers, the migration, the API and the worker, by the real compose binary. On a machine
where ``postgres:16`` and ``redis:7`` cannot be pulled, deploy/compose.standin.yaml puts
``make image``'s stand-ins in their place (``python -m service image --standins``). A smoke
request goes through the published port, the worker processes the article, and ``compose
stop`` ends the API and the worker with status 0."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.cli import harness, image
from service.cli.embedded import free_port
from service.cli.smoke import smoke
from tests.support import containers
from tests.support.compose import COMPOSE_FILE, SECRETS, STANDIN_FILE, compose

pytestmark = pytest.mark.skipif(
    not containers.available(),
    reason="no Docker daemon with newsdesk:local (make image-test builds it first)",
)
UP_WITHIN = 300.0


def _files() -> tuple[Path, ...]:
    official = all(image.present(name) for name in image.SERVICE_STANDINS)
    return (COMPOSE_FILE,) if official else (COMPOSE_FILE, STANDIN_FILE)


class Stack:
    """One compose project of deploy/compose.yaml, under a name of its own."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.project = f"newsdesk-test-{uuid.uuid4().hex[:8]}"
        self.variables = {**SECRETS, "NEWSDESK_PORT": str(self.port)}
        self.files = _files()
        self.url = f"http://127.0.0.1:{self.port}"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``compose ARGS`` for this project, whatever its exit status."""
        named = ("--project-name", self.project)
        return compose(
            self.work, *named, *args, files=self.files, variables=self.variables, timeout=timeout
        )

    def __call__(self, *args: str, timeout: float = 120) -> str:
        """``compose ARGS``' output; fails with the services' last log lines."""
        done = self.run(*args, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)}: {done.stderr}\n{self.logs()}")
        return done.stdout

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "40").stdout[-6000:]

    def containers(self) -> dict[str, dict[str, Any]]:
        """Each service's container as ``compose ps --all`` reports it."""
        lines = self("ps", "--all", "--format", "json").splitlines()
        found = [json.loads(line) for line in lines if line.strip()]
        return {entry["Service"]: entry for entry in found}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("compose-up"))
    try:
        running("up", "--detach", "--no-build", "--wait", timeout=UP_WITHIN)
        yield running
    finally:
        running.run("down", "--volumes", "--timeout", "30", timeout=180)


def test_the_whole_stack_comes_up_healthy(stack: Stack) -> None:
    services = stack.containers()
    assert services["migrate"]["State"] == "exited" and services["migrate"]["ExitCode"] == 0
    for name in ("postgres", "redis", "cache-redis", "api", "worker"):
        assert services[name]["State"] == "running", (name, stack.logs())
        assert services[name]["Health"] == "healthy", (name, stack.logs())
    ready = httpx.get(f"{stack.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks == {"database": "ok", "database_read": "ok", "redis": "ok", "cache_redis": "ok"}


def test_a_smoke_request_through_the_published_port_and_the_worker_processes_it(
    stack: Stack,
) -> None:
    article = smoke(stack.url)
    path = f"{stack.url}/api/v1/articles/{article['id']}"

    def processed() -> bool:
        return bool(httpx.get(path, timeout=10).json().get("status") == "processed")

    assert harness.poll_until(processed, 120, 0.5), stack.logs()


def test_compose_stop_ends_the_api_and_the_worker_cleanly(stack: Stack) -> None:
    stack("stop", "api", "worker", timeout=120)
    services = stack.containers()
    for name in ("api", "worker"):
        assert services[name]["State"] == "exited", (name, stack.logs())
        assert services[name]["ExitCode"] == 0, (name, stack.logs())

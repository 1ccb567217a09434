"""The image: dependencies installed from the lock in a layer that code changes leave cached,
the lock in step with pyproject.toml, and a HEALTHCHECK (``python -m service healthcheck``)
that fits each role: the API's /healthz, the worker's arq health check, nothing for a
migration."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from arq.constants import default_queue_name, health_check_key_suffix
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from service.cli.embedded import free_port
from service.cli.healthcheck import api_url, infer_role, main_process_cmdline
from tests.conftest import Workers
from tests.support.databases import ROOT, ServerStack, migrate
from tests.support.live import LiveServer

LOCK = ROOT / "requirements" / "image.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
HEALTH_KEY = default_queue_name + health_check_key_suffix


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def _regenerate() -> str:
    command = next(
        line.lstrip("# ") for line in LOCK.read_text().splitlines() if line.startswith("#    pip-")
    )
    return f"regenerate the lock with Python 3.11: .venv/bin/{command}"


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


# --- Dockerfile and lock -------------------------------------------------------------------


def test_dependencies_are_installed_from_the_lock_before_the_code_is_copied() -> None:
    steps = _instructions()
    stages = [i for i, (k, _) in enumerate(steps) if k == "FROM"]
    build = steps[stages[0] : stages[1]]

    def index(keyword: str, *needles: str) -> int:
        return next(
            i for i, (k, a) in enumerate(build) if k == keyword and all(n in a for n in needles)
        )

    install_deps = index("RUN", "--require-hashes", "-r requirements/image.txt")
    copy_code = index("COPY", "service")
    install_package = index("RUN", "--no-deps", "--no-build-isolation", " .")
    assert install_deps < copy_code < install_package
    # Only the lock reaches the image before the dependencies are installed.
    copied = [a for k, a in build[:install_deps] if k in ("COPY", "ADD")]
    assert copied == ["requirements/image.txt requirements/image.txt"]
    assert "--no-deps" in build[install_deps][1]


def test_the_build_context_holds_everything_the_dockerfile_copies() -> None:
    """.dockerignore keeps everything out (a virtualenv, local data) but what is copied."""
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copies = [a.split() for k, a in _instructions() if k == "COPY" and "--from" not in a]
    sources = {source.rstrip("/") for parts in copies for source in parts[:-1]}
    assert sources <= allowed, sources - allowed
    assert "*" in (ROOT / ".dockerignore").read_text().splitlines()


def test_the_image_checks_its_health_by_role_and_runs_as_10001() -> None:
    steps = _instructions()
    (health,) = [a for k, a in steps if k == "HEALTHCHECK"]
    assert health.endswith('CMD ["python", "-m", "service", "healthcheck"]')
    assert ("USER", "10001:10001") in steps
    assert steps[-1] == ("CMD", '["python", "-m", "service", "serve"]')
    # tini is PID 1 (signals passed on, orphans reaped); the command is only its arguments.
    assert ("ENTRYPOINT", '["/usr/bin/tini", "--"]') in steps
    assert "COPY --from=build /usr/bin/tini-static /usr/bin/tini" in [f"{k} {a}" for k, a in steps]
    # Both stages on the one base, a build argument (service.cli.image builds a stand-in).
    assert {a for k, a in steps if k == "FROM"} == {"${BASE} AS build", "${BASE}"}
    (base,) = [a.removeprefix("BASE=") for k, a in steps if k == "ARG" and a.startswith("BASE=")]
    assert base.startswith("python:3.11-"), "the lock is compiled with the image's Python"
    assert "with Python 3.11" in LOCK.read_text()


def test_the_lock_pins_every_dependency_of_pyproject_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = _pins()
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    problems = []
    for spec in wanted:
        requirement = Requirement(spec)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        pinned = pins.get(name)
        if pinned is None or not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{spec} (lock: {pinned})")
        # The extras' own dependencies (redis[hiredis], sqlalchemy[asyncio]) too.
        for extra in requirement.extras:
            for needed in importlib.metadata.requires(requirement.name) or []:
                sub = Requirement(needed)
                wanted_here = sub.marker is not None and sub.marker.evaluate({"extra": extra})
                if wanted_here and canonicalize_name(sub.name) not in pins:
                    problems.append(f"{sub.name} (for {spec})")
    assert not problems, f"not in requirements/image.txt: {problems}; {_regenerate()}"
    # Every pin carries its files' hashes (the image installs with --require-hashes).
    blocks = [b for b in re.split(r"\n(?=[^\s#])", LOCK.read_text()) if PIN.match(b)]
    assert len(blocks) == len(pins)
    assert all("--hash=sha256:" in block for block in blocks)


# --- python -m service healthcheck -------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmdline", "role"),
    [
        (["python", "-m", "service", "serve"], "api"),
        (["/venv/bin/python", "-m", "service", "worker"], "worker"),
        (["/sbin/docker-init", "--", "python", "-m", "service", "worker"], "worker"),
        (["/venv/bin/python", "/venv/bin/arq", "worker.WorkerSettings"], "worker"),
        (["/venv/bin/python", "/venv/bin/alembic", "upgrade", "head"], "migrate"),
        (["python", "-m", "service", "migrate"], "migrate"),
        (["hypercorn", "--config", "hypercorn.toml", "service.asgi:app"], "api"),
        ([], "api"),
    ],
)
def test_the_role_is_read_from_the_containers_command(cmdline: list[str], role: str) -> None:
    assert infer_role(cmdline) == role


def test_pid_1s_command_line_is_read_from_proc(tmp_path: Path) -> None:
    proc = tmp_path / "cmdline"
    proc.write_bytes(b"python\0-m\0service\0worker\0")
    assert main_process_cmdline(proc) == ["python", "-m", "service", "worker"]
    assert main_process_cmdline(tmp_path / "missing") == []


def test_the_api_is_checked_where_serve_listens() -> None:
    assert api_url({}) == "http://127.0.0.1:8000/healthz"
    assert api_url({"PORT": "9000"}) == "http://127.0.0.1:9000/healthz"
    assert api_url({"BIND": "0.0.0.0:8080"}) == "http://127.0.0.1:8080/healthz"
    assert api_url({"BIND": "[::]:8080"}) == "http://127.0.0.1:8080/healthz"
    assert api_url({"HOST": "10.1.2.3", "PORT": "81"}) == "http://10.1.2.3:81/healthz"


def _healthcheck(role: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("BIND", "HOST", "PORT")}
    return subprocess.run(
        [sys.executable, "-m", "service", "healthcheck", "--role", role],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_api_role_is_healthy_while_the_server_answers(live: LiveServer) -> None:
    assert _healthcheck("api", BIND=f"0.0.0.0:{live.port}").returncode == 0
    down = _healthcheck("api", PORT=str(free_port()))
    assert down.returncode == 1
    assert "unhealthy" in down.stderr


def test_migrate_role_is_always_healthy() -> None:
    assert _healthcheck("migrate").returncode == 0


@pytest.fixture
def private_redis(stack: ServerStack) -> Iterator[str]:
    """The stack's Redis, another database number: no other test's worker health check."""
    parts = urlsplit(stack.redis_url)
    current = int(parts.path.strip("/") or 0)
    url = urlunsplit(parts._replace(path=f"/{(current + 7) % 16}"))
    client = redis.Redis.from_url(url)
    client.delete(HEALTH_KEY)
    yield url
    client.delete(HEALTH_KEY)
    client.close()


def test_worker_role_follows_arqs_health_check(
    stack: ServerStack, private_redis: str, tmp_path: Path, worker: Workers
) -> None:
    """Not healthy without a worker; healthy once a real worker runs (a container running the
    worker is no longer reported unhealthy for lacking an HTTP server). The worker has a
    database and a Redis database of its own: its sweeps touch no other test's articles."""
    assert _healthcheck("worker", REDIS_URL=private_redis).returncode == 1
    database = stack.new_database("newsdesk_health")
    migrate(database)
    process = worker(DATABASE_URL=database, REDIS_URL=private_redis)
    try:
        client = redis.Redis.from_url(private_redis)
        for _ in range(600):
            if client.exists(HEALTH_KEY) or process.proc is None or process.proc.poll() is not None:
                break
            time.sleep(0.1)
        client.close()
        assert _healthcheck("worker", REDIS_URL=private_redis).returncode == 0, process.log()
    finally:
        process.stop()

"""The built image in its three roles (``make image-test``; ``make test`` leaves this folder to
it, as it needs a Docker daemon and ``make image``'s image).

Each container runs as deploy/compose.yaml runs it: the compose file's environment (resolved
by the real compose binary), read-only root filesystem, its tmpfs, no capabilities, no new
privileges, the image's own user (10001) and HEALTHCHECK, against the tests' PostgreSQL (a
database of its own, empty until the migration container runs) and two Redis servers (the
durable one and the cache's, as compose has). The figures (time from ``docker run`` to
``/readyz`` 200, stop times per role) are printed; ``make image-test`` shows them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from service.cli import harness
from service.cli.embedded import EmbeddedRedis, free_port
from tests.jobs.test_tasks import wait_for_status
from tests.support import containers
from tests.support.api import account, publish
from tests.support.compose import SECRETS, config, seconds
from tests.support.containers import Container
from tests.support.databases import ROOT, ServerStack

pytestmark = pytest.mark.skipif(
    not containers.available(),
    reason="no Docker daemon with newsdesk:local (make image-test builds it first)",
)
READY_WITHIN = 120.0
FIGURES: dict[str, list[float]] = {}


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    """The figures of this module's run, printed at its end (``make image-test`` shows them)."""
    yield
    for name, values in FIGURES.items():
        print(f"\nimage-test: {name}: " + ", ".join(f"{v:.2f}" for v in values), end="")


@pytest.fixture(scope="module")
def compose_services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    services: dict[str, Any] = config(tmp_path_factory.mktemp("compose"))["services"]
    return services


@pytest.fixture(scope="module")
def database_url(stack: ServerStack) -> str:
    return stack.new_database("newsdesk_image")  # empty: the migration container fills it


@pytest.fixture(scope="module")
def environment(
    stack: ServerStack, database_url: str, module_own_redis: EmbeddedRedis
) -> dict[str, str]:
    """What differs from the compose file: where the servers are (the compose network's
    names are this machine's loopback here) and the secret."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": stack.redis_url,
        "CACHE_REDIS_URL": module_own_redis.url(),
        "SECRET_KEY": SECRETS["SECRET_KEY"],
    }


# Each role's Kubernetes workload: its writable mounts are given to the container too.
MANIFESTS = {
    "api": "api-deployment.yaml",
    "worker": "worker-deployment.yaml",
    "migrate": "migrate-job.yaml",
}


def flags(services: dict[str, Any], role: str, **extra: str) -> list[str]:
    """The compose service's ``docker run`` flags, plus the tmpfs mounts (and the variables
    pointing into them) of the role's Kubernetes manifest: the image must run in either."""
    mounts, env = containers.manifest_tmpfs(ROOT / "deploy" / "kubernetes" / MANIFESTS[role])
    compose_tmpfs = {f"--tmpfs={path}" for path in services[role].get("tmpfs", [])}
    extra_mounts = [mount for mount in mounts if mount not in compose_tmpfs]
    return containers.run_flags(services[role], {**env, **extra}) + extra_mounts


@pytest.fixture(scope="module")
def migrated(compose_services: dict[str, Any], environment: dict[str, str]) -> None:
    command = compose_services["migrate"]["command"]
    containers.run_once(flags(compose_services, "migrate", **environment), *command)


def start_api(services: dict[str, Any], environment: dict[str, str]) -> Container:
    """An API container, once its /readyz answers 200 (the time it took is a figure)."""
    port = free_port()
    api_flags = flags(services, "api", **environment, BIND=f"127.0.0.1:{port}")
    container = containers.start("api", api_flags, *services["api"]["command"])
    container.url = f"http://127.0.0.1:{port}"
    try:
        FIGURES.setdefault("api: docker run to /readyz 200, s", []).append(
            container.wait_until(
                harness.http_ok(f"{container.url}/readyz"), READY_WITHIN, "/readyz 200"
            )
        )
    except BaseException:
        container.remove()
        raise
    return container


@pytest.fixture(scope="module")
def api(
    compose_services: dict[str, Any], environment: dict[str, str], migrated: None
) -> Iterator[Container]:
    with start_api(compose_services, environment) as container:
        yield container


def start_worker(services: dict[str, Any], environment: dict[str, str]) -> Container:
    metrics = str(free_port())  # the host's network: a port of its own
    worker_flags = flags(services, "worker", **environment, WORKER_METRICS_PORT=metrics)
    return containers.start("worker", worker_flags, *services["worker"]["command"])


@pytest.fixture(scope="module")
def worker(
    compose_services: dict[str, Any], environment: dict[str, str], migrated: None
) -> Iterator[Container]:
    with start_worker(compose_services, environment) as container:
        yield container


@pytest.fixture
async def http(api: Container) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        yield client


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


def test_migrations_run_as_the_images_user_and_again_harmlessly(
    compose_services: dict[str, Any], environment: dict[str, str], migrated: None
) -> None:
    migrate = flags(compose_services, "migrate", **environment)
    assert containers.run_once(migrate, "id", "-u").strip() == "10001"
    output = containers.run_once(migrate, *compose_services["migrate"]["command"])
    assert "Traceback" not in output


async def test_the_migrated_schema_is_the_heads(pg: asyncpg.Connection, migrated: None) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_heads()
    assert [await pg.fetchval("SELECT version_num FROM alembic_version")] == heads


def test_the_api_is_ready_healthy_and_cannot_write_its_root(api: Container) -> None:
    assert harness.http_ok(f"{api.url}/healthz")()
    # The image ships its migrations (/app/alembic.ini): the schema check compares, not skips.
    assert httpx.get(f"{api.url}/readyz", timeout=30).json()["migrations"]["state"] == "current"
    api.wait_until(lambda: api.health() == "healthy", 60, "a healthy HEALTHCHECK")
    assert api.exec("id", "-u") == "10001"
    with pytest.raises(RuntimeError, match="Read-only file system"):
        api.exec("touch", "/app/written")
    api.exec("touch", "/tmp/written")  # the tmpfs the compose file gives
    # /metrics from the multiprocess directory the Kubernetes manifest mounts (/run/prometheus)
    assert api.exec("printenv", "PROMETHEUS_MULTIPROC_DIR") == "/run/prometheus"
    assert harness.http_ok(f"{api.url}/metrics")()


async def test_the_worker_processes_an_article_created_through_the_api(
    http: httpx.AsyncClient, worker: Container, pg: asyncpg.Connection
) -> None:
    worker.wait_until(lambda: worker.health() == "healthy", 60, "a healthy HEALTHCHECK")
    ann = await account(http)
    article = await publish(http, ann, title="From the image", content="Made in a container.")
    found = await wait_for_status(pg, [article["id"]], "processed", 90)
    assert found == {article["id"]: "processed"}, worker.logs()[-3000:]
    response = await http.get(f"/api/v1/articles/{article['id']}")
    assert response.status_code == 200
    assert response.json()["summary"]


async def test_stopping_each_role_is_clean_and_loses_no_job(
    compose_services: dict[str, Any],
    environment: dict[str, str],
    migrated: None,
    pg: asyncpg.Connection,
) -> None:
    """An API and workers of their own, stopped as Docker stops them (SIGTERM, then SIGKILL
    after the compose file's grace period) while they work: each exits 0 before it, and every
    job queued before the stop is run, by the worker before it exits or by the next one."""
    api = start_api(compose_services, environment)
    first = start_worker(compose_services, environment)
    second = None
    try:
        first.wait_until(lambda: first.health() == "healthy", 60, "a healthy HEALTHCHECK")
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            ann = await account(http, name="Stop")
            ids = [
                (await publish(http, ann, title=f"Before the stop {n}", content="Queued."))["id"]
                for n in range(6)
            ]
        grace = seconds(compose_services["worker"]["stop_grace_period"])
        _stopped_cleanly(first, grace, "worker")
        second = start_worker(compose_services, environment)
        found = await wait_for_status(pg, ids, "processed", 120)
        assert found == dict.fromkeys(ids, "processed"), second.logs()[-3000:]
        second.wait_until(lambda: second.health() == "healthy", 60, "a healthy HEALTHCHECK")
        _stopped_cleanly(second, grace, "worker")
        _stopped_cleanly(api, seconds(compose_services["api"]["stop_grace_period"]), "api")
    finally:
        for container in (api, first, second):
            if container is not None:
                container.remove()


def _stopped_cleanly(container: Container, grace: float, role: str) -> None:
    took = container.stop(grace)
    FIGURES.setdefault(f"{role}: docker stop, s", []).append(took)
    assert container.exit_code() == 0, container.logs()[-3000:]
    assert took < grace, f"{container.name} was killed after {took:.1f} s"


def test_a_container_stopped_while_starting_ends_at_once(
    compose_services: dict[str, Any], environment: dict[str, str], migrated: None
) -> None:
    """A stop before the process has set its own SIGTERM handler: tini (PID 1) passes the
    signal on and the process ends by it, instead of PID 1 dropping it and Docker killing the
    container after the whole grace period."""
    grace = seconds(compose_services["worker"]["stop_grace_period"])
    container = start_worker(compose_services, environment)
    try:
        took = container.stop(grace)
        FIGURES.setdefault("worker stopped while starting: docker stop, s", []).append(took)
        assert took < grace / 2, f"stopped after {took:.1f} s"
        assert container.exit_code() in (0, 128 + 15), container.logs()[-3000:]
    finally:
        container.remove()

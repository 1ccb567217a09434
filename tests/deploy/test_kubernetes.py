"""deploy/kubernetes: every manifest (and the kustomization's output) validates against the
Kubernetes 1.30 schemas, strictly, offline (kubernetes-validate bundles them); and what the
schemas cannot know holds: grace periods outlast the servers' timeouts, probe paths are routes
of the app, ConfigMap keys are real settings, secrets only come from a Secret, pods are locked
down with the image's user."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, cast

import kubernetes_validate
import pytest
import yaml

from service.core.settings import Settings
from service.web.app import create_app
from tests.support.databases import ROOT

KUBERNETES = "1.30.0"
DIR = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = DIR / "kustomization.yaml"
CACHE_REDIS = DIR / "cache-redis"  # an optional component: the cache's own Redis
HYPERCORN = tomllib.loads((ROOT / "hypercorn.toml").read_text())
FIELDS = {name.upper() for name in Settings.model_fields}
# Read by the processes themselves, not by Settings (python -m service serve, prometheus_client).
PROCESS_VARIABLES = {"WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"}
SECRET_VARIABLES = {
    "SECRET_KEY",
    "DATABASE_URL",
    "DATABASE_READ_URL",
    "REDIS_URL",
    "CACHE_REDIS_URL",
    "SMTP_PASSWORD",
}
IMAGE = "newsdesk"


def _manifests() -> list[Path]:
    return sorted(p for p in DIR.glob("*.yaml") if p != KUSTOMIZATION)


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _resources() -> list[dict[str, Any]]:
    return [doc for path in _manifests() for doc in _load(path)]


def _one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [r for r in _resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def _pod_specs() -> dict[str, dict[str, Any]]:
    """Every pod template, by its workload's name."""
    return {
        r["metadata"]["name"]: r["spec"]["template"]["spec"]
        for r in _resources()
        if r["kind"] in ("Deployment", "Job")
    }


def _container(workload: str) -> dict[str, Any]:
    (container,) = _pod_specs()[workload]["containers"]
    return cast(dict[str, Any], container)


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _config() -> dict[str, str]:
    return dict(_one("ConfigMap", "newsdesk-config")["data"])


def _render_kustomization() -> list[dict[str, Any]]:
    """What ``kubectl kustomize`` makes of deploy/kubernetes: the listed resources with the
    ``images`` transform applied (the only transform the kustomization uses; checked)."""
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "images"}, (
        "the kustomization uses more than resources and images: extend this rendering"
    )
    images = {i["name"]: i for i in kustomization.get("images", [])}
    rendered = []
    for name in kustomization["resources"]:
        for doc in _load(DIR / name):
            spec = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                rule = images.get(container["image"].split(":")[0])
                if rule:
                    new_name = rule.get("newName", rule["name"])
                    container["image"] = f"{new_name}:{rule['newTag']}"
            rendered.append(doc)
    return rendered


def _seconds_of_sleep(command: list[str]) -> float:
    assert command[0] == "sleep" and len(command) == 2, command
    return float(command[1])


# --- schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _manifests(), ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schemas(path: Path) -> None:
    for doc in _load(path):
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_kustomization_lists_every_manifest_and_its_output_validates() -> None:
    listed = yaml.safe_load(KUSTOMIZATION.read_text())["resources"]
    assert sorted(listed) == [p.name for p in _manifests()]
    rendered = _render_kustomization()
    for doc in rendered:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    keys = [(doc["kind"], doc["metadata"]["name"]) for doc in rendered]
    assert len(keys) == len(set(keys))
    images = {
        c["image"]
        for doc in rendered
        if doc["kind"] in ("Deployment", "Job")
        for c in doc["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"{IMAGE}:0.1.0"}


# --- settings and secrets ------------------------------------------------------------------


def test_configmap_keys_are_settings_and_their_values_parse() -> None:
    config = _config()
    assert set(config) <= FIELDS, set(config) - FIELDS
    assert not set(config) & SECRET_VARIABLES
    values: dict[str, Any] = {name.lower(): value for name, value in config.items()}
    settings = Settings(_env_file=None, secret_key="x" * 48, **values)
    assert settings.env == "production"


def test_no_secret_is_written_in_a_manifest() -> None:
    assert not [r for r in _resources() if r["kind"] == "Secret"]
    for workload in _pod_specs():
        env = _env(_container(workload))
        for name in SECRET_VARIABLES & set(env):
            assert "value" not in env[name], f"{workload}: {name} has a literal value"
            assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "newsdesk"


def test_every_variable_given_to_a_container_is_read_by_newsdesk() -> None:
    for workload in _pod_specs():
        names = set(_env(_container(workload)))
        assert names <= FIELDS | PROCESS_VARIABLES, (workload, names - FIELDS - PROCESS_VARIABLES)
        assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= names, workload


# --- the API -------------------------------------------------------------------------------


def test_api_probes_are_routes_of_the_app() -> None:
    container = _container("newsdesk-api")
    routes = create_app(Settings(_env_file=None, env="test")).url_map.bind("localhost")
    (port,) = container["ports"]
    assert port["containerPort"] == int(HYPERCORN["bind"][0].rsplit(":", 1)[1])
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == port["name"]
        routes.match(get["path"], method="GET")  # raises NotFound if it is no route
        paths[probe] = get["path"]
    assert paths == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }


def test_api_grace_period_covers_prestop_graceful_timeout_and_lifespan_shutdown() -> None:
    pod = _pod_specs()["newsdesk-api"]
    container = _container("newsdesk-api")
    pre_stop = _seconds_of_sleep(container["lifecycle"]["preStop"]["exec"]["command"])
    assert pre_stop >= 5  # long enough for endpoint removal to reach the ingress
    needed = pre_stop + HYPERCORN["graceful_timeout"] + HYPERCORN["shutdown_timeout"]
    assert pod["terminationGracePeriodSeconds"] > needed
    # Startup may take hypercorn's startup_timeout before liveness applies.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= HYPERCORN["startup_timeout"]


def test_web_concurrency_follows_the_cpu_limit() -> None:
    container = _container("newsdesk-api")
    field = _env(container)["WEB_CONCURRENCY"]["valueFrom"]["resourceFieldRef"]
    assert field == {"containerName": container["name"], "resource": "limits.cpu", "divisor": "1"}
    limit = container["resources"]["limits"]["cpu"]
    assert re.fullmatch(r"[1-9]\d*", str(limit)), "a whole number of CPUs: one worker each"


def test_service_autoscaler_and_budget_select_the_api() -> None:
    labels = _one("Deployment", "newsdesk-api")["spec"]["template"]["metadata"]["labels"]
    service = _one("Service", "newsdesk-api")["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "http"
    hpa = _one("HorizontalPodAutoscaler", "newsdesk-api")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "newsdesk-api",
    }
    assert hpa["minReplicas"] >= 2
    # Replicas belong to the autoscaler: a `replicas` here would be reset by every apply.
    assert "replicas" not in _one("Deployment", "newsdesk-api")["spec"]
    pdb = _one("PodDisruptionBudget", "newsdesk-api")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()


# --- the worker and migrations ---------------------------------------------------------------


WORKER_ROLES = {
    "interactive": "InteractiveSettings",
    "bulk": "BulkSettings",
    "periodic": "PeriodicSettings",
}


@pytest.mark.parametrize("role", WORKER_ROLES)
def test_each_worker_role_has_its_deployment_probe_and_budget(role: str) -> None:
    """One Deployment per queue, scaled apart: it serves its role only, its probe is arq's
    check of that role's worker, its grace outlasts the job wait, its budget selects it."""
    name = f"newsdesk-worker-{role}"
    pod = _pod_specs()[name]
    container = _container(name)
    check = ["arq", "--check", f"worker.{WORKER_ROLES[role]}"]
    assert container["livenessProbe"]["exec"]["command"] == check
    assert container["startupProbe"]["exec"]["command"] == check
    assert container["args"] == ["python", "-m", "service", "worker"]
    assert "command" not in container  # the image's entry point (tini) stays
    assert _env(container)["WORKER_ROLES"]["value"] == role
    settings = Settings(_env_file=None, worker_roles=_env(container)["WORKER_ROLES"]["value"])
    assert settings.worker_roles == [role]
    wait = int(
        _config().get(
            "WORKER_SHUTDOWN_WAIT_SECONDS",
            Settings.model_fields["worker_shutdown_wait_seconds"].default,
        )
    )
    assert pod["terminationGracePeriodSeconds"] > wait
    deployment = _one("Deployment", name)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pdb = _one("PodDisruptionBudget", name)["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    # No other role's pods are selected by this one's Deployment or budget.
    for other in set(WORKER_ROLES) - {role}:
        theirs = _one("Deployment", f"newsdesk-worker-{other}")["spec"]["template"]["metadata"]
        assert not pdb["selector"]["matchLabels"].items() <= theirs["labels"].items()
        assert not deployment["spec"]["selector"]["matchLabels"].items() <= theirs["labels"].items()
    if "worker_metrics_port" in Settings.model_fields:
        (port,) = container["ports"]
        assert port["containerPort"] == Settings.model_fields["worker_metrics_port"].default


def test_scraped_workers_serve_metrics_beyond_loopback() -> None:
    """The worker's /metrics listens on loopback unless told otherwise (WORKER_METRICS_HOST);
    every worker pod Prometheus is told to scrape, at the pod's address, says so."""
    assert Settings.model_fields["worker_metrics_host"].default == "127.0.0.1"
    workers = [r for r in _resources() if r["metadata"]["name"].startswith("newsdesk-worker-")]
    assert {r["kind"] for r in workers} >= {"Deployment"}
    for deployment in (r for r in workers if r["kind"] == "Deployment"):
        name = deployment["metadata"]["name"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert _env(_container(name))["WORKER_METRICS_HOST"]["value"] == "0.0.0.0", name
        (port,) = _container(name)["ports"]
        assert annotations["prometheus.io/port"] == str(port["containerPort"]), name


def test_the_worker_deployments_serve_every_queue() -> None:
    roles = {
        _env(_container(name))["WORKER_ROLES"]["value"]
        for name in _pod_specs()
        if name.startswith("newsdesk-worker")
    }
    assert roles == set(Settings.model_fields["worker_roles"].default)


def test_migration_job_runs_alembic_once() -> None:
    job = _one("Job", "newsdesk-migrate")["spec"]
    assert _container("newsdesk-migrate")["args"] == ["alembic", "upgrade", "head"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert job["backoffLimit"] >= 1


# --- PostgreSQL connections ----------------------------------------------------------------


def _budget(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "budget", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_fleet_at_its_maximum_fits_postgresqls_default_max_connections() -> None:
    """`python -m service budget` on the shipped manifests: the HPA's maxReplicas API pods,
    every worker Deployment, each with its rollout's surge pod, and the migration, with the
    pools their ConfigMap and env give them, within max_connections 100 less the 3 reserved."""
    shipped = _budget("--manifests", str(DIR))
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    assert re.search(r"^newsdesk-api +10 +1 +2 ", shipped.stdout, re.M), shipped.stdout
    assert "fits:" in shipped.stdout
    # The same fleet as `kubectl kustomize deploy/kubernetes | python -m service budget
    # --manifests -` sees it.
    stream = yaml.safe_dump_all(_render_kustomization())
    rendered = _budget("--manifests", "-", stdin=stream)
    assert (rendered.returncode, rendered.stdout) == (0, shipped.stdout)


def test_a_fleet_over_max_connections_fails_the_budget_naming_the_excess() -> None:
    over = _budget("--manifests", str(DIR), "--api-pods", "30")
    assert over.returncode == 1
    assert re.search(r"over budget by \d+ connection\(s\): \d+ needed", over.stderr), over.stderr


# --- locked down ---------------------------------------------------------------------------


def test_every_pod_runs_as_the_images_user_with_nothing_writable_but_tmp() -> None:
    (user,) = re.findall(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    for workload, pod in _pod_specs().items():
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, workload
        assert (str(security["runAsUser"]), str(security["runAsGroup"])) == user, workload
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, workload
        assert pod["automountServiceAccountToken"] is False, workload
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            assert container["image"] == IMAGE
            locked = container["securityContext"]
            assert locked["allowPrivilegeEscalation"] is False, workload
            assert locked["readOnlyRootFilesystem"] is True, workload
            assert locked["capabilities"] == {"drop": ["ALL"]}, workload
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), workload
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], workload
            multiproc = _env(container).get("PROMETHEUS_MULTIPROC_DIR")
            if multiproc:
                assert "emptyDir" in volumes[mounts[multiproc["value"]]], workload


# --- the cache's own Redis (optional) -----------------------------------------------------


def _mebibytes(size: str) -> int:
    match = re.fullmatch(r"(\d+)(mb|Mi)", size)
    assert match, size
    return int(match.group(1))


def test_the_cache_redis_component_validates_and_evicts_least_recently_used() -> None:
    """deploy/kubernetes/cache-redis: a Redis for the response cache only (allkeys-lru,
    nothing on disk), within a memory limit above its maxmemory, locked down like the rest,
    behind the Service its kustomization tells CACHE_REDIS_URL to name."""
    kustomization_text = (CACHE_REDIS / "kustomization.yaml").read_text()
    listed = yaml.safe_load(kustomization_text)["resources"]
    assert sorted(listed) == sorted(
        p.name for p in CACHE_REDIS.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    docs = [doc for name in listed for doc in _load(CACHE_REDIS / name)]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    base = {(r["kind"], r["metadata"]["name"]) for r in _resources()}
    assert not base & {(d["kind"], d["metadata"]["name"]) for d in docs}
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (service,) = [d for d in docs if d["kind"] == "Service"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options["--maxmemory-policy"] == "allkeys-lru"
    assert (options["--save"], options["--appendonly"]) == ("", "no")
    limit = _mebibytes(container["resources"]["limits"]["memory"])
    assert limit > _mebibytes(options["--maxmemory"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # No Service, Deployment or budget of the base selects its pod.
    for resource in _resources():
        selector = resource.get("spec", {}).get("selector")
        if isinstance(selector, dict):
            selector = selector.get("matchLabels", selector)
            assert not selector.items() <= labels.items(), resource["metadata"]["name"]
    (port,) = service["spec"]["ports"]
    (container_port,) = container["ports"]
    assert port["targetPort"] == container_port["name"]
    url = f"redis://{service['metadata']['name']}:{port['port']}/0"
    assert url in kustomization_text
    assert Settings(_env_file=None, cache_redis_url=url).cache_redis_url == url


def test_the_api_and_the_workers_take_the_cache_redis_from_the_secret_if_set() -> None:
    for workload in _pod_specs():
        env = _env(_container(workload))
        if workload == "newsdesk-migrate":
            assert "CACHE_REDIS_URL" not in env  # migrations never touch the cache
            continue
        reference = env["CACHE_REDIS_URL"]["valueFrom"]["secretKeyRef"]
        assert reference == {"name": "newsdesk", "key": "CACHE_REDIS_URL", "optional": True}


def _quantity_mib(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match, quantity
    return int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1)


def test_the_api_memory_limit_covers_a_login_burst_on_every_worker() -> None:
    """The sum of deploy/README.md ("Memory"): each worker's baseline plus its hashing threads
    (the CPU limit: WEB_CONCURRENCY and PASSWORD_HASH_CONCURRENCY both follow it) at 64 MiB
    each, plus the master; the measured figures are bench/abuse.py's."""
    from service.domain.passwords import HASH_MEMORY_MIB

    container = _container("newsdesk-api")
    limits = container["resources"]["limits"]
    cpus = int(limits["cpu"])
    config = _one("ConfigMap", "newsdesk-config")["data"]
    threads = int(config.get("PASSWORD_HASH_CONCURRENCY") or cpus)
    master, worker_baseline = 55, 85
    needed = master + cpus * (worker_baseline + threads * HASH_MEMORY_MIB)
    assert needed <= _quantity_mib(limits["memory"]), needed


def test_trusted_proxies_are_set_not_left_empty() -> None:
    value = _one("ConfigMap", "newsdesk-config")["data"]["TRUSTED_PROXIES"]
    assert value.strip()
    Settings(_env_file=None, trusted_proxies=value)  # a value the settings accept

"""service.cli.budget: the connection sums for fleets written here, the shipped manifests read
into a fleet, and ``python -m service budget``'s exit status (0 fits, 1 over, 2 unknown)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from service.cli import budget
from service.cli.commands import main
from service.core.settings import Settings
from tests.support.databases import ROOT

SHIPPED = ROOT / "deploy" / "kubernetes"


def _fleet(*components: budget.Component, **limits: Any) -> budget.Fleet:
    return budget.Fleet(components=components, **limits)


API = budget.Component(name="api", kind="api", pods=10, surge=1, processes=2, pool=15)
WORKER = budget.Component(name="worker", kind="worker", pods=2, surge=1, pool=15)
MIGRATION = budget.Component(name="migrate", kind="migration", pods=1, pool=1)


def test_each_row_is_pods_and_surge_times_processes_engines_and_pool() -> None:
    result = budget.plan(_fleet(API, WORKER, MIGRATION))
    assert [r.connections for r in result.rows] == [11 * 2 * 15, 3 * 15, 1]
    assert result.total == 330 + 45 + 1 + 3  # the reserved superuser connections too
    assert result.excess == result.total - 100 and not result.fits


def test_a_read_engine_on_the_primary_doubles_every_pool_but_the_migrations() -> None:
    result = budget.plan(_fleet(API, MIGRATION, read_engine="primary"))
    assert [r.connections for r in result.rows] == [2 * 330, 1]


def test_a_replica_is_counted_on_its_own_against_the_same_limit() -> None:
    small = API.model_copy(update={"pods": 1, "surge": 0, "pool": 40})
    result = budget.plan(_fleet(small, MIGRATION, read_engine="replica"))
    assert result.total == 80 + 1 + 3
    assert result.replica_total == 80 + 3
    assert result.fits
    crowded = budget.plan(_fleet(small, MIGRATION, read_engine="replica", max_connections=83))
    assert crowded.excess == 1  # the primary is over by one, the replica fits exactly


def test_the_shipped_manifests_read_as_the_fleet_at_the_autoscalers_maximum() -> None:
    fleet = budget.fleet_from_manifests(budget.load_manifests(SHIPPED))
    by_name = {c.name: c for c in fleet.components}
    assert set(by_name) == {
        "newsdesk-api",
        "newsdesk-migrate",
        "newsdesk-worker-bulk",
        "newsdesk-worker-interactive",
        "newsdesk-worker-periodic",
    }
    api = by_name["newsdesk-api"]
    # HPA maxReplicas 10, maxSurge 1, WEB_CONCURRENCY from the 2-CPU limit, the ConfigMap's pool.
    assert (api.pods, api.surge, api.processes, api.pool) == (10, 1, 2, 3)
    assert by_name["newsdesk-migrate"].pool == 1
    pools = {name: c.pool for name, c in by_name.items() if c.kind == "worker"}
    # The interactive and periodic Deployments' own env wins over the ConfigMap.
    assert pools == {
        "newsdesk-worker-bulk": 3,
        "newsdesk-worker-interactive": 2,
        "newsdesk-worker-periodic": 3,
    }
    assert all((c.pods, c.surge) == (2, 1) for c in by_name.values() if c.kind == "worker")
    assert budget.plan(fleet).fits


def _write(folder: Path, text: str) -> Path:
    path = folder / "fleet.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_percent_surges_recreate_and_an_unlimited_api_are_read_as_kubernetes_means_them(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: config}
        data: {DB_POOL_SIZE: "4", DB_MAX_OVERFLOW: "1"}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: api}
        spec:
          replicas: 5
          strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 30%}}
          template:
            spec:
              containers:
                - name: api
                  image: registry.example.com/newsdesk:1.0
                  envFrom: [{configMapRef: {name: config}}]
                  env: [{name: WEB_CONCURRENCY, value: "3"}]
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: worker}
        spec:
          strategy: {type: Recreate}
          template:
            spec:
              containers:
                - name: worker
                  image: newsdesk
                  command: [python, -m, service, worker]
                  envFrom: [{configMapRef: {name: config}}]
                  resources: {limits: {cpu: 1500m}}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: cache}
        spec:
          template:
            spec:
              containers: [{name: redis, image: redis:7, command: [redis-server]}]
        """,
    )
    fleet = budget.fleet_from_manifests(budget.load_manifests(path))
    api, worker = fleet.components  # the Redis Deployment holds no PostgreSQL connection
    # 30 % of 5 pods rounds up to 2; the image's default command is serve.
    assert (api.kind, api.pods, api.surge, api.processes, api.pool) == ("api", 5, 2, 3, 5)
    assert (worker.kind, worker.pods, worker.surge, worker.processes) == ("worker", 1, 0, 1)


def test_an_api_without_web_concurrency_follows_its_cpu_limit_or_cannot_be_counted(
    tmp_path: Path,
) -> None:
    deployment = """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: api}
        spec:
          template:
            spec:
              containers:
                - name: api
                  image: newsdesk
                  command: [python, -m, service, serve]
                  %s
        """
    limited = _write(tmp_path, deployment % "resources: {limits: {cpu: 2500m}}")
    (api,) = budget.fleet_from_manifests(budget.load_manifests(limited)).components
    assert api.processes == 3  # the app's default: the CPU quota, rounded up
    unlimited = _write(tmp_path, deployment % "")
    with pytest.raises(budget.BudgetError, match="--web-concurrency"):
        budget.fleet_from_manifests(budget.load_manifests(unlimited))


def test_flags_replace_the_manifests_numbers_and_add_workers() -> None:
    fleet = budget.fleet_from_manifests(budget.load_manifests(SHIPPED))
    changed = budget.adjust(
        fleet, api_pods=4, web_concurrency=3, surge=0, workers=[("bulk", 5), ("reports", 1)]
    )
    by_name = {c.name: c for c in changed.components}
    assert (by_name["newsdesk-api"].pods, by_name["newsdesk-api"].processes) == (4, 3)
    assert by_name["newsdesk-worker-bulk"].pods == 5  # named by its role
    assert by_name["reports"].kind == "worker" and by_name["reports"].pods == 1
    assert all(c.surge == 0 for c in changed.components)


def test_a_fleet_from_settings_takes_the_apps_own_pool_sizes() -> None:
    settings = Settings(_env_file=None, db_pool_size=7, db_max_overflow=2)
    fleet = budget.fleet_from_settings(settings, api_pods=2, web_concurrency=4)
    fleet = budget.adjust(fleet, workers=[("worker", 1)], worker_settings=settings)
    assert [r.connections for r in budget.plan(fleet).rows] == [2 * 4 * 9, 9, 1]


def test_the_command_exits_0_when_the_fleet_fits_and_1_naming_the_excess_when_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["budget", "--manifests", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "newsdesk-api" in out and "fits:" in out
    # (30 API pods + 1 surge) x 2 workers x 3, the workers' 24, the migration, 3 reserved.
    assert main(["budget", "--manifests", str(SHIPPED), "--api-pods", "30"]) == 1
    captured = capsys.readouterr()
    assert "over budget by 114 connection(s): 214 needed" in captured.err


def test_the_command_reads_this_environments_settings_with_env(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "10")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "5")
    monkeypatch.delenv("DATABASE_READ_URL", raising=False)
    # One API instance of 6 workers and the one worker process: 90 + 1 + 15 + 3 = 109.
    assert main(["budget", "--env", "--web-concurrency", "6"]) == 1
    assert "over budget by 9 connection(s): 109 needed" in capsys.readouterr().err


def test_invalid_settings_in_a_manifest_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        """
        apiVersion: batch/v1
        kind: Job
        metadata: {name: migrate}
        spec:
          template:
            spec:
              containers:
                - name: migrate
                  image: newsdesk
                  command: [alembic, upgrade, head]
                  env: [{name: DB_POOL_SIZE, value: "0"}]
        """,
    )
    assert main(["budget", "--manifests", str(path)]) == 2
    assert "db_pool_size" in capsys.readouterr().err
    assert main(["budget", "--manifests", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_worker_flags_must_be_name_equals_replicas() -> None:
    assert budget.worker_arg("bulk=4") == ("bulk", 4)
    with pytest.raises(Exception, match="NAME=REPLICAS"):
        budget.worker_arg("bulk")

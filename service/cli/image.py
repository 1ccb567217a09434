"""``python -m service image [--tag T] [--base B] [--standin] [--standins]``: build the one
image (``make image``).

The ``Dockerfile``'s base is a build argument (``BASE``, by default ``python:3.11-slim-bookworm``).
Before building, this command makes sure the base is there: already on the Docker host, or
pulled. When it cannot be pulled (no registry reachable) it builds a stand-in and says so: a
Debian bookworm root filesystem made by ``mmdebstrap`` from Debian's packages (``python3``,
``python3-venv``, ``ca-certificates``: Python 3.11, as the official base), with ``python`` and
``python3`` in ``/usr/local/bin`` where the official image has them, imported with
``docker import`` as ``STANDIN`` (``newsdesk-standin/python:3.11-slim-bookworm``). The user the
image runs as (``newsdesk``, 10001) and its paths (``/venv``, ``/app``) are the Dockerfile's
own, the same on either base. ``--standin`` builds on the stand-in without trying the registry.

The stand-in trusts the certificate authorities this machine adds to its own store
(``/usr/local/share/ca-certificates``) and points pip at that store: a machine whose egress
proxy re-signs TLS can then reach PyPI from inside the build, as it does from the host. Names
this machine resolves through ``/etc/hosts`` (a package mirror, say) are passed to the build
with ``--add-host``, as Docker does not read the host's ``/etc/hosts``.

``--standins`` also makes sure the images deploy/compose.yaml runs beside Newsdesk's
(``postgres:16``, ``redis:7``) are there: pulled, or else stand-ins built from Debian's
packages (deploy/standin/: PostgreSQL 15, Redis 7.0, entry points honouring the official
images' variables), which deploy/compose.standin.yaml puts in their place.

Docker is reached the usual way: ``DOCKER_HOST`` (or the default socket) is honoured. The build
runs with the classic builder (``DOCKER_BUILDKIT=0``) when the ``buildx`` plugin is missing, as
it is from Debian's ``docker.io``. At the end the image's size and layers are printed.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TAG = "newsdesk:local"
STANDIN = "newsdesk-standin/python:3.11-slim-bookworm"
STANDIN_PACKAGES = ("python3", "python3-venv", "ca-certificates")
MIRROR = "http://deb.debian.org/debian"
PULL_SECONDS = 120
STANDINS_DIR = ROOT / "deploy" / "standin"
# The images deploy/compose.yaml runs beside Newsdesk's, and their stand-ins
# (deploy/compose.standin.yaml names the same tags).
SERVICE_STANDINS = {
    "postgres:16": ("newsdesk-standin/postgres:15", "postgres.Dockerfile"),
    "redis:7": ("newsdesk-standin/redis:7", "redis.Dockerfile"),
}


def default_base(dockerfile: Path = ROOT / "Dockerfile") -> str:
    """The ``BASE`` build argument's default, as the Dockerfile declares it."""
    match = re.search(r"^ARG BASE=(\S+)", dockerfile.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{dockerfile} declares no ARG BASE=...")
    return match[1]


def docker(*args: str, capture: bool = False, timeout: float | None = None) -> str:
    """Run ``docker args``; its stdout when ``capture``. Raises CalledProcessError on failure."""
    done = subprocess.run(
        ["docker", *args],
        check=True,
        capture_output=capture,
        text=True,
        timeout=timeout,
        env=build_env(),
    )
    return done.stdout if capture else ""


def build_env() -> dict[str, str]:
    """The environment for ``docker`` (this process's, ``DOCKER_HOST`` included): the classic
    builder when buildx is missing."""
    env = dict(os.environ)
    if not _has_buildx():
        env.setdefault("DOCKER_BUILDKIT", "0")
    return env


@functools.cache
def _has_buildx() -> bool:
    """Whether the docker command has the buildx plugin (asked once per process)."""
    return subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode == 0


def present(image: str) -> bool:
    """Whether ``image`` is on the Docker host."""
    try:
        docker("image", "inspect", image, capture=True)
    except subprocess.CalledProcessError:
        return False
    return True


def pulled(image: str) -> bool:
    """Whether ``image`` is on the Docker host or could be pulled from its registry."""
    if present(image):
        return True
    try:
        docker("pull", "--quiet", image, capture=True, timeout=PULL_SECONDS)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False
    return True


def hosts_entries(hosts: Path = Path("/etc/hosts")) -> list[str]:
    """``name:address`` for each name ``hosts`` maps to a non-loopback address."""
    entries: list[str] = []
    if not hosts.exists():
        return entries
    for line in hosts.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = ipaddress.ip_address(fields[0])
        except ValueError:
            continue
        if address.is_loopback or address.is_unspecified or address.is_multicast:
            continue
        entries += [f"{name}:{address}" for name in fields[1:]]
    return entries


def build_standin(tag: str = STANDIN) -> None:
    """The stand-in base from Debian's packages (``mmdebstrap``, installed when missing)."""
    if shutil.which("mmdebstrap") is None:
        print("installing mmdebstrap (Debian package)", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "mmdebstrap"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    hooks = [
        'ln -sf /usr/bin/python3 "$1/usr/local/bin/python3"',
        'ln -sf /usr/bin/python3 "$1/usr/local/bin/python"',
        # This machine's own certificate authorities, trusted inside as outside.
        'cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" '
        "2>/dev/null || true",
        'chroot "$1" update-ca-certificates >/dev/null',
    ]
    with tempfile.TemporaryDirectory(prefix="newsdesk-standin-") as work:
        tarball = Path(work) / "rootfs.tar"
        command = [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            f"--include={','.join(STANDIN_PACKAGES)}",
            '--aptopt=Acquire::Check-Valid-Until "false"',
            *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "info")),
            *(f"--customize-hook={hook}" for hook in hooks),
            "bookworm",
            str(tarball),
            MIRROR,
        ]
        subprocess.run(command, check=True)
        changes = [
            "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            'CMD ["python3"]',
        ]
        docker("import", *(f"--change={c}" for c in changes), str(tarball), tag)


def build(tag: str, base: str, dockerfile: Path = ROOT / "Dockerfile") -> None:
    """``docker build`` of ``dockerfile`` (its folder the context) on ``base``."""
    hosts = [f"--add-host={entry}" for entry in hosts_entries()]
    context = dockerfile.parent
    named = ["--file", str(dockerfile)]
    docker("build", "--build-arg", f"BASE={base}", *hosts, *named, "--tag", tag, str(context))


def service_standins() -> list[str]:
    """Stand-ins for the compose file's PostgreSQL and Redis images that cannot be pulled,
    built on the stand-in base when missing; the official images that needed one."""
    replaced = []
    for official, (standin, dockerfile) in SERVICE_STANDINS.items():
        if pulled(official):
            continue
        replaced.append(official)
        if not present(STANDIN):
            print(f"image: building the stand-in base {STANDIN} from Debian's packages")
            build_standin()
        if not present(standin):
            print(f"image: {official} cannot be pulled: building {standin}", flush=True)
            build(standin, STANDIN, STANDINS_DIR / dockerfile)
    return replaced


def describe(tag: str) -> str:
    """The image's size and its layers (``docker history``), as printed at the end."""
    size = int(docker("image", "inspect", "--format", "{{.Size}}", tag, capture=True))
    history = docker(
        "history", "--no-trunc", "--format", "{{json .}}", tag, capture=True
    ).splitlines()
    lines = [f"{tag}: {size / 1e6:.0f} MB, {len(history)} layers (newest first):"]
    for entry in map(json.loads, history):
        created_by = " ".join(entry["CreatedBy"].split())
        lines.append(f"  {entry['Size']:>8}  {created_by[:110]}")
    return "\n".join(lines)


def run(
    tag: str = TAG, base: str | None = None, *, standin: bool = False, services: bool = False
) -> int:
    """Build ``tag`` (and with ``services`` the compose file's service stand-ins where needed):
    exit status 0, or 2 when no Docker daemon answers."""
    if shutil.which("docker") is None:
        print("image: no docker command on this machine", file=sys.stderr)
        return 2
    try:
        docker("version", "--format", "{{.Server.Version}}", capture=True, timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        where = os.environ.get("DOCKER_HOST", "the default socket")
        print(f"image: no Docker daemon answers at {where}", file=sys.stderr)
        return 2
    base = base or default_base()
    if standin or not pulled(base):
        if not standin:
            print(f"image: {base} cannot be pulled (no registry reachable)", flush=True)
        if not present(STANDIN):
            print(f"image: building the stand-in base {STANDIN} from Debian's packages")
            build_standin()
        print(f"image: building on the stand-in base {STANDIN}", flush=True)
        base = STANDIN
    if services and service_standins():
        print(
            "image: compose runs them with deploy/compose.standin.yaml over deploy/compose.yaml",
            flush=True,
        )
    build(tag, base)
    print(describe(tag))
    return 0

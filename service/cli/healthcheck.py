"""``python -m service healthcheck``: the image's HEALTHCHECK, right for each of its roles.

One image runs the API (``python -m service serve``, its default command), the arq worker
(``python -m service worker``) and migrations (``alembic upgrade head``), so one HEALTHCHECK
must fit all three. The role is ``--role`` when given, else read from the container's main
process (PID 1's command line; under ``docker run --init`` the command follows the init):

- ``api``: ``GET /healthz`` on the port from ``BIND`` or ``PORT`` (8000): liveness, no I/O, so a
  slow database never marks the container unhealthy;
- ``worker``: arq's own check (what ``arq --check worker.WorkerSettings`` runs): the worker
  records a health check in Redis every 10 s;
- ``migrate``: nothing to check (a one-off process, judged by its exit status).

Exit status 0 when healthy, 1 when not (Docker's convention), with the reason on stderr.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROLES = ("api", "worker", "migrate")
_ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")


def infer_role(cmdline: Sequence[str]) -> str:
    """The role of a process started with ``cmdline`` (``api`` unless it is recognisably the
    worker or a migration)."""
    words = [os.path.basename(word) for word in cmdline]
    if "alembic" in words or ("service" in words and "migrate" in words):
        return "migrate"
    if "arq" in words or ("service" in words and "worker" in words):
        return "worker"
    return "api"


def main_process_cmdline(proc: Path = Path("/proc/1/cmdline")) -> list[str]:
    """PID 1's command line, or ``[]`` when it cannot be read."""
    try:
        raw = proc.read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def api_url(environ: dict[str, str]) -> str:
    """Where the API listens, as ``python -m service serve`` reads it (``BIND``, else
    ``HOST``/``PORT``), seen from inside the container."""
    bind = environ.get("BIND") or f"{environ.get('HOST', '')}:{environ.get('PORT') or '8000'}"
    host, _, port = bind.rpartition(":")
    if host in _ANY_ADDRESS:
        host = "127.0.0.1"
    return f"http://{host}:{port}/healthz"


def check_api(environ: dict[str, str], timeout: float) -> int:
    url = api_url(environ)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status == 200:
                return 0
            print(f"unhealthy: {url} answered {response.status}", file=sys.stderr)
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
    return 1


def check_worker() -> int:
    """arq's check of the health record each worker of ``service.jobs.worker`` keeps in Redis,
    one per role of ``WORKER_ROLES``: unhealthy when one is missing."""
    from arq.worker import check_health

    from service.jobs.worker import from_environment

    roles = from_environment()
    classes: list[Any] = roles.of(roles.settings.worker_roles)  # as `arq --check` takes them
    return max(int(check_health(cls)) for cls in classes)


def run(role: str = "auto", timeout: float = 3.0) -> int:
    """Check ``role`` (``auto``: inferred from PID 1); 0 when healthy."""
    if role == "auto":
        role = infer_role(main_process_cmdline())
    if role == "migrate":
        return 0
    if role == "worker":
        return check_worker()
    return check_api(dict(os.environ), timeout)

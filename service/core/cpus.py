"""How many CPUs this process really has: the default for ``WEB_CONCURRENCY`` (Hypercorn
workers of ``python -m service serve``), ``WORKER_CPU_PROCESSES`` and
``PASSWORD_HASH_CONCURRENCY``.

``os.cpu_count()`` is the host's CPU count: a container limited to half a CPU on a 16-core
node would start 16 workers, each with its own pools (16 times the PostgreSQL connections)
fighting over half a CPU. The limit a container really has is its cgroup CPU quota, so the
default is, in this order:

1. cgroup v2: ``<root>/cpu.max`` (``"<quota> <period>"``, or ``"max <period>"``: no limit);
2. cgroup v1: ``<root>/cpu/cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` (``-1``: no limit),
   also under ``<root>/cpu,cpuacct/``;
3. the CPUs this process may run on (``os.sched_getaffinity``: ``docker --cpuset-cpus``,
   ``taskset``), then ``os.cpu_count()``.

A quota is rounded up (0.5 CPU gives 1 worker, 1.5 give 2: a worker mostly waits on I/O) and
never exceeds the CPUs of step 3. The cgroup root is the one mounted at ``/sys/fs/cgroup``:
inside a container (its own cgroup namespace, the default with cgroup v2) that is the
container's cgroup.

Everything here reads files and takes the paths as arguments, so the tests parse real files
in a temporary directory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 ``cpu.max`` (``"50000 100000"``) -> CPUs (0.5); ``None`` without a limit."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    quota = int(fields[0])
    period = int(fields[1]) if len(fields) > 1 else 100_000  # the kernel's default period
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` -> CPUs; ``None`` for ``-1``."""
    quota, period = int(quota_text.strip()), int(period_text.strip())
    return quota / period if quota > 0 and period > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # missing (other cgroup version, not Linux) or unreadable
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of the cgroup mounted at ``root`` in CPUs, or ``None`` without one."""
    try:
        cpu_max = _read(root / "cpu.max")
        if cpu_max is not None:
            return parse_cpu_max(cpu_max)
        for controller in ("cpu", "cpu,cpuacct"):
            quota = _read(root / controller / "cpu.cfs_quota_us")
            period = _read(root / controller / "cpu.cfs_period_us")
            if quota is not None and period is not None:
                return parse_cfs(quota, period)
    except ValueError:  # a file we do not understand: no limit we can trust
        return None
    return None


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (Linux), else the machine's count."""
    affinity: Callable[[int], set[int]] | None = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        try:
            return max(1, len(affinity(0)))
        except OSError:
            pass
    return os.cpu_count() or 1


def default_workers(root: Path = CGROUP_ROOT, cpus: int | None = None) -> tuple[int, str]:
    """``(workers, why)``: the quota rounded up, capped by ``cpus`` (the available CPUs)."""
    cpus = available_cpus() if cpus is None else cpus
    limit = cgroup_cpu_limit(root)
    if limit is None:
        return cpus, f"{cpus} CPU(s) available, no cgroup CPU quota"
    return max(1, min(math.ceil(limit), cpus)), f"cgroup CPU quota {limit:g} of {cpus} CPU(s)"


def cpu_budget(root: Path = CGROUP_ROOT) -> int:
    """The CPU quota rounded up, capped by the available CPUs (``default_workers``' count)."""
    return default_workers(root)[0]

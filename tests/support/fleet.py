"""Two API instances on one PostgreSQL and one Redis, with nginx in front: the smallest fleet,
for tests of what must hold across instances (``tests/fleet/``).

Each instance is a live server (``tests.conftest.LiveServers``) with small pools (several
instances share the suite's PostgreSQL) and nginx's loopback address trusted, so a client's
address reaches the app through ``X-Forwarded-For`` as it does in production.
``kill`` ends an instance the way a crash does: SIGKILL to Hypercorn's master and every
process under it, nothing drained or closed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from service.cli.nginx import Nginx
from tests.support.live import LiveServer

if TYPE_CHECKING:
    from tests.conftest import LiveServers, Proxies

# Small pools: two instances (plus the suite's own server) on a PostgreSQL others share.
FLEET_ENV = {
    "TRUSTED_PROXIES": "127.0.0.1",
    "DB_POOL_SIZE": "3",
    "DB_MAX_OVERFLOW": "2",
}


@dataclass(frozen=True)
class Fleet:
    """Instances ``a`` and ``b`` and the ``nginx`` in front of both."""

    a: LiveServer
    b: LiveServer
    nginx: Nginx

    @property
    def urls(self) -> tuple[str, str, str]:
        """Where a client can send a request: A, B and nginx, in that order."""
        return self.a.url, self.b.url, self.nginx.url


def start(servers: LiveServers, proxies: Proxies, **env: str) -> Fleet:
    """Two instances with ``FLEET_ENV`` and ``env``, and nginx in front of them."""
    a, b = (servers(log=f"instance-{name}.log", start=False) for name in "ab")
    for instance in (a, b):
        instance.env.update({**FLEET_ENV, **env})
        instance.start()
    return Fleet(a, b, proxies(a, b))


Clients = tuple[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient]


@contextlib.asynccontextmanager
async def clients(fleet: Fleet, seconds: float = 30) -> AsyncIterator[Clients]:
    """HTTP clients of A, B and nginx (in that order), every call bounded by ``seconds``."""
    async with contextlib.AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=seconds))
            for url in fleet.urls
        ]
        yield opened[0], opened[1], opened[2]


def _children() -> dict[int, list[int]]:
    """Every process's children, from ``/proc`` (pid -> child pids)."""
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # The command name, in parentheses, may hold spaces: the fields follow the last ")".
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            found.setdefault(parent, []).append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """The processes under ``pid``, children first."""
    children = _children()
    found: list[int] = []
    pending = list(children.get(pid, []))
    while pending:
        current = pending.pop(0)
        found.append(current)
        pending.extend(children.get(current, []))
    return found


def _gone(pid: int) -> bool:
    """Whether ``pid`` has ended (no such process, or a zombie nobody reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def kill(server: LiveServer, timeout: float = 30) -> list[int]:
    """SIGKILL ``server``'s master and every process under it (its Hypercorn worker serves
    the requests); returns their pids once all have ended. The master is stopped first, so it
    cannot start a new worker between the listing and the kill."""
    proc = server.proc
    assert proc is not None and proc.poll() is None, "the instance is not running"
    os.kill(proc.pid, signal.SIGSTOP)
    under = descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    for pid in under:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout)
    deadline = time.monotonic() + timeout
    while not all(_gone(pid) for pid in under):
        assert time.monotonic() < deadline, f"processes {under} outlived SIGKILL"
        time.sleep(0.05)
    return [proc.pid, *under]


def start_deployed(
    servers: LiveServers, proxies: Proxies, count: int = 3, workers: int = 1, **env: str
) -> tuple[list[LiveServer], Nginx]:
    """``count`` instances run as the image runs them (``LiveServer.as_deployed``: ``python
    -m service serve`` with ``workers`` Hypercorn workers under Newsdesk's master, which
    drains on SIGTERM), with ``FLEET_ENV`` and ``env``, and nginx in front of them: the fleet
    a rolling restart goes through."""
    instances = [
        servers(log=f"instance-{n}.log", start=False).as_deployed(workers) for n in range(count)
    ]
    for instance in instances:
        instance.env.update({**FLEET_ENV, **env})
    with ThreadPoolExecutor(count) as starting:  # side by side: each takes seconds to start
        list(starting.map(LiveServer.start, instances))
    return instances, proxies(*instances)

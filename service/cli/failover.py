"""A failover controller for ``Replication``: promote the replica once the primary is gone.

**What it does.** A thread checks the primary every ``check_seconds`` (``pg_isready`` with a
timeout, so a stopped or unreachable server fails the check instead of hanging it). After
``down_after`` consecutive failed checks, and only while the replica itself answers, it
promotes the replica (``PostgresNode.promote()``, which waits until it accepts writes), logs
it, records ``promoted_at`` and stops: one failover. Making a new replica of the new primary
is the operator's job (``service.cli.replication``: a fresh ``pg_basebackup``). The app needs
no signal: its multi-host URLs (``Replication.database_url``, ``target_session_attrs``) find
the new primary on their next connection.

**Why not Patroni.** Patroni (or repmgr, pg_auto_failover) is what a real deployment runs,
but it is a daemon beside every PostgreSQL server and needs a distributed configuration store
(etcd, Consul, ZooKeeper) of three members or more to elect a leader safely. Here both
servers run on one machine, for tests and ``python -m service cluster``: a single watcher
that sees both is enough, and costs a thread instead of four more services.

**Split-brain.** Two servers accepting writes at once would each take writes the other never
sees. Here it cannot happen: the controller acts only after the primary has stopped
answering, and nothing restarts a killed primary (``PostgresNode`` has no supervisor, and
``Replication.start()`` makes the replica again from a fresh copy rather than reviving the
old pair). A real deployment cannot rely on that: an old primary that was only partitioned
away, or is restarted by its init system, comes back believing it is the primary. It must be
*fenced* before the promotion: powered off or its network cut (STONITH), or its clients'
routes removed, and it may rejoin only as a replica (``pg_rewind`` or a new base backup).
Patroni does this with leader leases in the configuration store and a watchdog that reboots
a primary which lost its lease.

**What a promotion loses.** With ``synchronous_commit`` on (``Replication``'s default) every
acknowledged commit is on the replica's disk, so none is lost; off, the commits not yet
streamed when the primary died are gone (``bench/failover.py`` measures both).
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import threading
import time
from collections.abc import Mapping

from service.cli.replication import PostgresNode, Replication

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.5  # FAILOVER_CHECK_SECONDS: time between two checks of the primary
DOWN_AFTER = 3  # consecutive failed checks before the primary is taken as gone
PROBE_TIMEOUT = 2.0  # one check's bound (pg_isready's connect timeout)
PROMOTE_TIMEOUT = 60  # seconds the promotion may take on a busy machine


def accepting(node: PostgresNode, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether ``node`` accepts connections, decided within about ``timeout`` seconds.

    ``pg_isready`` rather than a query: it needs no free connection slot (a primary at
    ``max_connections`` is still alive), and its ``-t`` bounds the whole attempt, so a
    stopped (SIGSTOP) or black-holed server counts as down instead of stalling the check."""
    seconds = max(1, math.ceil(timeout))
    command = [
        str(node.bin_dir / "pg_isready"),
        *("-h", "127.0.0.1", "-p", str(node.port), "-U", "postgres", "-t", str(seconds), "-q"),
    ]
    try:
        return subprocess.run(command, check=False, timeout=seconds + 2).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Failover:
    """Watch ``replication.primary``; promote ``replication.replica`` once it is gone.

    ``start()`` starts the watching thread, ``stop()`` ends it (a promotion under way is
    waited for). ``promoted_at`` is the ``time.monotonic()`` at which the replica accepted
    writes (None before), ``detected_at`` when the primary was taken as gone, ``error`` what
    made a promotion fail (the controller then stops: a second try would not do better than
    an operator)."""

    def __init__(
        self,
        replication: Replication,
        *,
        check_seconds: float = CHECK_SECONDS,
        down_after: int = DOWN_AFTER,
        probe_timeout: float = PROBE_TIMEOUT,
    ) -> None:
        if check_seconds <= 0 or down_after < 1:
            raise ValueError("check_seconds must be > 0 and down_after >= 1")
        self.replication = replication
        self.check_seconds = check_seconds
        self.down_after = down_after
        self.probe_timeout = probe_timeout
        self.failed_checks = 0
        self.detected_at: float | None = None
        self.promoted_at: float | None = None
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, replication: Replication, env: Mapping[str, str] | None = None) -> Failover:
        """A controller with ``FAILOVER_CHECK_SECONDS`` and ``FAILOVER_DOWN_AFTER`` from
        ``env`` (the process environment by default), else the defaults above."""
        env = os.environ if env is None else env
        return cls(
            replication,
            check_seconds=float(env.get("FAILOVER_CHECK_SECONDS") or CHECK_SECONDS),
            down_after=int(env.get("FAILOVER_DOWN_AFTER") or DOWN_AFTER),
        )

    def start(self) -> Failover:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="failover", daemon=True)
            self._thread.start()
            log.info(
                "failover controller watching PostgreSQL on port %d (every %.1f s, down "
                "after %d failed checks; replica on port %d)",
                self.replication.primary.port,
                self.check_seconds,
                self.down_after,
                self.replication.replica.port,
            )
        return self

    def stop(self, timeout: float = PROMOTE_TIMEOUT + 10) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def done(self) -> bool:
        """Whether the controller has finished: promoted, failed to, or stopped."""
        return self._done.is_set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the promotion; True once it has happened."""
        self._done.wait(timeout)
        return self.promoted_at is not None

    def check(self) -> bool:
        """One round: True when the replica should be promoted now."""
        if accepting(self.replication.primary, self.probe_timeout):
            if self.failed_checks:
                log.info(
                    "PostgreSQL primary answers again after %d failed check(s)", self.failed_checks
                )
            self.failed_checks = 0
            return False
        self.failed_checks += 1
        log.warning(
            "PostgreSQL primary on port %d failed check %d of %d",
            self.replication.primary.port,
            self.failed_checks,
            self.down_after,
        )
        if self.failed_checks < self.down_after:
            return False
        if not accepting(self.replication.replica, self.probe_timeout):
            # Promoting nothing helps no one: keep watching, the replica may come back.
            log.error("PostgreSQL primary is down and the replica does not answer either")
            return False
        return True

    def _run(self) -> None:
        try:
            while not self._stopping.wait(self.check_seconds):
                if self.check():
                    self.promote()
                    return
        except BaseException as exc:  # the thread's end is reported, never silent
            self.error = exc
            log.exception("failover controller stopped on an error")
        finally:
            self._done.set()

    def promote(self) -> None:
        """Promote the replica now (``check`` decided it), and log how long it took."""
        self.detected_at = time.monotonic()
        replica = self.replication.replica
        log.warning(
            "PostgreSQL primary on port %d is down: promoting the replica on port %d",
            self.replication.primary.port,
            replica.port,
        )
        replica.promote(PROMOTE_TIMEOUT)
        self.promoted_at = time.monotonic()
        log.warning(
            "PostgreSQL replica on port %d promoted in %.1f s: it is the primary now (no "
            "replica is left; make a new one from it)",
            replica.port,
            self.promoted_at - self.detected_at,
        )

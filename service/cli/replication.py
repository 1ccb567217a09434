"""A PostgreSQL primary and one streaming replica on loopback, for ``python -m service cluster``.

Both are ``EmbeddedPostgres`` servers (the ``pgserver`` package's binaries): the replica's data
directory is a ``pg_basebackup -R`` of the running primary, so it starts as a hot standby that
streams the primary's WAL and answers reads. It is made again at every start (its directory
emptied first): after a ``promote()`` the two servers' histories diverge, and a replica copied
afresh is the one way back that needs no ``pg_rewind``.

``synchronous_commit``: with it on, the primary names the replica in
``synchronous_standby_names`` and a commit returns once the replica has the WAL on disk, so a
failover loses no acknowledged write; writes then wait while the replica is down. Off, a commit
returns at once and the replica may lag (milliseconds on loopback).

The app's URLs (``database_url``, ``read_url``) name both servers, so that after the replica is
promoted the app finds the new primary without a restart: asyncpg tries the hosts in turn and
keeps the one whose role matches ``target_session_attrs`` (``read-write`` for writes,
``prefer-standby`` for the reads that may lag).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
from pathlib import Path

from service.cli.embedded import EmbeddedPostgres

DATABASE = "newsdesk"
REPLICA_NAME = "newsdesk_replica"  # the replica's application_name on the primary


class PostgresNode(EmbeddedPostgres):
    """One server of the pair: ``EmbeddedPostgres`` plus what a failover drill needs."""

    def kill(self) -> None:
        """SIGKILL the postmaster: a crash, nothing flushed (its backends exit on their own)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def in_recovery(self) -> bool:
        """Whether the server is a standby (``pg_is_in_recovery()``)."""
        return self.psql("SELECT pg_is_in_recovery()") == "t"

    def promote(self, timeout: int = 30) -> None:
        """Make a standby the primary, waiting up to ``timeout`` seconds for it to accept
        writes (``pg_promote``)."""
        if self.psql(f"SELECT pg_promote(true, {timeout})") != "t":
            raise RuntimeError(f"PostgreSQL on port {self.port} was not promoted in {timeout}s")


class Replication:
    """A primary and its streaming replica under ``base``; ``start()`` then the URLs."""

    def __init__(
        self,
        base: Path,
        *,
        synchronous_commit: bool = True,
        max_connections: int = 100,
        durable: bool = True,
    ) -> None:
        self.synchronous_commit = synchronous_commit
        primary_settings = {
            "max_wal_senders": "5",
            "synchronous_commit": "on" if synchronous_commit else "off",
        }
        self.primary = PostgresNode(
            base / "primary",
            durable=durable,
            max_connections=max_connections,
            settings=primary_settings,
        )
        self.replica = PostgresNode(
            base / "replica",
            durable=durable,
            max_connections=max_connections,
            # A standby's max_connections may not be below its primary's; cluster_name is the
            # application_name its WAL receiver shows the primary.
            settings={"cluster_name": REPLICA_NAME, "hot_standby": "on"},
            replica_of=self.primary,
        )

    def start(self) -> Replication:
        """The primary (and the app's database on it), then a fresh replica of it, streaming."""
        try:
            self.primary.start()
            # Named only once the replica streams: until then every commit would wait for it
            # (CREATE DATABASE included), and a copy taken with the name in it would, once
            # promoted, wait for a standby of its own that does not exist.
            self._standby_names("")
            self.primary.ensure_database(DATABASE)
            shutil.rmtree(self.replica.data_dir, ignore_errors=True)
            self.replica.start()
            if self.synchronous_commit:
                self._standby_names(REPLICA_NAME)
        except BaseException:
            self.stop()
            raise
        return self

    def _standby_names(self, names: str) -> None:
        """``synchronous_standby_names`` on the primary, applied by a reload (ALTER SYSTEM)."""
        self.primary.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
        self.primary.psql("SELECT pg_reload_conf()")

    def streaming(self) -> bool:
        """Whether the primary sees the replica streaming (``pg_stat_replication``)."""
        with contextlib.suppress(Exception):
            state = self.primary.psql(
                f"SELECT state FROM pg_stat_replication WHERE application_name = '{REPLICA_NAME}'"
            )
            return state == "streaming"
        return False

    def _hosts(self, *nodes: PostgresNode) -> str:
        return "&".join(f"host=127.0.0.1:{node.port}" for node in nodes)

    @property
    def primary_url(self) -> str:
        """The primary alone (migrations)."""
        return self.primary.url(DATABASE)

    @property
    def database_url(self) -> str:
        """``DATABASE_URL``: whichever of the two accepts writes."""
        hosts = self._hosts(self.primary, self.replica)
        return f"postgresql://postgres@/{DATABASE}?{hosts}&target_session_attrs=read-write"

    @property
    def read_url(self) -> str:
        """``DATABASE_READ_URL``: the standby while there is one, else the primary."""
        hosts = self._hosts(self.replica, self.primary)
        return f"postgresql://postgres@/{DATABASE}?{hosts}&target_session_attrs=prefer-standby"

    def stop(self) -> None:
        """The replica, then the primary (the app is stopped before either: with synchronous
        commit on, a write waits while the replica is away)."""
        self.replica.stop()
        self.primary.stop()

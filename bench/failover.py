"""The PostgreSQL failover drill: the primary killed (SIGKILL) under mixed load, the replica
promoted by the failover controller (``service.cli.failover``), the API left running.

``drill()`` is the drill on a running pair and API instance; ``tests/fleet/test_failover.py``
runs it in ``make test`` (synchronous replication, nothing lost), and this module's command
measures both settings of ``synchronous_commit``, each run on a fresh pair and instance::

    python -m bench.failover --sync on --runs 2
    python -m bench.failover --sync off --runs 2 [--pause-walreceiver 2]
    python -m bench.failover --sync local --runs 2

``off`` is ``Replication(synchronous_commit=False)``: the primary runs with
``synchronous_commit=off``, so a commit returns before its WAL is flushed even locally, and the
WAL sender only sends flushed WAL: a kill loses the last commits not yet written out by the
WAL writer (``wal_writer_delay``, 200 ms), besides any WAL not yet streamed. ``local`` is the
same pair with ``ALTER DATABASE ... SET synchronous_commit = local`` (a database setting
overrides the server's command line for new sessions): each commit is flushed on the primary
and not waited for on the replica, plain asynchronous replication, which loses only what was
flushed but not yet streamed.

Figures per run: the seconds of 503 (first 503 answered to the last), requests by status,
writes acknowledged (201) and writes lost (acknowledged, absent from the new primary), the
seconds from the kill to the promotion and to the first write acknowledged again.

``--pause-walreceiver S`` stops (SIGSTOP) the replica's WAL receiver for ``S`` seconds of load
just before the kill: the primary keeps committing, and what it could not send is what an
asynchronous failover loses. With ``synchronous_commit`` on, the same pause makes the writes
wait instead (each commit waits for the replica), so nothing acknowledged is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import psutil

from bench.faults.load import WRITE, Load, Record, Tally, lost_writes, tally, written
from service.cli import harness
from service.cli.embedded import EmbeddedRedis, free_port
from service.cli.failover import Failover
from service.cli.replication import DATABASE, Replication

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "a long enough password"
ARTICLES = 20  # articles the reads choose from
WARM = 3.0  # seconds of load before the kill
AFTER = 3.0  # seconds of load after writes are acknowledged again
WRITES_BACK_LIMIT = 60.0  # longest wait for a write acknowledged after the kill
CONNECTIONS = 12
EXPECTED = frozenset({200, 201, 304, 404, 503})  # what the drill's requests may be answered


@dataclass
class Figures:
    """What one drill saw; times are ``time.monotonic()``."""

    synchronous: bool
    counts: Tally
    killed_at: float
    promoted_at: float | None
    writes_back_at: float | None  # first write sent after the kill and answered 201
    first_503: float | None
    last_503: float | None
    acknowledged: int
    lost: int
    unexpected: dict[int, int] = field(default_factory=dict)  # statuses outside EXPECTED
    without_retry_after: int = 0  # 503 answers that carried no Retry-After

    @property
    def unavailable_seconds(self) -> float:
        """Seconds from the first 503 to the last (0 when there was none)."""
        if self.first_503 is None or self.last_503 is None:
            return 0.0
        return self.last_503 - self.first_503

    def since_kill(self, moment: float | None) -> str:
        return "never" if moment is None else f"{moment - self.killed_at:.1f} s"

    def lines(self) -> list[str]:
        mode = "synchronous" if self.synchronous else "asynchronous"
        return [
            f"{mode} replication: {self.counts.requests} requests ({self.counts.statuses_text()})",
            f"  503 for {self.unavailable_seconds:.1f} s (first to last), "
            f"{self.without_retry_after} without Retry-After, "
            f"{self.counts.internal_errors} answered 500",
            f"  promoted {self.since_kill(self.promoted_at)} after the kill, writes "
            f"acknowledged again after {self.since_kill(self.writes_back_at)}",
            f"  writes acknowledged {self.acknowledged}, lost {self.lost}",
        ]


async def seed(base_url: str, articles: int = ARTICLES) -> tuple[str, list[int]]:
    """An account's API key and ``articles`` articles it published, through the API."""
    email = f"failover-{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        user = {"email": email, "password": PASSWORD, "name": "Failover"}
        (await http.post("/api/v1/users", json=user)).raise_for_status()
        login = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        login.raise_for_status()
        session = {"Authorization": f"Bearer {login.json()['token']}"}
        created = await http.post("/api/v1/api-keys", json={"name": "failover"}, headers=session)
        created.raise_for_status()
        key = str(created.json()["key"])
        ids = []
        for n in range(articles):
            body = {"title": f"Failover seed {n}", "content": "Read during the drill. " * 4}
            answer = await http.post("/api/v1/articles", json=body, headers={"API-Key": key})
            answer.raise_for_status()
            ids.append(int(answer.json()["id"]))
    return key, ids


async def stored_ids(url: str, ids: list[int]) -> set[int]:
    """Which of ``ids`` are in ``articles`` on the server at ``url`` (asyncpg's URL form)."""
    conn = await asyncpg.connect(url, timeout=30)
    try:
        rows = await conn.fetch("SELECT id FROM articles WHERE id = ANY($1::bigint[])", ids)
    finally:
        await conn.close()
    return {int(row["id"]) for row in rows}


def _walreceiver(replication: Replication) -> psutil.Process | None:
    """The replica's WAL receiver process (a child of its postmaster)."""
    proc = replication.replica.proc
    if proc is None:
        return None
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(proc.pid).children():
            if "walreceiver" in " ".join(child.cmdline()):
                return child
    return None


def _writes_back(records: list[Record], killed: float) -> float | None:
    answers = [r.done for r in records if r.kind == WRITE and r.sent >= killed and r.status == 201]
    return min(answers) if answers else None


async def drill(
    replication: Replication,
    base_url: str,
    api_key: str,
    read_ids: list[int],
    *,
    pause_walreceiver: float = 0.0,
    connections: int = CONNECTIONS,
    max_requests: int = 20_000,
) -> Figures:
    """Load, kill the primary, let the controller promote the replica, load until writes are
    acknowledged again (at most ``WRITES_BACK_LIMIT`` s) and ``AFTER`` s more; count."""
    controller = Failover(replication).start()
    receiver: psutil.Process | None = None
    try:
        async with Load(
            base_url,
            api_key,
            read_ids,
            label=uuid.uuid4().hex[:8],
            connections=connections,
            writes=0.3,
            lists=0.2,
            max_requests=max_requests,
        ) as load:
            await asyncio.sleep(WARM)
            if pause_walreceiver > 0:
                receiver = _walreceiver(replication)
                if receiver is not None:
                    receiver.send_signal(signal.SIGSTOP)
                await asyncio.sleep(pause_walreceiver)
            killed = time.monotonic()
            await asyncio.to_thread(replication.primary.kill)
            if receiver is not None:
                receiver.send_signal(signal.SIGCONT)
            # A receiver that was stopped finds its primary gone and exits: the promotion then
            # replays what it had received (the rest is lost, as in a real crash).
            await asyncio.to_thread(controller.wait, WRITES_BACK_LIMIT)
            while time.monotonic() - killed < WRITES_BACK_LIMIT:
                back = _writes_back(load.records, killed)
                if back is not None and time.monotonic() > back + AFTER:
                    break
                await asyncio.sleep(0.25)
        records = load.records
    finally:
        if receiver is not None:
            with contextlib.suppress(psutil.Error):
                receiver.send_signal(signal.SIGCONT)
        controller.stop()
    if controller.error is not None:
        raise RuntimeError("the failover controller failed") from controller.error
    acknowledged = written(records)
    new_primary = replication.replica.url(DATABASE)
    lost = lost_writes(acknowledged, await stored_ids(new_primary, acknowledged))
    unavailable = sorted(r.done for r in records if r.status == 503)
    counts = tally(records)
    return Figures(
        synchronous=replication.synchronous_commit,
        counts=counts,
        killed_at=killed,
        promoted_at=controller.promoted_at,
        writes_back_at=_writes_back(records, killed),
        first_503=unavailable[0] if unavailable else None,
        last_503=unavailable[-1] if unavailable else None,
        acknowledged=len(acknowledged),
        lost=lost,
        unexpected={s: n for s, n in counts.statuses.items() if s not in EXPECTED},
        without_retry_after=sum(1 for r in records if r.status == 503 and not r.retry_after),
    )


def instance_env(replication: Replication, redis_url: str) -> dict[str, str]:
    """An API instance's settings against the pair: both multi-host URLs, small pools,
    patient timeouts (a loaded machine), limits that never refuse the drill's one client."""
    return {
        "ENV_FILE": "",
        "ENV": "test",
        "PASSWORD_RESET_URL": "http://127.0.0.1/reset-password#token={token}",
        "DATABASE_URL": replication.database_url,
        "DATABASE_READ_URL": replication.read_url,
        "REDIS_URL": redis_url,
        "DB_POOL_SIZE": "3",
        "DB_MAX_OVERFLOW": "2",
        "DB_POOL_TIMEOUT": "10",
        "DB_CONNECT_TIMEOUT": "5",
        "CACHE_TIMEOUT": "2",
        "RATE_LIMIT_READ": "100000000/minute",
        "RATE_LIMIT_WRITE": "100000000/minute",
        "RATE_LIMIT_REGISTER": "100000/hour",
        "RATE_LIMIT_LOGIN_IP": "100000/minute",
        "LOG_LEVEL": "WARNING",
    }


def migrate(url: str) -> None:
    """``alembic upgrade head`` on the primary alone (the replica follows by replication)."""
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "ENV_FILE": "", "DATABASE_URL": url},
    )


async def _one_run(work: Path, mode: str, pause: float) -> Figures:
    replication = Replication(work / "pg", synchronous_commit=mode == "on").start()
    if mode == "local":
        replication.primary.psql(f"ALTER DATABASE {DATABASE} SET synchronous_commit = local")
    redis = EmbeddedRedis(work / "redis", durable=False).start()
    api: harness.Process | None = None
    try:
        env = instance_env(replication, redis.url())
        await asyncio.to_thread(migrate, replication.primary_url)
        port = free_port()
        env |= {"BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"}
        env["PROMETHEUS_MULTIPROC_DIR"] = str(work / "metrics")
        api = await asyncio.to_thread(
            harness.spawn,
            [sys.executable, "-m", "service", "serve"],
            env,
            work / "api.log",
            ready=f"http://127.0.0.1:{port}/readyz",
            timeout=90,
        )
        base_url = f"http://127.0.0.1:{port}"
        key, ids = await seed(base_url)
        return await drill(replication, base_url, key, ids, pause_walreceiver=pause)
    finally:
        if api is not None:
            api.stop()
        redis.stop()
        replication.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__)
    parser.add_argument("--sync", choices=("on", "off", "local"), default="on")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--pause-walreceiver", type=float, default=0.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="newsdesk-failover-") as folder:
            work = Path(folder)
            work.chmod(0o755)  # the embedded PostgreSQL's own user must reach its files
            figures = asyncio.run(_one_run(work, args.sync, args.pause_walreceiver))
        print(f"run {run} (--sync {args.sync}): " + "\n".join(figures.lines()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

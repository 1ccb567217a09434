"""The faults, one coroutine each: break something under load, put it back, count.

Each case gets the running ``Stack`` and the ``Setup`` (an API key, article ids of its own so
that view counts of one case never mix with another's, the e-mail the login case targets)
and returns its ``Row``. Blocking steps (stopping or starting a server) run in a thread so
the load keeps going meanwhile. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
import httpx
import psutil

from bench.faults.load import (
    Load,
    Record,
    database_backed,
    in_flight,
    lost_writes,
    recovery_seconds,
    redis_backed,
    tally,
    unanswered,
    view_difference,
    views_answered,
    written,
)
from bench.faults.report import Row
from bench.faults.stack import LOGIN_EMAIL_LIMIT, Stack

PASSWORD = "a long enough password"
WARM = 4.0  # seconds of load before the fault
OUTAGE = 5.0  # seconds a server stays down
AFTER = 4.0  # seconds of load after recovery
RECOVERY_LIMIT = 60.0  # longest wait for the first answer after the server is back
DRAIN_LIMIT = 90.0  # longest wait for views to reach articles.views
HOT = 100  # articles each case reads
SLOW_CLIENTS = 16
SLOW_DECLARED = 1000  # bytes each slow client announces
SLOW_BOUND = 60.0
WRONG_LOGINS = 20


@dataclass
class Setup:
    key: str
    ids: dict[str, list[int]]
    target_email: str


Case = Callable[[Stack, Setup], Awaitable[Row]]


# -- setup and PostgreSQL reads ----------------------------------------------------------------


async def prepare_setup(stack: Stack, names: Sequence[str]) -> Setup:
    """An account with an API key, the login case's user, ``HOT`` seeded ids per case."""
    async with httpx.AsyncClient(base_url=stack.url, timeout=60) as http:
        email = "faults-author@example.com"
        created = await http.post(
            "/api/v1/users", json={"email": email, "password": PASSWORD, "name": "Faults"}
        )
        created.raise_for_status()
        login = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        login.raise_for_status()
        token = login.json()["token"]
        key = await http.post(
            "/api/v1/api-keys",
            json={"name": "faults"},
            headers={"Authorization": f"Bearer {token}"},
        )
        key.raise_for_status()
        target = "faults-target@example.com"
        user = await http.post(
            "/api/v1/users", json={"email": target, "password": PASSWORD, "name": "Target"}
        )
        user.raise_for_status()
    seeded = await _fetch(
        stack, "SELECT id FROM articles ORDER BY id LIMIT $1", HOT * max(len(names), 1)
    )
    ids = [int(row["id"]) for row in seeded]
    slices = {name: ids[n * HOT : (n + 1) * HOT] for n, name in enumerate(names)}
    return Setup(str(key.json()["key"]), slices, target)


async def _fetch(stack: Stack, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(stack.database_url, timeout=30)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def stored(stack: Stack, ids: Sequence[int]) -> set[int]:
    rows = await _fetch(stack, "SELECT id FROM articles WHERE id = ANY($1::bigint[])", list(ids))
    return {int(row["id"]) for row in rows}


async def views(stack: Stack, ids: Sequence[int]) -> dict[int, int]:
    rows = await _fetch(
        stack, "SELECT id, views FROM articles WHERE id = ANY($1::bigint[])", list(ids)
    )
    return {int(row["id"]): int(row["views"]) for row in rows}


async def drained_views(
    stack: Stack, ids: Sequence[int], before: dict[int, int], answered: dict[int, int]
) -> tuple[dict[int, int], float]:
    """Views added to ``ids`` since ``before`` once the worker has flushed at least as many as
    ``answered`` (at most ``DRAIN_LIMIT`` s), then 3 s more so a double count would show; and
    how long the drain took."""
    started = time.monotonic()
    want = sum(answered.values())
    while True:
        now = await views(stack, ids)
        added = {i: now.get(i, 0) - before.get(i, 0) for i in ids}
        if sum(added.values()) >= want or time.monotonic() - started > DRAIN_LIMIT:
            break
        await asyncio.sleep(0.5)
    drain = time.monotonic() - started
    await asyncio.sleep(3)
    now = await views(stack, ids)
    return {i: now.get(i, 0) - before.get(i, 0) for i in ids}, drain


async def metric(stack: Stack, name: str) -> float:
    try:
        return await asyncio.to_thread(stack.metric, name)
    except (httpx.HTTPError, ValueError):
        return float("nan")


async def _until_recovered(
    load: Load, down: float, back: float, served: Callable[[Record], bool]
) -> float | None:
    """Keep the load going until ``AFTER`` s past the first ``served`` answer after ``back``
    (at most ``RECOVERY_LIMIT`` s); the recovery time."""
    while time.monotonic() - back < RECOVERY_LIMIT:
        recovery = recovery_seconds(load.records, down, back, served)
        if recovery is not None and time.monotonic() > back + recovery + AFTER:
            return recovery
        await asyncio.sleep(0.25)
    return recovery_seconds(load.records, down, back, served)


def _common(row: Row, records: Sequence[Record]) -> None:
    counts = tally(records)
    row.requests = counts.requests
    row.server_errors = counts.server_errors
    row.unavailable_with_retry_after = counts.unavailable_with_retry_after
    row.check(counts.internal_errors == 0, f"{counts.internal_errors} answers 500")
    row.notes.append(counts.statuses_text())


async def _lost_writes(row: Row, stack: Stack, records: Sequence[Record]) -> None:
    answered = written(records)
    row.lost_writes = lost_writes(answered, await stored(stack, answered))
    row.check(row.lost_writes == 0, f"{row.lost_writes} writes answered 201 lost")
    row.notes.append(f"{len(answered)} writes answered 201")


# -- the cases ---------------------------------------------------------------------------------


async def postgres_stopped(stack: Stack, setup: Setup) -> Row:
    """PostgreSQL stopped with a fast shutdown for ``OUTAGE`` s under load, then started."""
    row = Row("PostgreSQL stopped 5 s (fast shutdown)")
    refused_before = await metric(stack, "database_unavailable_total")
    log_start = len(stack.log("api.log"))
    async with Load(stack.url, setup.key, setup.ids["postgres"], label="postgres") as load:
        await asyncio.sleep(WARM)
        down = time.monotonic()
        await asyncio.to_thread(stack.postgres.stop)
        await asyncio.sleep(OUTAGE / 2)
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
            readyz = await http.get("/readyz")
            ready = (readyz.status_code, readyz.json().get("checks", {}).get("database"))
        await asyncio.sleep(max(0.0, down + OUTAGE - time.monotonic()))
        await asyncio.to_thread(stack.postgres.start)
        back = time.monotonic()
        row.recovery = await _until_recovered(load, down, back, database_backed)
    _common(row, load.records)
    await _lost_writes(row, stack, load.records)
    stale = sum(1 for r in load.records if r.cache == "STALE")
    refused = await metric(stack, "database_unavailable_total") - refused_before
    log = stack.log("api.log")[log_start:]
    row.notes += [
        f"{stale} reads answered from a stale cache entry",
        f"/readyz during the outage: {ready[0]} (database {ready[1]})",
        f"database_unavailable_total +{refused:.0f}",
        f"log: 'database unreachable' x{log.count('database unreachable')}, "
        f"'reachable again' x{log.count('database reachable again')}",
    ]
    # The instance stays in its load balancer, reporting the outage (cached reads still serve).
    row.check(ready[0] == 200 and ready[1] != "ok", f"/readyz answered {ready} during the outage")
    return row


async def redis_killed(stack: Stack, setup: Setup) -> Row:
    """Redis killed (SIGKILL) under load, started again ``OUTAGE`` s later on its files."""
    row = Row("Redis killed (SIGKILL) 5 s")
    ids = setup.ids["redis"]
    before = await views(stack, ids)
    opens_before = await metric(stack, "redis_breaker_opens_total")
    async with Load(stack.url, setup.key, ids, label="redis") as load:
        await asyncio.sleep(WARM)
        down = time.monotonic()
        await asyncio.to_thread(stack.kill_redis)
        await asyncio.sleep(OUTAGE - 1)
        buffered = await metric(stack, "views_buffered")
        await asyncio.sleep(max(0.0, down + OUTAGE - time.monotonic()))
        await asyncio.to_thread(stack.redis.start)
        back = time.monotonic()
        row.recovery = await _until_recovered(load, down, back, redis_backed)
    _common(row, load.records)
    await _lost_writes(row, stack, load.records)
    answered = views_answered(load.records)
    recorded, drain = await drained_views(stack, ids, before, answered)
    lost, doubled = view_difference(answered, recorded)
    row.lost_views = lost
    bypass = sum(1 for r in load.records if r.cache == "BYPASS")
    opens = await metric(stack, "redis_breaker_opens_total") - opens_before
    row.notes += [
        f"views: {sum(answered.values())} answered, {sum(recorded.values())} counted, "
        f"{doubled} counted twice (drain {drain:.0f} s)",
        f"views_buffered {buffered:.0f} during the outage",
        f"{bypass} reads with X-Cache BYPASS",
        f"redis_breaker_opens_total +{opens:.0f}",
        "recovery: first read through the cache again",
    ]
    row.check(doubled == 0, f"{doubled} views counted twice")
    return row


async def sigterm(stack: Stack, setup: Setup) -> Row:
    """SIGTERM to the API's master (two workers) under load; the API is started again."""
    row = Row("SIGTERM to the API (2 workers)")
    assert stack.api is not None
    api = stack.api
    async with Load(stack.url, setup.key, setup.ids["sigterm"], label="sigterm") as load:
        await asyncio.sleep(WARM)
        signalled = time.monotonic()
        api.send_signal(signal.SIGTERM)
        try:
            status: int | None = await asyncio.to_thread(api.wait, 90)
        except subprocess.TimeoutExpired:
            status = None
        exited = time.monotonic()
        await asyncio.sleep(0.5)
    stack.api = None
    _common(row, load.records)
    await _lost_writes(row, stack, load.records)
    flight = in_flight(load.records, signalled)
    left = unanswered(load.records, signalled)
    after = sum(1 for r in load.records if r.sent >= signalled and r.status is None)
    dropped = [r for r in load.records if r.sent < signalled and r.status is None]
    if dropped:
        errors = ", ".join(sorted({r.error for r in dropped}))
        oldest = max(signalled - r.sent for r in dropped)
        row.notes.append(
            f"the unanswered ones ({errors}) were sent 0 to {oldest:.2f} s before the signal"
        )
        row.finding = (
            "the requests left unanswered met a connection the stopping worker closed "
            f"({errors}). The likely cause: Hypercorn closes the keep-alive "
            "connections it counts as idle when the shutdown starts, and a request whose bytes "
            "had arrived but that the worker's event loop had not read yet (answers took up "
            "to seconds on this busy machine) is dropped with its connection. The client "
            "cannot tell whether it was processed: idempotent requests can be retried, "
            "writes cannot safely be."
        )
    row.notes += [
        f"exit status {status} after {exited - signalled:.1f} s",
        f"{flight} requests in flight at the signal, {left} of those sent before it unanswered",
        f"{after} requests sent after it refused (nothing listening, as expected)",
    ]
    row.check(left == 0, f"{left} requests sent before SIGTERM unanswered")
    row.check(status == 0, f"exit status {status}")
    started = time.monotonic()
    await asyncio.to_thread(stack.start_api)
    row.recovery = time.monotonic() - started
    row.notes.append("recovery: the API started again (not part of the fault)")
    return row


async def worker_killed(stack: Stack, setup: Setup) -> Row:
    """The arq worker SIGKILLed three times in the middle of its 1 s view flushes."""
    row = Row("arq worker SIGKILLed during view flushes (x3)")
    ids = setup.ids["worker"]
    before = await views(stack, ids)
    rng = random.Random(4)
    kills = 0
    async with Load(
        stack.url, setup.key, ids, label="worker", writes=0.0, lists=0.0, seed=4
    ) as load:
        for _ in range(3):
            # Wait for the worker's next flush line, then kill it somewhere in the cycle.
            seen = stack.log("worker.log").count("views: ")
            deadline = time.monotonic() + 60
            while stack.log("worker.log").count("views: ") <= seen:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(rng.random())
            await asyncio.to_thread(stack.kill_worker)
            kills += 1
            stack.start_worker()
        await asyncio.sleep(2)
    _common(row, load.records)
    answered = views_answered(load.records)
    recorded, drain = await drained_views(stack, ids, before, answered)
    lost, doubled = view_difference(answered, recorded)
    row.lost_views = lost
    row.notes += [
        f"{kills} kills, each within 1 s of a flush",
        f"views: {sum(answered.values())} answered, {sum(recorded.values())} counted, "
        f"{doubled} counted twice (drain {drain:.0f} s after the load)",
    ]
    row.check(lost == 0, f"{lost} views lost")
    row.check(doubled == 0, f"{doubled} views counted twice")
    return row


async def _trickle(stack: Stack, key: str) -> tuple[int | None, float]:
    """POST a body of ``SLOW_DECLARED`` bytes at 1 byte/s; the status the server answered
    (None: none) and the seconds from the first byte to that answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    started = time.monotonic()
    try:
        writer.write(
            b"POST /api/v1/articles HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nAPI-Key: %s\r\nContent-Length: %d\r\n\r\n"
            % (key.encode(), SLOW_DECLARED)
        )
        answer = asyncio.create_task(reader.read(65536))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SLOW_BOUND):
                for _ in range(SLOW_DECLARED):
                    with contextlib.suppress(OSError):  # the server may have closed already
                        writer.write(b" ")
                        await writer.drain()
                    done, _ = await asyncio.wait({answer}, timeout=1)
                    if done:
                        break
        seconds = time.monotonic() - started
        if not answer.done():
            answer.cancel()
            return None, seconds
        raw = answer.result()
        status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else None
        return status, seconds
    finally:
        writer.close()


async def slow_bodies(stack: Stack, setup: Setup) -> Row:
    """``SLOW_CLIENTS`` connections sending a body at 1 byte/s while the normal load runs
    (production's BODY_MIN_RATE 240 bytes/s after BODY_GRACE_SECONDS 5 s)."""
    row = Row(f"{SLOW_CLIENTS} slow request bodies (1 byte/s)")
    cut_before = await metric(stack, "request_bodies_cut_total")
    async with Load(stack.url, setup.key, setup.ids["slow"], label="slow") as load:
        await asyncio.sleep(1)
        slow = await asyncio.gather(*(_trickle(stack, setup.key) for _ in range(SLOW_CLIENTS)))
        await asyncio.sleep(1)
    _common(row, load.records)
    row.requests += SLOW_CLIENTS
    await _lost_writes(row, stack, load.records)
    counts = tally(load.records)
    normal_ok = sum(n for status, n in counts.statuses.items() if 200 <= status < 300)
    cut = [seconds for status, seconds in slow if status == 408]
    cut_metric = await metric(stack, "request_bodies_cut_total") - cut_before
    timing = f" after {statistics.median(cut):.1f} s median (max {max(cut):.1f} s)" if cut else ""
    row.notes += [
        f"slow: {len(cut)}/{SLOW_CLIENTS} cut with 408{timing}",
        f"other answers to slow ones: {[s for s, _ in slow if s != 408]}",
        f"normal requests: {normal_ok}/{counts.requests} answered 2xx",
        f"request_bodies_cut_total +{cut_metric:.0f}",
    ]
    row.check(len(cut) == SLOW_CLIENTS, f"{SLOW_CLIENTS - len(cut)} slow bodies not cut with 408")
    return row


async def busy_loop(stack: Stack, setup: Setup) -> Row:
    """Wrong-password logins for one e-mail (limit ``LOGIN_EMAIL_LIMIT`` an hour) while both
    API workers' event loops are held 3 x 1.5 s (SIGSTOP, as a long callback holds a loop)."""
    row = Row("event loop held 3 x 1.5 s + wrong logins")
    opens_before = await metric(stack, "redis_breaker_opens_total")
    log_start = len(stack.log("api.log"))
    workers = stack.api_workers()

    async def hold() -> None:
        for _ in range(3):
            for process in workers:
                process.suspend()
            try:
                await asyncio.sleep(1.5)
            finally:
                for process in workers:
                    with contextlib.suppress(psutil.Error):
                        process.resume()
            await asyncio.sleep(0.5)

    async with (
        Load(stack.url, setup.key, setup.ids["loop"], label="loop") as load,
        httpx.AsyncClient(base_url=stack.url, timeout=60) as http,
    ):
        await asyncio.sleep(1)

        async def wrong_login(wave: int) -> int | None:
            await asyncio.sleep(wave * 0.3)
            body = {"email": setup.target_email, "password": "not the password at all"}
            try:
                return (await http.post("/api/v1/auth/login", json=body)).status_code
            except httpx.HTTPError:
                return None

        holder = asyncio.create_task(hold())
        logins = await asyncio.gather(*(wrong_login(i // 2) for i in range(WRONG_LOGINS)))
        await holder
    _common(row, load.records)
    row.requests += WRONG_LOGINS
    processed = logins.count(401)
    opens = await metric(stack, "redis_breaker_opens_total") - opens_before
    log = stack.log("api.log")[log_start:]
    row.notes += [
        f"logins: {processed} processed (401) for a limit of {LOGIN_EMAIL_LIMIT}, "
        f"{logins.count(429)} refused 429, {logins.count(503)} 503, "
        f"{sum(1 for s in logins if s not in (401, 429, 503))} other",
        f"redis_breaker_opens_total +{opens:.0f}",
        f"log: 'Redis unavailable' x{log.count('Redis unavailable')}",
    ]
    row.check(processed <= LOGIN_EMAIL_LIMIT, f"{processed} logins processed past the limit")
    return row


CASES: dict[str, Case] = {
    "postgres": postgres_stopped,
    "redis": redis_killed,
    "sigterm": sigterm,
    "worker": worker_killed,
    "slow": slow_bodies,
    "loop": busy_loop,
}

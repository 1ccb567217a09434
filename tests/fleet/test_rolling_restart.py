"""A rolling restart under load, as a deploy does it: three instances behind nginx restarted
one after another lose no request, and a bulk worker restarted mid-drain loses no job and
runs none twice.

The instances run as the image runs them (``python -m service serve``, Newsdesk's master), so
SIGTERM drains them: answers say ``Connection: close`` for a moment (``drain``'s quiesce),
then the instance stops accepting, finishes what it has and exits. nginx is told nothing
(no endpoint removal, no preStop sleep, as behind Kubernetes): it learns from connections.
A request on a connection the stopping instance refuses is passed to another instance
(``proxy_next_upstream error``, any method, since nothing was sent); a request already sent
on a connection the instance then resets is passed on only if it is idempotent, so a POST or
PATCH there is answered 502. The master lets go of the listening socket as the stop begins
(``service.edge.master``), so once the workers stop accepting a new connection is refused;
it is not completed into a queue nobody accepts from, to be reset after its request was sent.

One step of the deploy is: SIGTERM, wait for the exit, start again on the same port, wait
until ``/readyz`` answers 200, and then until nginx passes requests to the instance again.
That last wait matters: the connections refused while the instance was down count as
failures (``max_fails=3 fail_timeout=10s``), so nginx leaves it out of rotation for up to
``fail_timeout`` although it is ready. A deploy that moves on at ``/readyz`` alone, faster
than that, takes the next instances out while the first is still shunned, until nginx has
none left and answers every request 502 ("no live upstreams").

Every request is counted by status; a failed one (an error status or no answer) is listed
with its method and path, and the test asserts there is none.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import httpx
from arq.connections import RedisSettings, create_pool

from service.cli.embedded import EmbeddedRedis
from service.core import keys
from tests.conftest import LiveServers, Proxies, Workers
from tests.jobs.test_backlog_drain import content
from tests.jobs.test_tasks import wait_for_status
from tests.support.api import Account, account, publish
from tests.support.fleet import start_deployed
from tests.support.live import LiveServer
from tests.support.worker import WorkerProcess

INSTANCES = 3
CLIENTS = 6  # concurrent clients through nginx, each with an article of its own to edit
PAUSE = 0.15  # seconds between one client's requests: a few hundred per restart
MAX_REQUESTS = 2500  # a bound on the whole load, however long the restarts take
CLIENT_TIMEOUT = 45.0  # longer than nginx's proxy_read_timeout (30 s)
RESTART_TIMEOUT = 60.0  # one instance: stopped, started again and ready
OPERATIONS = ("read", "list", "create", "edit")
WEIGHTS = (4, 2, 2, 2)


@dataclass
class Load:
    """What the clients sent and what they were answered."""

    prefix: str
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)  # "METHOD path: status or error"
    created: dict[str, int] = field(default_factory=dict)  # acknowledged title -> id
    edits: Counter[int] = field(default_factory=Counter)  # acknowledged edits by article
    sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)  # the restarts are over

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(": no answer" in f for f in self.failed)


async def _client(
    http: httpx.AsyncClient, ann: Account, own: int, readable: list[int], load: Load, n: int
) -> None:
    rng = random.Random(n)
    while not load.done.is_set() and load.sent < MAX_REQUESTS:
        load.sent += 1
        operation = rng.choices(OPERATIONS, WEIGHTS)[0]
        title = f"{load.prefix} {n}-{load.sent}"
        if operation == "read":
            method, path, body = "GET", f"/api/v1/articles/{rng.choice(readable)}", None
        elif operation == "list":
            page = rng.randint(1, 3)
            method, path, body = "GET", f"/api/v1/articles?per_page=10&page={page}", None
        elif operation == "create":
            method, path = "POST", "/api/v1/articles"
            body = {"title": title, "content": "Written during a rolling restart."}
        else:
            method, path = "PATCH", f"/api/v1/articles/{own}"
            body = {"content": f"{load.prefix} edit {n}-{load.sent}"}
        try:
            response = await http.request(
                method, path, json=body, headers=ann.api_key if body else None
            )
        except httpx.HTTPError as error:
            load.failed.append(f"{method} {path}: no answer ({error!r})")
            continue
        load.statuses[(operation, response.status_code)] += 1
        if response.status_code >= 400:
            code = response.json()["error"]["code"]  # the one envelope, even here
            load.failed.append(f"{method} {path}: {response.status_code} {code}")
        elif operation == "create":
            load.created[title] = response.json()["id"]
            readable.append(response.json()["id"])
        elif operation == "edit":
            load.edits[own] += 1
        await asyncio.sleep(PAUSE)


async def _restart(instance: LiveServer) -> tuple[float, float]:
    """One step of a deploy: SIGTERM, wait for the exit, start again on the same port, wait
    until /readyz says 200, then until nginx passes requests to it again (the load's own, in
    the instance's access log). How long until ready, and until back in nginx's rotation."""
    started = time.monotonic()
    assert instance.proc is not None
    instance.proc.terminate()
    code = await asyncio.to_thread(instance.proc.wait, RESTART_TIMEOUT)
    assert code == 0, instance.log()[-3000:]
    await asyncio.to_thread(instance.start, RESTART_TIMEOUT)
    async with httpx.AsyncClient(base_url=instance.url, timeout=10) as probe:
        for _ in range(int(RESTART_TIMEOUT * 10)):
            if (await probe.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{instance.url} not ready again:\n{instance.log()[-3000:]}")
    ready = time.monotonic() - started
    for _ in range(int(RESTART_TIMEOUT * 10)):
        if _served_since_start(instance.log()):
            return ready, time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"nginx never passed a request to {instance.url} again")


def _served_since_start(log: str) -> bool:
    """Whether the instance's log shows an API request answered since its last start (nginx
    passes it requests again), not counting the probes of its own health and readiness."""
    since = log.rsplit("Running on http", 1)[-1]
    return re.search(r'hypercorn\.access .*"\w+ /api/', since) is not None


def _by_upstream(access_log: str, instances: list[LiveServer]) -> Counter[str]:
    """Answers by the instance that gave them (its index; the last upstream nginx tried),
    from nginx's access log."""
    ports = {f"127.0.0.1:{instance.port}": str(n) for n, instance in enumerate(instances)}
    found: Counter[str] = Counter()
    for line in access_log.splitlines():
        tried = re.search(r"upstream=(.*?) status=", line)
        if tried:
            last = tried[1].split(", ")[-1]
            found[ports.get(last, last)] += 1
    return found


async def test_a_rolling_restart_under_load_fails_no_request(
    live_server: LiveServers, nginx: Proxies, pg: asyncpg.Connection
) -> None:
    instances, proxy = start_deployed(live_server, nginx, INSTANCES)
    load = Load(prefix=f"rolling-{uuid.uuid4().hex[:8]}")
    took: list[tuple[float, float]] = []
    async with httpx.AsyncClient(base_url=proxy.url, timeout=CLIENT_TIMEOUT) as http:
        ann = await account(http)
        owned = [await publish(http, ann, title=f"{load.prefix} own {n}") for n in range(CLIENTS)]
        versions = {article["id"]: article["version"] for article in owned}
        readable = [article["id"] for article in owned]

        async def deploy() -> None:
            await asyncio.sleep(1.0)  # the load under way first
            for instance in instances:
                took.append(await _restart(instance))
            await asyncio.sleep(1.0)  # and on the restarted fleet for a moment
            load.done.set()

        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(
                deploy(),
                *(
                    _client(http, ann, article["id"], readable, load, n)
                    for n, article in enumerate(owned)
                ),
            ),
            INSTANCES * RESTART_TIMEOUT + 60,
        )
        elapsed = time.monotonic() - started
    await asyncio.sleep(1.5)  # nginx flushes its access log every second
    answered_by = _by_upstream(proxy.access_log(), instances)

    rows = await pg.fetch(
        "SELECT title, count(*) AS n FROM articles WHERE title LIKE $1 || ' %-%' GROUP BY title",
        load.prefix,
    )
    stored = {row["title"]: row["n"] for row in rows}
    final = {
        row["id"]: row["version"]
        for row in await pg.fetch(
            "SELECT id, version FROM articles WHERE id = ANY($1::bigint[])", list(versions)
        )
    }
    edits_applied = {i: final[i] - versions[i] for i in versions}
    by_status = Counter({f"{op} {status}": n for (op, status), n in load.statuses.items()})
    print(
        f"\nrolling restart of {INSTANCES} instances under load: {load.requests} requests in "
        f"{elapsed:.1f}s (restarts, ready / back in nginx's rotation after: "
        + ", ".join(f"{ready:.1f}s / {back:.1f}s" for ready, back in took)
        + "); "
        "by status: "
        + ", ".join(f"{key}: {n}" for key, n in sorted(by_status.items()))
        + f"; failed: {len(load.failed)} {load.failed}; answered by instance (nginx's "
        f"access log, last upstream tried): {dict(sorted(answered_by.items()))}; created "
        f"{len(load.created)}, stored {sum(stored.values())}; edits acknowledged "
        f"{sum(load.edits.values())}, applied {sum(edits_applied.values())}"
    )

    assert len(took) == INSTANCES
    for instance in instances:
        log = instance.log()
        assert "stopping: " in log  # each drained (service.greenlet_asgi.drain)
        assert "Traceback" not in log, log[-3000:]
    assert load.failed == []
    assert sorted(stored) == sorted(load.created)  # every acknowledged create, stored
    assert all(n == 1 for n in stored.values())  # and once
    assert edits_applied == {i: load.edits[i] for i in versions}


# The bulk worker: a backlog of process_article jobs, the worker stopped with SIGTERM while
# it drains them and a new one started, as a deploy replaces a worker.
ARTICLES = 30
SHUTDOWN_WAIT = "20"  # WORKER_SHUTDOWN_WAIT_SECONDS: running jobs may finish


def _bulk_worker(worker: Workers, redis_url: str, log: str) -> WorkerProcess:
    """A bulk worker with room for two jobs at a time: a slow drain, so the stop comes while
    most jobs are still queued."""
    return worker(
        REDIS_URL=redis_url,
        log=log,
        WORKER_ROLES="bulk",
        WORKER_MAX_JOBS="2",
        WORKER_SHUTDOWN_WAIT_SECONDS=SHUTDOWN_WAIT,
    )


PROCESSED_LINE = re.compile(r"article (\d+) version 1: (\w+)")
STARTED_LINE = re.compile(r"→ (process:\d+:\d+):process_article")
WAITING_LINE = re.compile(r"waiting up to \d+s for (\d+) running job")
LONG = content(0)  # about 1,500 characters
# Sixty times that: each job's CPU step takes about 0.4 s on a quiet core, long beside the
# moment between seeing a job start in the log and the signal arriving, so jobs are running
# when it comes (at twenty times, 0.2 s, a loaded machine once let both finish first).
BODY = LONG * 60


async def _processed(pg: asyncpg.Connection, ids: list[int]) -> int:
    return int(
        await pg.fetchval(
            "SELECT count(*) FROM articles WHERE id = ANY($1::bigint[]) AND status = 'processed'",
            ids,
        )
    )


async def test_a_bulk_worker_restarted_mid_drain_loses_no_job_and_runs_none_twice(
    live_server: LiveServers,
    worker: Workers,
    own_redis: EmbeddedRedis,
    pg: asyncpg.Connection,
) -> None:
    api = live_server(REDIS_URL=own_redis.url(), DB_POOL_SIZE="3", DB_MAX_OVERFLOW="2")
    queue = await create_pool(RedisSettings.from_dsn(own_redis.url()))
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
            ann = await account(http)
            articles = []
            for start in range(0, ARTICLES, 10):
                articles += await asyncio.gather(
                    *(
                        publish(http, ann, title=f"Backlog {n}", content=BODY)
                        for n in range(start, min(start + 10, ARTICLES))
                    )
                )
        ids = [article["id"] for article in articles]
        assert await queue.zcard(keys.QUEUE_BULK) == ARTICLES

        first = _bulk_worker(worker, own_redis.url(), "worker-first.log")
        for _ in range(3000):  # a few done and one running: the drain is under way
            log = first.log()
            done = len(PROCESSED_LINE.findall(log))
            if done >= 4 and len(STARTED_LINE.findall(log)) > done:
                break
            await asyncio.sleep(0.02)
        code = await asyncio.to_thread(first.terminate, 60)  # at once: the jobs are running
        stopped_at = done
        after_stop = await _processed(pg, ids)
        left = int(await queue.zcard(keys.QUEUE_BULK))
        second = _bulk_worker(worker, own_redis.url(), "worker-second.log")
        found = await wait_for_status(pg, ids, "processed", 120)
    finally:
        await queue.aclose()
    second.stop()

    runs: Counter[int] = Counter()
    outcomes: Counter[str] = Counter()
    starts: Counter[str] = Counter()
    for log in (first.log(), second.log()):
        for match in PROCESSED_LINE.finditer(log):
            runs[int(match[1])] += 1
            outcomes[match[2]] += 1
        starts.update(STARTED_LINE.findall(log))
    waiting = WAITING_LINE.search(first.log())
    running = int(waiting[1]) if waiting else 0
    by_first = sum(1 for m in PROCESSED_LINE.finditer(first.log()) if int(m[1]) in ids)
    print(
        f"\nbulk worker restarted mid-drain: {ARTICLES} process_article jobs; SIGTERM with "
        f"{stopped_at} processed by its log and {running} running, exit status {code}, "
        f"{after_stop} processed once it had exited ({by_first} by the first worker), {left} "
        f"still queued "
        f"for the second; in the "
        f"end {sum(s == 'processed' for s in found.values())} processed; runs per job: "
        f"{dict(Counter(runs[i] for i in ids))} (job starts logged: "
        f"{dict(Counter(starts.values()))}); outcomes: {dict(outcomes)}"
    )

    assert code == 0, first.log()[-3000:]
    assert 0 < left < ARTICLES  # stopped mid-drain
    assert found == {i: "processed" for i in ids}  # no job lost
    assert all(runs[i] == 1 for i in ids), runs  # none run twice
    assert len(starts) == ARTICLES and set(starts.values()) == {1}, starts
    assert running > 0  # jobs were running when the signal came
    assert ", 0 cancelled" in first.log()  # and they finished: none was cut

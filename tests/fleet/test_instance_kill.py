"""One of two instances behind nginx SIGKILLed under load: clients see no failed read and no
write that is lost or applied twice.

Concurrent clients send reads (articles and list pages) and writes (new articles with unique
titles, edits of an article of their own) through nginx; B is killed with SIGKILL while they
run. nginx passes a read that failed on B to A (``proxy_next_upstream error timeout``, and a
GET is idempotent), so every read is answered 200. It never passes a POST or PATCH on once
sent (``non_idempotent`` is not in ``proxy_next_upstream``), so a write B received is answered
502 when B dies under it, whether or not B committed it; one B never received (the
connection refused) goes to A. Then PostgreSQL holds every write that was acknowledged, and
none twice; every write that was not acknowledged got an error status, not a hang.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest

from service.cli.nginx import SHIPPED
from tests.conftest import LiveServers, Proxies
from tests.support.api import Account, account, publish
from tests.support.fleet import Fleet, kill, start

CLIENTS = 8  # concurrent clients, each with an article of its own to edit
REQUESTS = 320  # in all, over every client
KILL_AFTER = 100  # answered requests before B is killed
# Longer than nginx's proxy_read_timeout (30 s): a stuck request is answered 504 by nginx
# before the client gives up, and a client that gives up counts as a hang.
CLIENT_TIMEOUT = 45.0
RUN_TIMEOUT = 240.0  # the whole load, however busy the machine
WRITE_ERRORS = {502, 503, 504}  # what a write may get when its instance dies under it
OPERATIONS = ("read", "list", "create", "edit")
WEIGHTS = (4, 2, 2, 2)


@dataclass
class Edit:
    content: str
    acknowledged: bool


@dataclass
class Tally:
    """What the clients sent and what they were answered."""

    prefix: str
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    created: dict[str, int] = field(default_factory=dict)  # acknowledged title -> id
    not_created: list[str] = field(default_factory=list)  # titles answered an error
    edits: dict[int, list[Edit]] = field(default_factory=dict)  # article id -> its edits
    hangs: list[str] = field(default_factory=list)  # no answer: timeouts, broken connections
    errors: Counter[str] = field(default_factory=Counter)  # error answers by code
    sent: int = 0
    answered: int = 0
    kill_now: asyncio.Event = field(default_factory=asyncio.Event)  # set at KILL_AFTER answers

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + len(self.hangs)


@pytest.fixture
def fleet(live_server: LiveServers, nginx: Proxies) -> Fleet:
    return start(live_server, nginx)


def test_nginx_never_resends_a_write() -> None:
    """The premise of the test below, in the shipped file: nginx tries another instance on a
    connection error or timeout, never for a request that is not idempotent once sent."""
    directives = [
        line.strip().rstrip(";").split()[1:]
        for line in SHIPPED.read_text().splitlines()
        if line.strip().startswith("proxy_next_upstream ")
    ]
    assert len(directives) == 1
    assert "error" in directives[0]
    assert "non_idempotent" not in directives[0]


async def _client(
    http: httpx.AsyncClient, ann: Account, own: int, readable: list[int], tally: Tally, n: int
) -> None:
    rng = random.Random(n)
    tally.edits[own] = []
    while tally.sent < REQUESTS:
        tally.sent += 1
        operation = rng.choices(OPERATIONS, WEIGHTS)[0]
        title = content = ""
        try:
            if operation == "read":
                response = await http.get(f"/api/v1/articles/{rng.choice(readable)}")
            elif operation == "list":
                response = await http.get(f"/api/v1/articles?per_page=10&page={rng.randint(1, 3)}")
            elif operation == "create":
                title = f"{tally.prefix} {n}-{tally.sent}"
                response = await http.post(
                    "/api/v1/articles",
                    json={"title": title, "content": "Written under load."},
                    headers=ann.api_key,
                )
            else:
                content = f"{tally.prefix} edit {n}-{tally.sent}"
                response = await http.patch(
                    f"/api/v1/articles/{own}", json={"content": content}, headers=ann.api_key
                )
        except httpx.HTTPError as error:
            tally.hangs.append(f"{operation}: {error!r}")
            continue
        tally.answered += 1
        if tally.answered >= KILL_AFTER:
            tally.kill_now.set()
        tally.statuses[(operation, response.status_code)] += 1
        if response.status_code >= 400:
            tally.errors[response.json()["error"]["code"]] += 1  # the one envelope
        if operation == "create":
            if response.status_code == 201:
                tally.created[title] = response.json()["id"]
                readable.append(response.json()["id"])
            else:
                tally.not_created.append(title)
        elif operation == "edit":
            tally.edits[own].append(Edit(content, response.status_code == 200))


async def _upstreams(fleet: Fleet) -> tuple[int, Counter[str]]:
    """From nginx's access log (written through a buffer flushed every second): how many
    requests B answered, and by method those nginx passed on to A after they failed on B."""
    b, a = f"127.0.0.1:{fleet.b.port}", f"127.0.0.1:{fleet.a.port}"
    answered, retried = 0, Counter[str]()
    for _ in range(50):
        lines = fleet.nginx.access_log().splitlines()
        answered = sum(f"upstream={b} status=2" in line for line in lines)
        retried = Counter(
            line.split('"')[1].split()[0] for line in lines if f"upstream={b}, {a} " in line
        )
        if answered:
            break
        await asyncio.sleep(0.1)
    return answered, retried


async def test_an_instance_killed_under_load_loses_no_read_and_no_write(
    fleet: Fleet, pg: asyncpg.Connection
) -> None:
    tally = Tally(prefix=f"fleet-kill-{uuid.uuid4().hex[:8]}")
    async with httpx.AsyncClient(base_url=fleet.nginx.url, timeout=CLIENT_TIMEOUT) as http:
        ann = await account(http)
        owned = [
            (await publish(http, ann, title=f"{tally.prefix} own {n}")) for n in range(CLIENTS)
        ]
        versions = {article["id"]: article["version"] for article in owned}
        readable = [article["id"] for article in owned]
        killed_at = [0]  # answers before the kill

        async def killer() -> None:
            await tally.kill_now.wait()
            killed_at[0] = tally.answered
            await asyncio.to_thread(kill, fleet.b)

        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(
                killer(),
                *(
                    _client(http, ann, article["id"], readable, tally, n)
                    for n, article in enumerate(owned)
                ),
            ),
            RUN_TIMEOUT,
        )
        took = time.monotonic() - started
    by_b, retried = await _upstreams(fleet)

    rows = await pg.fetch(
        "SELECT title, count(*) AS n FROM articles WHERE title LIKE $1 || ' %-%' GROUP BY title",
        tally.prefix,
    )
    stored = {row["title"]: row["n"] for row in rows}
    duplicates = sorted(title for title, n in stored.items() if n > 1)
    missing = sorted(title for title in tally.created if title not in stored)
    applied_anyway = sorted(title for title in tally.not_created if title in stored)
    final = {
        row["id"]: row
        for row in await pg.fetch(
            "SELECT id, content, version FROM articles WHERE id = ANY($1::bigint[])",
            list(tally.edits),
        )
    }
    edits_acknowledged = sum(e.acknowledged for edits in tally.edits.values() for e in edits)
    edits_failed = sum(not e.acknowledged for edits in tally.edits.values() for e in edits)
    edits_applied = sum(row["version"] - versions[i] for i, row in final.items())

    by_status = Counter({f"{op} {status}": n for (op, status), n in tally.statuses.items()})
    print(
        f"\nfleet kill: {tally.requests} requests in {took:.1f}s, B killed after "
        f"{killed_at[0]} answers ({by_b} answered by B; passed on to A after failing on B: "
        f"{dict(retried)}); by status: "
        + ", ".join(f"{key}: {n}" for key, n in sorted(by_status.items()))
        + f"; writes acknowledged: {len(tally.created) + edits_acknowledged} "
        f"({len(tally.created)} created, {edits_acknowledged} edits), failed: "
        f"{len(tally.not_created) + edits_failed} ({len(tally.not_created)} creates, "
        f"{edits_failed} edits), failed but applied anyway: {len(applied_anyway)} creates, "
        f"{edits_applied - edits_acknowledged} edits, "
        f"duplicates: {len(duplicates)}, no answer: {len(tally.hangs)}; error codes: "
        f"{dict(tally.errors)}"
    )

    assert fleet.b.proc is not None and fleet.b.proc.poll() is not None  # B is dead
    assert by_b > 0  # B was serving before it died
    assert tally.requests == REQUESTS
    assert tally.hangs == []  # every request answered: no timeout, no broken connection
    for (operation, status), n in tally.statuses.items():
        if operation in ("read", "list"):
            assert status == 200, (operation, status, n)  # a failed read is retried on A
        elif operation == "create":
            assert status == 201 or status in WRITE_ERRORS, (operation, status, n)
        else:
            assert status == 200 or status in WRITE_ERRORS, (operation, status, n)
    assert missing == []  # acknowledged, hence stored
    assert duplicates == []  # never applied twice
    assert all(stored[title] == 1 for title in tally.created)
    for article_id, edits in tally.edits.items():
        row = final[article_id]
        applied = row["version"] - versions[article_id]
        acknowledged = sum(e.acknowledged for e in edits)
        # Every acknowledged edit was applied, and at most every failed one as well.
        assert acknowledged <= applied <= len(edits), (article_id, applied, edits)
        # The stored content is the last acknowledged edit, or a failed one sent after it.
        last = max((i for i, e in enumerate(edits) if e.acknowledged), default=-1)
        possible = [e.content for e in edits[last:]] if last >= 0 else [e.content for e in edits]
        if last < 0:
            possible.append("Some content.")  # no edit acknowledged: maybe none applied
        assert row["content"] in possible, (article_id, row["content"], edits)

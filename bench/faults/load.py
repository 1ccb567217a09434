"""The fault suite's load generator and the accounting of what it was answered.

``Load`` runs ``connections`` clients (asyncio tasks sharing one httpx client with as many
connections) of mixed reads and writes against the API until it is stopped or has sent
``max_requests``: article reads (``GET /api/v1/articles/{id}``, each answered 200 one view),
list pages (``GET /api/v1/articles?page=N``) and writes (``POST /api/v1/articles`` with an
API key). Every request becomes a ``Record``: when it was sent and answered (monotonic
clock), its status or the client-side error that replaced it, whether a 503 carried
``Retry-After``, its ``X-Cache`` and the article it read or created.

The functions below turn records into the report's figures; they are pure and tested on
small data (``tests/bench/test_faults.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import httpx

READ, LIST, WRITE = "read", "list", "write"
LIST_PAGES = 20
CONNECTIONS = 32
WRITES = 0.1  # share of article creations
LISTS = 0.1  # share of list pages
THINK = 0.05  # seconds between a client's requests


@dataclass
class Record:
    """One request and what came back (``status`` None: no answer, ``error`` says why)."""

    kind: str
    sent: float
    done: float
    status: int | None
    error: str = ""
    retry_after: bool = False
    cache: str = ""
    article: int | None = None


@dataclass
class Tally:
    """Answers by status, and the figures the report's columns need."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0  # 5xx
    unavailable_with_retry_after: int = 0  # 503 carrying Retry-After
    internal_errors: int = 0  # 500

    @property
    def answered(self) -> int:
        return self.requests - sum(self.errors.values())

    def statuses_text(self) -> str:
        parts = [f"{status}: {count}" for status, count in sorted(self.statuses.items())]
        parts += [f"{name}: {count}" for name, count in sorted(self.errors.items())]
        return ", ".join(parts)


def tally(records: Iterable[Record]) -> Tally:
    result = Tally()
    for record in records:
        result.requests += 1
        if record.status is None:
            result.errors[record.error or "error"] += 1
            continue
        result.statuses[record.status] += 1
        if record.status >= 500:
            result.server_errors += 1
        if record.status == 500:
            result.internal_errors += 1
        if record.status == 503 and record.retry_after:
            result.unavailable_with_retry_after += 1
    return result


def database_backed(record: Record) -> bool:
    """An answer PostgreSQL must have given: a write answered 201, or a read the cache did
    not hold (``X-Cache: MISS`` or ``BYPASS``) answered 200."""
    if record.kind == WRITE:
        return record.status == 201
    return record.status == 200 and record.cache in ("MISS", "BYPASS")


def redis_backed(record: Record) -> bool:
    """A read the response cache took part in again (``HIT`` or ``MISS``, not ``BYPASS``)."""
    return record.kind != WRITE and record.status == 200 and record.cache in ("HIT", "MISS")


def recovery_seconds(
    records: Iterable[Record], down: float, back: float, served: Callable[[Record], bool]
) -> float | None:
    """Seconds from ``back`` (the server restarted) to the first answer ``served`` says was
    given by it, among requests sent after ``down``; None if there was none."""
    answers = [r.done for r in records if r.sent >= down and r.done >= back and served(r)]
    return min(answers) - back if answers else None


def unanswered(records: Iterable[Record], before: float) -> int:
    """Requests sent before ``before`` that got no answer (reset, closed, timed out)."""
    return sum(1 for r in records if r.sent < before and r.status is None)


def in_flight(records: Iterable[Record], at: float) -> int:
    """Requests sent before ``at`` and answered (or failed) after it."""
    return sum(1 for r in records if r.sent < at <= r.done)


def views_answered(records: Iterable[Record]) -> Counter[int]:
    """Views per article: reads of one article answered 200."""
    return Counter(
        r.article for r in records if r.kind == READ and r.status == 200 and r.article is not None
    )


def view_difference(answered: Mapping[int, int], recorded: Mapping[int, int]) -> tuple[int, int]:
    """(lost, counted twice): per article, views answered but not in ``articles.views``, and
    views there beyond those answered."""
    lost = doubled = 0
    for article in set(answered) | set(recorded):
        difference = answered.get(article, 0) - recorded.get(article, 0)
        if difference > 0:
            lost += difference
        else:
            doubled -= difference
    return lost, doubled


def written(records: Iterable[Record]) -> list[int]:
    """Ids of the articles whose creation was answered 201."""
    return [r.article for r in records if r.kind == WRITE and r.status == 201 and r.article]


def lost_writes(answered: Sequence[int], stored: Iterable[int]) -> int:
    """Writes answered 201 whose article is not in PostgreSQL."""
    return len(set(answered) - set(stored))


class Load:
    """``connections`` clients reading and writing until ``stop()`` (use as ``async with``).

    ``writes`` and ``lists`` are the shares of writes and list pages, the rest reads one of
    ``read_ids``. Each client pauses ``think`` seconds between requests (and 0.1 s after an
    error or a 5xx, so an outage is not a busy loop), which keeps the load modest on a small
    machine.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        read_ids: Sequence[int],
        *,
        label: str,
        connections: int = CONNECTIONS,
        writes: float = WRITES,
        lists: float = LISTS,
        think: float = THINK,
        max_requests: int = 20_000,
        seed: int = 1,
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.read_ids = list(read_ids)
        self.label = label
        self.connections = connections
        self.writes = writes
        self.lists = lists
        self.think = think
        self.max_requests = max_requests
        self.seed = seed
        self.records: list[Record] = []
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._http: httpx.AsyncClient | None = None
        self._sent = 0

    async def __aenter__(self) -> Load:
        limits = httpx.Limits(
            max_connections=self.connections, max_keepalive_connections=self.connections
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url, limits=limits, timeout=httpx.Timeout(30.0)
        )
        self._tasks = [
            asyncio.create_task(self._client(random.Random(self.seed * 1000 + n), n))
            for n in range(self.connections)
        ]
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Send nothing more; wait (at most 60 s) for the requests in flight."""
        self._stopping.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=60)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._tasks = []
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _client(self, rng: random.Random, number: int) -> None:
        assert self._http is not None
        http = self._http
        sequence = 0
        while not self._stopping.is_set() and self._sent < self.max_requests:
            self._sent += 1
            sequence += 1
            draw = rng.random()
            article: int | None = None
            if draw < self.writes:
                kind = WRITE
                body = {
                    "title": f"Fault {self.label} {number}-{sequence}",
                    "content": "Written while the fault suite ran. " * 4,
                    "tags": ["faults"],
                }
                request = http.build_request(
                    "POST", "/api/v1/articles", json=body, headers={"API-Key": self.api_key}
                )
            elif draw < self.writes + self.lists:
                kind = LIST
                page = rng.randint(1, LIST_PAGES)
                request = http.build_request("GET", f"/api/v1/articles?page={page}&per_page=10")
            else:
                kind = READ
                article = rng.choice(self.read_ids)
                request = http.build_request("GET", f"/api/v1/articles/{article}")
            sent = time.monotonic()
            try:
                response = await http.send(request)
            except httpx.HTTPError as exc:
                self.records.append(Record(kind, sent, time.monotonic(), None, type(exc).__name__))
                await asyncio.sleep(0.1)
                continue
            if kind == WRITE and response.status_code == 201:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    article = int(response.json()["id"])
            self.records.append(
                Record(
                    kind,
                    sent,
                    time.monotonic(),
                    response.status_code,
                    retry_after="retry-after" in response.headers,
                    cache=response.headers.get("x-cache", ""),
                    article=article,
                )
            )
            await asyncio.sleep(0.1 if response.status_code >= 500 else self.think)

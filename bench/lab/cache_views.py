"""The cache with views flowing: does counting views empty it? (part of the caching claim)

A steady read load (``RATE`` req/s: 90% article reads spread over ``HOT`` articles, 10% list
page 1) against Newsdesk with its job worker running and flushing views every
``VIEW_FLUSH_SECONDS``; every answer's ``X-Cache`` is counted. A view is not an edit: the
flush moves only the popular ranking on, so article and list hits should stay near 100%
(the misses left are the first read after a TTL ends). Target: at least 97% hits.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import httpx

from bench.lab.core import Lab, Worker, hypercorn, running, sql

HOT = 200
RATE = 400  # requests per second, paced
FLUSH_SECONDS = "5"
ARTICLE = "/api/v1/articles/"
LIST = "/api/v1/articles?per_page=20"
TARGET = 0.97


async def _paced(base: str, seconds: float) -> dict[str, Counter[str]]:
    """``RATE`` req/s for ``seconds`` from 16 clients; ``X-Cache`` per kind of read."""
    seen: dict[str, Counter[str]] = {"article": Counter(), "list": Counter()}
    rng = random.Random(5)
    clients = 16
    interval = clients / RATE
    deadline = time.monotonic() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        next_at = time.monotonic()
        while next_at < deadline:
            kind = "list" if rng.random() < 0.1 else "article"
            path = LIST if kind == "list" else f"{ARTICLE}{rng.randint(1, HOT)}"
            response = await http.get(path)
            seen[kind][response.headers.get("x-cache", str(response.status_code))] += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        for number in range(1, HOT + 1):  # warm: every hot article and the list once
            await http.get(f"{ARTICLE}{number}")
        await http.get(LIST)
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return seen


def run(lab: Lab) -> dict[str, Any]:
    """Hit ratios of article and list reads under paced load with the view flush running."""
    seconds = 15.0 if lab.mode.quick else 60.0
    env = lab.env(VIEW_FLUSH_SECONDS=FLUSH_SECONDS)
    server = hypercorn(lab, "service.asgi:app", env, "cache-views")
    log = lab.work / "cache-views-worker.log"
    # INFO: arq logs each cron run, which is how the flushes are counted.
    worker = Worker("worker:PeriodicSettings", {**env, "LOG_LEVEL": "INFO"}, log)
    stored = f"SELECT coalesce(sum(views), 0) AS n FROM articles WHERE id <= {HOT}"
    before = int(sql(lab, stored)[0]["n"])
    with running(server, worker):
        lab.status("caching: hit ratio with views flowing")
        seen = asyncio.run(_paced(server.url, seconds))
        time.sleep(float(FLUSH_SECONDS) + 1)  # the last views flushed
    flushed = int(sql(lab, stored)[0]["n"]) - before
    if lab.bar is not None:
        lab.bar.update(1)
    flushes = log.read_text().count("cron:flush_views()")
    ratios = {
        kind: (counts["HIT"] / total if (total := sum(counts.values())) else 0.0)
        for kind, counts in seen.items()
    }
    return {
        "seconds": seconds,
        "rate": RATE,
        "flushes": flushes,
        "views_flushed": flushed,
        "counts": {kind: dict(counts) for kind, counts in seen.items()},
        "hit_ratio": ratios,
    }


def lines(data: dict[str, Any]) -> tuple[list[str], str]:
    """Report lines and a verdict clause for the caching section."""
    ratio = data["hit_ratio"]
    counts = data["counts"]
    text = [
        "",
        f"With views flowing ({data['rate']} reads/s for {data['seconds']:.0f} s over {HOT} hot "
        f"articles and list page 1, the worker flushing views every {FLUSH_SECONDS} s, "
        f"{data['flushes']} flushes moving {data.get('views_flushed', 0):,} views into "
        f"PostgreSQL): article hit ratio **{ratio['article']:.1%}** "
        f"({counts['article']}), list page 1 **{ratio['list']:.1%}** ({counts['list']}).",
    ]
    held = min(ratio.values()) >= TARGET
    verdict = (
        f"Counting views does not empty the cache: {min(ratio.values()):.1%} hits or more "
        "with the flush running"
        if held
        else f"Counting views still costs hits: {min(ratio.values()):.1%} with the flush running "
        f"(target {TARGET:.0%})"
    )
    return text, verdict

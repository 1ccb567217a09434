"""Claim: caching (Redis, 300 s for an article, 60 s for lists) makes Flask fast.

Newsdesk itself on the seeded articles, two servers side by side: the cache on, and the cache
off (``CACHE_ENABLED=false``: every read goes to PostgreSQL). Scenarios, 32 connections:
article hits (1,000 hot articles, warmed), article misses (random ids over every article, the
cache on: lookup, query and store), the same hot articles with no cache, and list page 1 with
and without the cache; and, against the article hit, a bare Quart handler doing one plain
Redis GET of a cached article's bytes (``bench/baselines/quart_redis.py``: the floor of a hit,
no rate limiting). Hits of one article are answered before Flask (``service/fastpath.py``);
list hits go through Flask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import redis

from bench.lab import cache_views, chart
from bench.lab.core import (
    Lab,
    hypercorn,
    load,
    random_ids_script,
    running,
    seeded,
    spread,
    summarise,
    table,
)

TITLE = "Caching: Redis hit vs miss vs no cache"
CLAIM = "Caching responses in Redis makes a Flask API faster and lightens the database."
CONNECTIONS = 32
HOT = 1_000
ARTICLE = "/api/v1/articles/"
LIST = "/api/v1/articles?per_page=20"


WARM = ("article hit", "list page 1 cached")
SCENARIOS = 6


def plan(lab: Lab) -> int:
    # hits always warm; the views-flowing run moves the bar once
    return SCENARIOS * lab.mode.rounds + (len(WARM) if lab.mode.quick else SCENARIOS) + 1


def _cached_key(lab: Lab, base: str) -> str:
    """The Redis key holding article 1's cached answer (read twice: stored, then a hit)."""
    for _ in range(2):
        httpx.get(f"{base}{ARTICLE}1", timeout=30).raise_for_status()
    with redis.Redis.from_url(lab.redis.url()) as client:
        keys: list[bytes] = client.keys("cache:*:article:1:*")
    assert len(keys) == 1, keys
    return keys[0].decode()


def run(lab: Lab) -> dict[str, Any]:
    count = seeded(lab)
    hot = random_ids_script(lab, ARTICLE, 1, HOT, "cache-hot")

    def cold(run: int) -> Path:
        """Ids no earlier run has asked for (a seed per run): misses."""
        return random_ids_script(lab, ARTICLE, HOT + 1, count, f"cache-cold-{run}", seed=run)

    on = hypercorn(lab, "service.asgi:app", lab.env(), "cache-on")
    off = hypercorn(lab, "service.asgi:app", lab.env(CACHE_ENABLED="false"), "cache-off")
    quart_env = lab.env(BENCH_KEY=_cached_key(lab, on.url))
    app = "bench.baselines.quart_redis:app"
    quart = hypercorn(lab, app, quart_env, "cache-quart", ready_path="/bench/hello")
    scenarios = {
        "article hit": (on, hot, "/"),
        "quart redis get": (quart, None, "/bench/cached"),
        "article miss": (on, None, "/"),
        "article, no cache": (off, hot, "/"),
        "list page 1 cached": (on, None, LIST),
        "list page 1, no cache": (off, None, LIST),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in scenarios}
    with running(on, off, quart):
        for name, (server, script, path) in scenarios.items():
            if lab.mode.quick and name not in WARM:
                continue
            lab.status(f"caching: warm-up {name}")
            if name == "article miss":
                script = cold(100)
            load(lab, server.url + path, CONNECTIONS, script=script, duration=1)
        for round_no in range(lab.mode.rounds):
            names = list(scenarios)
            shift = round_no % len(names)
            for name in names[shift:] + names[:shift]:
                lab.status(f"caching: {name}")
                server, script, path = scenarios[name]
                if name == "article miss":
                    script = cold(round_no + 1)
                runs[name].append(
                    load(lab, server.url + path, CONNECTIONS, script=script, pids=[server.pid])
                )
    return {
        "rows": [{"scenario": n, **summarise(r)} for n, r in runs.items()],
        "views_flowing": cache_views.run(lab),
    }


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    rows = {r["scenario"]: r for r in data["rows"]}
    chart.bars(
        chart_path,
        groups={
            "article": {
                "hit": spread(rows["article hit"]),
                "miss": spread(rows["article miss"]),
                "no cache": spread(rows["article, no cache"]),
            },
            "list page 1": {
                "hit": spread(rows["list page 1 cached"]),
                "no cache": spread(rows["list page 1, no cache"]),
            },
        },
        ylabel="req/s",
    )

    def rps(name: str) -> float:
        return float(rows[name]["rps"]["median"])

    hit_vs_none = rps("article hit") / rps("article, no cache")
    miss_vs_none = rps("article miss") / rps("article, no cache")
    lists = rps("list page 1 cached") / rps("list page 1, no cache")
    lines = table(data["rows"], "scenario", "scenario")
    lines += [
        "",
        f"Article hit / no cache: **{hit_vs_none:.2f}x**; article miss / no cache: "
        f"**{miss_vs_none:.2f}x** (what a miss costs on top of the query); list page 1 cached / "
        f"no cache: **{lists:.2f}x**.",
    ]
    if "quart redis get" in rows:  # runs from before this case have none
        floor = rps("article hit") / rps("quart redis get")
        lines.append(
            f"Newsdesk's article hit / a bare Quart handler's one Redis GET: **{floor:.2f}x** "
            "(the hit path also checks the generation and counts the rate limit and the view)."
        )
    miss = (
        f"a miss runs at {miss_vs_none:.2f}x of no cache at all, so a cache that mostly "
        "misses costs more than it saves"
        if miss_vs_none < 1
        else f"and even a miss ran at {miss_vs_none:.2f}x of no cache"
    )
    verdict = (
        f"True where reads repeat: a hit serves {hit_vs_none:.1f}x the requests of an uncached "
        f"article read and a cached list page {lists:.1f}x, "
        + ("but " if miss_vs_none < 1 else "")
        + f"{miss}."
    )
    if "views_flowing" in data:  # runs from before this case have none
        extra, clause = cache_views.lines(data["views_flowing"])
        lines += extra
        verdict += f" {clause}."
    return lines, verdict

"""Claim: async views let Flask "easily manage several concurrent requests" and lower latency.

Five ways to serve the same probes (``bench.probes``), and FastAPI as the framework users would
pick instead, one worker process each, the same PostgreSQL, the same Redis, the same pool size
(50, more than the sync stack's 32 threads, so the pool does not cap the 50 ms query):
Newsdesk's loop-native Flask; Flask's default async path (Hypercorn serving WSGI); asgiref's
``WsgiToAsgi``; sync Flask on gunicorn gthread with psycopg (the guides' stack); Quart; FastAPI
on Hypercorn and on uvicorn (uvloop, httptools). Every endpoint at every concurrency, apps
taking turns in an order that rotates each round; every run lasts 1 s (504 of them in the full
pass), and the next starts once the server has answered a request sent after it, so requests
wrk left queued (a server serving one request at a time goes on with them) never leak into the
next run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.lab import chart
from bench.lab.core import (
    Lab,
    Process,
    gunicorn,
    hypercorn,
    load,
    random_ids_script,
    running,
    summarise,
    uvicorn,
    warm_up,
    warmups,
)
from bench.probes import ROWS, cache_key, item_json

TITLE = "Async views and concurrency: five ways to serve Flask"
CLAIM = 'Async views let a Flask app "easily manage several concurrent requests" and lower latency.'
APPS = {
    "newsdesk": "Newsdesk: Flask in a greenlet on Hypercorn's loop",
    "flask-wsgi": "Flask async, Hypercorn as plain WSGI (Flask's default)",
    "wsgi-to-asgi": "Flask async under asgiref WsgiToAsgi",
    "gunicorn-sync": "sync Flask, gunicorn gthread x32, psycopg",
    "quart": "Quart",
    "fastapi": "FastAPI on Hypercorn",
    "fastapi-uvicorn": "FastAPI on uvicorn (uvloop, httptools)",
}
ENDPOINTS = {
    "hello": "/bench/hello",
    "pk-read": "/bench/items/",
    "slow-50ms": "/bench/slow",
    "fanout-seq": "/bench/fanout/seq",
    "fanout-gather": "/bench/fanout/gather",
    "cached": "/bench/cached/",
}
RANDOM_ID = ("pk-read", "cached")
# 1 s runs in both passes: 7 apps x 6 endpoints x 4 concurrencies x 3 rounds is 504 runs.
RUN_SECONDS = 1
# Larger than the sync stack's 32 threads, so the pool is not what caps the 50 ms query.
POOL = 50
QUICK_ENDPOINTS = ("pk-read", "slow-50ms")


def endpoints(lab: Lab) -> dict[str, str]:
    """Every endpoint, or (quick) the two that tell the models apart most."""
    if lab.mode.quick:
        return {e: p for e, p in ENDPOINTS.items() if e in QUICK_ENDPOINTS}
    return ENDPOINTS


def plan(lab: Lab) -> int:
    runs = len(endpoints(lab)) * len(lab.mode.concurrency) * lab.mode.rounds
    return len(APPS) * (runs + warmups(lab) * len(endpoints(lab)))


def prepare_probes(lab: Lab) -> None:
    """The probes' table and, in Redis, every item under its cache key (once)."""
    if lab.probes_ready:
        return

    async def fill() -> list[tuple[int, str]]:
        conn = await asyncpg.connect(lab.database_url)
        try:
            await conn.execute(
                "DROP TABLE IF EXISTS bench_items; "
                "CREATE TABLE bench_items "
                "(id integer PRIMARY KEY, name text NOT NULL, body text NOT NULL); "
                "INSERT INTO bench_items SELECT i, 'item ' || i, repeat('x', 200) "
                f"FROM generate_series(1, {ROWS}) i; ANALYZE bench_items;"
            )
            return [
                (r["id"], r["name"]) for r in await conn.fetch("SELECT id, name FROM bench_items")
            ]
        finally:
            await conn.close()

    rows = asyncio.run(fill())
    from redis import Redis

    client = Redis.from_url(lab.redis.url())
    with client.pipeline(transaction=False) as pipe:
        for item_id, name in rows:
            pipe.set(cache_key(item_id), item_json(item_id, name), ex=3600)
        pipe.execute()
    client.close()
    lab.probes_ready = True


def _start(lab: Lab, name: str) -> Process:
    env = lab.env(DB_POOL_SIZE=str(POOL))
    if name == "gunicorn-sync":
        return gunicorn(
            lab, "bench.baselines.gunicorn_sync:app", env, name, ready_path="/bench/hello"
        )
    if name == "fastapi-uvicorn":
        return uvicorn(lab, "bench.baselines.fastapi_app:app", env, name, ready_path="/bench/hello")
    app = {
        "newsdesk": "bench.newsdesk_app:app",
        "flask-wsgi": "bench.baselines.flask_wsgi:app",
        "wsgi-to-asgi": "bench.baselines.wsgi_to_asgi:app",
        "quart": "bench.baselines.quart_app:app",
        "fastapi": "bench.baselines.fastapi_app:app",
    }[name]
    return hypercorn(lab, app, env, name, ready_path="/bench/hello")


def run(lab: Lab) -> dict[str, Any]:
    lab.status("serving: seeding the probe table")
    prepare_probes(lab)
    scripts: dict[str, Path | None] = {
        endpoint: random_ids_script(lab, path, 1, ROWS, endpoint) if endpoint in RANDOM_ID else None
        for endpoint, path in ENDPOINTS.items()
    }
    servers = {name: _start(lab, name) for name in APPS}
    runs: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    names = list(APPS)
    with running(*servers.values()):
        for endpoint, path in endpoints(lab).items():
            for name in names:
                lab.status(f"serving: warm-up {endpoint} {name}")
                url = servers[name].url + ("/" if scripts[endpoint] else path)
                warm_up(lab, url, 16, script=scripts[endpoint])
                httpx.get(servers[name].url + "/bench/hello", timeout=300)  # leftovers served
            for round_no in range(lab.mode.rounds):
                shift = round_no % len(names)
                order = names[shift:] + names[:shift]
                for connections in lab.mode.concurrency:
                    for name in order:
                        lab.status(f"serving: {endpoint} c={connections} {name}")
                        server = servers[name]
                        url = server.url + ("/" if scripts[endpoint] else path)
                        figures = load(
                            lab,
                            url,
                            connections,
                            script=scripts[endpoint],
                            pids=[server.pid],
                            duration=RUN_SECONDS,
                            settle=server.url + "/bench/hello",
                        )
                        runs.setdefault((endpoint, name, connections), []).append(figures)
    rows = [
        {"endpoint": e, "app": a, "connections": c, **summarise(r)} for (e, a, c), r in runs.items()
    ]
    return {
        "rows": rows,
        "concurrency": list(lab.mode.concurrency),
        "endpoints": list(endpoints(lab)),
    }


def _rps(data: dict[str, Any], endpoint: str, app: str, connections: int) -> float:
    for row in data["rows"]:
        if (row["endpoint"], row["app"], row["connections"]) == (endpoint, app, connections):
            return float(row["rps"]["median"])
    return float("nan")


def _ahead(newsdesk: float, fastapi: dict[str, float]) -> str:
    """Where FastAPI is still ahead of Newsdesk by more than 3% (the runs' noise), said."""
    ahead = [server for server, rps in fastapi.items() if rps > 1.03 * newsdesk]
    return f" (FastAPI still ahead on {' and '.join(ahead)})." if ahead else "."


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    """Markdown lines and the verdict."""
    top = max(data["concurrency"])
    shown = data["endpoints"]
    chart.lines_by_panel(
        chart_path,
        panels=list(shown),
        series={
            app: {
                endpoint: [(c, _rps(data, endpoint, app, c)) for c in data["concurrency"]]
                for endpoint in shown
            }
            for app in APPS
        },
        labels=APPS,
        xlabel="connections",
        ylabel="req/s",
    )
    lines = [
        "| endpoint | app | conns | req/s median (min to max) | p50 ms | p99 ms | errors "
        "| peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for endpoint in shown:
        for connections in data["concurrency"]:
            for app in APPS:
                row = next(
                    r
                    for r in data["rows"]
                    if (r["endpoint"], r["app"], r["connections"]) == (endpoint, app, connections)
                )
                rps = row["rps"]
                lines.append(
                    f"| {endpoint} | {app} | {connections} | {rps['median']:,.0f} "
                    f"({rps['min']:,.0f} to {rps['max']:,.0f}) | {row['p50_ms']:.1f} | "
                    f"{row['p99_ms']:.1f} | {row['errors']} | {row['rss_mib']:.0f} |"
                )
    nd_slow = _rps(data, "slow-50ms", "newsdesk", top)
    default_slow = _rps(data, "slow-50ms", "flask-wsgi", top)
    sync_slow = _rps(data, "slow-50ms", "gunicorn-sync", top)
    nd_read = _rps(data, "pk-read", "newsdesk", top)
    default_read = _rps(data, "pk-read", "flask-wsgi", top)
    fanout = ""
    if "fanout-gather" in shown:
        gather = _rps(data, "fanout-gather", "newsdesk", top)
        fanout = (
            f"; fan-out (3 queries of 20 ms) with `asyncio.gather` vs one after another on "
            f"Newsdesk: {gather / _rps(data, 'fanout-seq', 'newsdesk', top):.2f}x"
        )
    lines += [
        "",
        f"At {top} connections: slow query (50 ms in PostgreSQL) Newsdesk "
        f"{nd_slow:,.0f} req/s vs {sync_slow:,.0f} on the guides' sync stack "
        f"({nd_slow / sync_slow:.2f}x) and {default_slow:,.0f} on Flask's default async path "
        f"({nd_slow / default_slow:.2f}x); primary-key read Newsdesk {nd_read:,.0f} vs "
        f"{default_read:,.0f} on the default path ({nd_read / default_read:.2f}x){fanout}.",
    ]
    fastapi_read = _rps(data, "pk-read", "fastapi", top)
    uvicorn_read = _rps(data, "pk-read", "fastapi-uvicorn", top)
    quart_read = _rps(data, "pk-read", "quart", top)
    lines.append(
        f"\nPrimary-key read at {top} connections against the frameworks users would pick "
        f"instead: Newsdesk {nd_read:,.0f} req/s, Quart {quart_read:,.0f} "
        f"({nd_read / quart_read:.2f}x), FastAPI on Hypercorn {fastapi_read:,.0f} "
        f"({nd_read / fastapi_read:.2f}x), FastAPI on uvicorn {uvicorn_read:,.0f} "
        f"({nd_read / uvicorn_read:.2f}x)."
    )
    worse = default_slow < sync_slow
    gain = nd_slow / sync_slow
    verdict = (
        f"Async views do not make Flask scale by themselves: on a 50 ms query at {top} "
        f"connections Flask's default async path serves {default_slow / sync_slow:.2f}x the "
        "guides' sync stack"
        + (" (worse than not using them)" if worse else "")
        + f"; served on one event loop with shared pools (Newsdesk) they serve {gain:.2f}x of it"
        + (
            ", the gain showing once connections outnumber the sync stack's 32 threads."
            if gain >= 1.1
            else ", no more while the sync stack's 32 threads cover the connections."
        )
        + f" On a primary-key read Newsdesk serves {nd_read / fastapi_read:.2f}x FastAPI on the "
        f"same Hypercorn and {nd_read / uvicorn_read:.2f}x FastAPI on uvicorn"
        + _ahead(nd_read, {"Hypercorn": fastapi_read, "uvicorn": uvicorn_read})
    )
    return lines, verdict

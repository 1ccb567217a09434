"""Claim: scale horizontally: run more instances behind a load balancer.

The whole Newsdesk cluster on loopback (``service.cli.cluster``, as ``python -m service
cluster`` runs it): three API instances (``python -m service serve``, one Hypercorn worker
each), PostgreSQL as a primary and a streaming replica (commits wait for it), Redis under
Sentinel, the interactive, bulk and periodic workers; no failover controller. Its settings are
production's but for the rate limits (every request comes from the one address nginx
forwards) and a patient ``CACHE_TIMEOUT`` of 2 s, as the test suite's (on 2 shared cores a
Redis answer can take longer than 0.25 s, and the breaker would then measure reads that bypass
the cache). In front, nginx with the file operators copy, ``deploy/nginx/newsdesk.conf``
(upstream keep-alive, round robin, buffering, access log; only the ports and the log path are
the lab's, ``service.cli.nginx``), one worker process, started again with 1, 2 and 3 of the
instances as upstreams (the others stay up, idle), and one instance without nginx for the
balancer's own cost. 100,000 articles (10,000 in the quick pass) seeded with ``python -m
service seed`` against the primary. Every setup gets the same news mix from one wrk script
(the same requests in the same order), 64 connections, runs of 10 s (3 s in the quick pass)
after one run that fills the caches: per 1,000 requests 800 article reads skewed to the newest
(the newest 1% of the articles take about a fifth of them), 110 list pages (most page 1, some
pages 2 to 5), 50 lists by tag, 35 articles written with an API key (each one moves the lists'
cache generation on and queues its processing on the bulk worker) and 5 logins (argon2id). The
setups take turns within each round, so a slower minute of the machine falls on all of them.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.lab import chart
from bench.lab.core import ROOT, Lab, load, spread, sql, summarise, warm_up, warmups
from service.cli.cluster import Cluster
from service.cli.nginx import Nginx
from service.cli.seed import SEED_PASSWORD, TAGS, seed_email

TITLE = "Horizontal scaling: 1, 2 and 3 instances behind nginx"
CLAIM = "Run several app instances behind a load balancer (nginx) to scale out."
CONNECTIONS = 64
PROBE = "news mix"
DIRECT = "1 instance, no nginx"
# Requests per 1,000 of the mix, in the order the script draws them.
MIX = (("read", 800), ("list", 110), ("tag", 50), ("write", 35), ("login", 5))
SKEW = 3  # article id = newest - span * u**SKEW: P(among the newest share s) = s ** (1/SKEW)
AUTHORS = 20  # seed authors; the logins take turns among them
# Generous limits: every request of the run comes from the one address nginx forwards. A
# patient cache timeout, as the test suite's: on 2 shared cores a Redis answer can take longer
# than production's 0.25 s, and the breaker would then measure reads that bypass the cache.
UNLIMITED = "100000000/minute"
ENV = {
    "CACHE_TIMEOUT": "2",
    "ENV": "test",
    "PASSWORD_RESET_URL": "http://127.0.0.1/reset-password#token={token}",
    "RATE_LIMIT_READ": UNLIMITED,
    "RATE_LIMIT_WRITE": UNLIMITED,
    "RATE_LIMIT_LOGIN_IP": UNLIMITED,
    "RATE_LIMIT_LOGIN_EMAIL": UNLIMITED,
    "RATE_LIMIT_REGISTER": UNLIMITED,
}
_ACCESS = re.compile(r'^\S+ "(\S+) (\S+)[^"]*" (\d{3}) ', re.M)


def articles(lab: Lab) -> int:
    """How many articles are seeded: enough for a long tail of articles read once, which miss
    the cache as they would on a news site."""
    return 10_000 if lab.mode.quick else 100_000


def duration(lab: Lab) -> int:
    """Seconds per load run: longer than the lab's, so that each run holds a fair number of the
    mix's rare requests (35 writes and 5 logins per 1,000)."""
    return 3 if lab.mode.quick else 10


def setups(lab: Lab) -> list[tuple[str, int]]:
    """(label, instances); the direct run (no nginx) is left out of the quick pass."""
    balanced = [(f"nginx + {n}", n) for n in (1, 2, 3)]
    return balanced if lab.mode.quick else [(DIRECT, 1), *balanced]


def plan(lab: Lab) -> int:
    # One priming run, then per setup its warm-up and its rounds.
    return 1 + len(setups(lab)) * (lab.mode.rounds + warmups(lab))


def thresholds(mix: tuple[tuple[str, int], ...] = MIX) -> list[tuple[str, int]]:
    """Each kind of request with the cumulative share (per 1,000) that draws it."""
    total = 0
    drawn = []
    for kind, share in mix:
        total += share
        drawn.append((kind, total))
    if total != 1000:
        raise ValueError(f"the mix adds up to {total} per 1,000, not 1,000")
    return drawn


def mix_lua(
    first_id: int,
    last_id: int,
    api_key: str,
    *,
    authors: int,
    seed: int = 1,
    mix: tuple[tuple[str, int], ...] = MIX,
) -> str:
    """The wrk script of the news mix (``mix``: requests per 1,000 by kind, in ``MIX``'s
    order) over articles ``first_id`` to ``last_id``: the same requests in the same order for
    the same ``seed``."""
    limit = dict(thresholds(mix))
    tags = ", ".join(f'"{t}"' for t in TAGS)
    return f"""math.randomseed({seed})
local first, last = {first_id}, {last_id}
local span = last - first + 1
local tags = {{{tags}}}
local written = 0
request = function()
  local r = math.random(1000)
  if r <= {limit["read"]} then
    local id = last - math.floor(span * math.random() ^ {SKEW})
    return wrk.format("GET", "/api/v1/articles/" .. id)
  elseif r <= {limit["list"]} then
    if math.random(10) == 1 then
      return wrk.format("GET", "/api/v1/articles?page=" .. math.random(2, 5))
    end
    return wrk.format("GET", "/api/v1/articles")
  elseif r <= {limit["tag"]} then
    return wrk.format("GET", "/api/v1/articles?tag=" .. tags[math.random(#tags)])
  elseif r <= {limit["write"]} then
    written = written + 1
    local tag = tags[math.random(#tags)]
    local body = '{{"title":"Lab dispatch ' .. written .. ' on ' .. tag .. '",'
      .. '"content":"The council met on Tuesday to discuss the ' .. tag .. ' budget. '
      .. 'Residents asked for more time to comment. A vote is expected next month.",'
      .. '"tags":["' .. tag .. '"]}}'
    local headers = {{["Content-Type"] = "application/json", ["API-Key"] = "{api_key}"}}
    return wrk.format("POST", "/api/v1/articles", headers, body)
  else
    local email = "seed-author-" .. math.random({authors}) .. "@example.com"
    local body = '{{"email":"' .. email .. '","password":"{SEED_PASSWORD}"}}'
    local headers = {{["Content-Type"] = "application/json"}}
    return wrk.format("POST", "/api/v1/auth/login", headers, body)
  end
end
"""


def failures(access_log: str) -> dict[str, int]:
    """Answers other than 2xx and 3xx in an access log of the shipped format, counted by
    method, route (article ids and query strings left out) and status. 499 (the client closed
    the connection before the answer) is left out: it is wrk ending a run with requests in
    flight, one per connection."""
    found: Counter[str] = Counter()
    for method, target, status in _ACCESS.findall(access_log):
        if status[0] in "23" or status == "499":
            continue
        route = re.sub(r"/\d+$", "/{id}", target.split("?", 1)[0])
        found[f"{method} {route} {status}"] += 1
    return dict(sorted(found.items()))


def verdict(
    one: float, two: float, three: float, *, busy: float, cores: tuple[float, float, float]
) -> str:
    """The claim's verdict from the mix's req/s behind nginx with 1, 2 and 3 instances, how
    busy the machine's cores were (0 to 1) with one instance and the cores the instances used
    with 1, 2 and 3: more instances add capacity only while there is CPU for them."""
    gain = max(two, three) / one
    if gain <= 1.05:
        headline = "Scaling out did not pay on one machine"
    elif gain < 1.5:
        headline = "Scaling out on one machine gained little"
    else:
        headline = "Scaling out works up to the cores there are"
    figures = (
        f"behind nginx, with the whole cluster (primary and replica, Redis under Sentinel, the "
        f"workers) and the load generator on the same 2 cores, 2 instances gave {two / one:.2f}x "
        f"the requests of one and 3 gave {three / one:.2f}x"
    )
    used = f"{cores[0]:.2f}, {cores[1]:.2f} and {cores[2]:.2f} cores"
    if busy >= 0.9:
        why = (
            f"with one instance the cores were already {busy:.0%} busy, so more instances "
            f"could only take CPU from the machine's other processes (the instances used "
            f"{used}). Instances scale CPU-bound work only with cores, or machines, of their own."
        )
    else:
        why = (
            f"with one instance the cores were {busy:.0%} busy, and the instances used {used}. "
            "CPU-bound work scales with idle cores, not with processes."
        )
    return f"{headline}: {figures}; {why}"


def busy(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    """The share of the machine's CPU time that was not idle between two readings of
    ``psutil.cpu_times()`` (as dicts): 0 to 1, over all cores."""
    spent = {k: after[k] - before[k] for k in before}
    total = sum(spent.values())
    idle = spent.get("idle", 0.0) + spent.get("iowait", 0.0)
    return (total - idle) / total if total > 0 else 0.0


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by the processes ``pids`` and their children (an instance's
    master and its Hypercorn worker)."""
    used = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    used += times.user + times.system
    return used


def _measured(lab: Lab, url: str, script: Path, pids: list[int]) -> dict[str, float]:
    """One load run, with how busy the machine's cores were (``cpu_busy``, 0 to 1) and how
    many cores the instances under test used (``app_cores``) meanwhile."""
    machine, app, started = psutil.cpu_times()._asdict(), cpu_seconds(pids), time.monotonic()
    figures = load(lab, url, CONNECTIONS, script=script, pids=pids, duration=duration(lab))
    elapsed = time.monotonic() - started
    figures["cpu_busy"] = busy(machine, psutil.cpu_times()._asdict())
    figures["app_cores"] = (cpu_seconds(pids) - app) / elapsed
    return figures


def _seed(primary_url: str, count: int) -> None:
    command = [sys.executable, "-m", "service", "seed", "--count", str(count)]
    command += ["--authors", str(AUTHORS), "--no-progress"]
    env = {**os.environ, **ENV, "DATABASE_URL": primary_url}
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)


def _api_key(base: str) -> str:
    """An API key of the first seed author's, made through the API (login, then a key)."""
    with httpx.Client(base_url=base, timeout=30) as http:
        login = {"email": seed_email(1), "password": SEED_PASSWORD}
        response = http.post("/api/v1/auth/login", json=login)
        response.raise_for_status()
        token = response.json()["token"]
        response = http.post(
            "/api/v1/api-keys", json={"name": "lab"}, headers={"Authorization": f"Bearer {token}"}
        )
        response.raise_for_status()
        return str(response.json()["key"])


def run(lab: Lab) -> dict[str, Any]:
    work = lab.work / "scaling"
    cluster = Cluster(work / "cluster", instances=3, failover=False, env=ENV)
    lab.status("scaling: starting the cluster")
    cluster.start()
    try:
        count = articles(lab)
        lab.status(f"scaling: seeding {count:,} articles")
        _seed(cluster.postgres.primary_url, count)
        primary = cluster.postgres.primary_url
        first, last = sql(lab, "SELECT min(id), max(id) FROM articles", primary)[0]
        script = work / "news-mix.lua"
        script.write_text(mix_lua(first, last, _api_key(cluster.nginx_url), authors=AUTHORS))
        instances = cluster.instances
        lab.status("scaling: priming the caches")
        load(lab, cluster.nginx_url + "/", CONNECTIONS, script=script, duration=duration(lab))
        runs: dict[str, list[dict[str, float]]] = {label: [] for label, _ in setups(lab)}
        refused: dict[str, Counter[str]] = {label: Counter() for label, _ in setups(lab)}
        for round_no in range(lab.mode.rounds):
            order = setups(lab) if round_no % 2 == 0 else setups(lab)[::-1]
            for label, n in order:
                lab.status(f"scaling: {label}, round {round_no + 1}")
                balancer = None
                pids = [i.pid for i in instances[:n]]
                try:
                    if label != DIRECT:
                        upstreams = [f"127.0.0.1:{i.port}" for i in instances[:n]]
                        balancer = Nginx(work / f"nginx-{n}-{round_no}", upstreams)
                        balancer.wait_listening()
                        balancer.process.wait_ready(balancer.url + "/healthz", 30)
                    url = (balancer.url if balancer else instances[0].url) + "/"
                    if round_no == 0:
                        warm_up(lab, url, CONNECTIONS, script=script)
                    runs[label].append(_measured(lab, url, script, pids))
                finally:
                    if balancer is not None:
                        balancer.stop()
                        refused[label].update(failures(balancer.access_log()))
        written = sql(lab, "SELECT count(*) FROM articles", primary)[0][0]
    finally:
        cluster.stop()
    rows = [
        {
            "setup": label,
            "instances": n,
            "probe": PROBE,
            **summarise(runs[label]),
            "cpu_busy": statistics.median(r["cpu_busy"] for r in runs[label]),
            "app_cores": statistics.median(r["app_cores"] for r in runs[label]),
            # No access log without nginx: wrk's error count only.
            "refused": None if label == DIRECT else dict(refused[label]),
        }
        for label, n in setups(lab)
    ]
    return {"articles": count, "written": written - count, "mix": dict(MIX), "rows": rows}


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    rows = data["rows"]
    chart.bars(
        chart_path,
        groups={PROBE: {r["setup"]: spread(r) for r in rows}},
        ylabel="req/s",
    )
    lines = [
        "| setup | req/s median (min to max) | p50 ms | p99 ms | errors | refused by route | "
        "cores busy | instances' cores |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r["refused"] is None:
            refused = "(no nginx, no access log)"
        else:
            refused = ", ".join(f"{k}: {v}" for k, v in r["refused"].items()) or "none"
        lines.append(
            f"| {r['setup']} | {r['rps']['median']:,.0f} "
            f"({r['rps']['min']:,.0f} to {r['rps']['max']:,.0f}) | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['errors']} | {refused} | {r['cpu_busy']:.0%} | "
            f"{r['app_cores']:.2f} |"
        )

    def row(setup: str) -> dict[str, Any]:
        return dict(next(r for r in rows if r["setup"] == setup))

    def rps(setup: str) -> float:
        return float(row(setup)["rps"]["median"])

    one, two, three = (rps(f"nginx + {n}") for n in (1, 2, 3))
    balancer_cost = ""
    if any(r["setup"] == DIRECT for r in rows):
        balancer_cost = f"; nginx + 1 / no nginx = {one / rps(DIRECT):.2f}x"
    lines += [
        "",
        f"News mix: nginx + 2 / nginx + 1 = **{two / one:.2f}x**, nginx + 3 / nginx + 1 "
        f"= **{three / one:.2f}x**{balancer_cost}. {data['articles']:,} seeded articles; "
        f"{data['written']:,} more written during the runs. Errors are wrk's (answers other "
        "than 2xx or 3xx, and socket errors) in the measured runs; refused by route counts "
        "the answers other than 2xx or 3xx in nginx's access log, warm-ups included; cores "
        "busy is the share of the machine's CPU time that was not idle during the runs (every "
        "process on it), instances' cores the CPU seconds per second of the instances under "
        "test. On 2 cores the instances, nginx, wrk, both PostgreSQL servers, Redis and its "
        "Sentinels and the workers all share the same CPUs: this shows how much a second "
        "process per core gains and what the balancer costs, not how a cluster of machines "
        "scales.",
    ]
    cores = [float(row(f"nginx + {n}")["app_cores"]) for n in (1, 2, 3)]
    busy = float(row("nginx + 1")["cpu_busy"])
    return lines, verdict(one, two, three, busy=busy, cores=(cores[0], cores[1], cores[2]))

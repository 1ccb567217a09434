"""Claim: scale horizontally: run more instances behind a load balancer.

Three Newsdesk instances (``bench.newsdesk_app``, one Hypercorn worker each) behind nginx
on loopback, configured by the file operators copy, ``deploy/nginx/newsdesk.conf`` (upstream
keep-alive, round robin, buffering, access log; only the ports and the log path are the
lab's, ``service.cli.nginx``), with one nginx worker process; nginx restarted with 1, 2 and 3 of
them as upstreams, and one instance without nginx for the balancer's own cost. A JSON hello
(CPU in the app only) and a primary-key read, 64 connections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.lab import chart, serving
from bench.lab.core import (
    Lab,
    Process,
    hypercorn,
    load,
    random_ids_script,
    running,
    spread,
    summarise,
    warm_up,
    warmups,
)
from bench.probes import ROWS
from service.cli import nginx as shipped_nginx
from service.cli.embedded import free_port

TITLE = "Horizontal scaling: 1, 2 and 3 instances behind nginx"
CLAIM = "Run several app instances behind a load balancer (nginx) to scale out."
CONNECTIONS = 64
PROBES = {"hello": "/bench/hello", "pk-read": "/bench/items/"}


def nginx(lab: Lab, upstreams: list[Process]) -> Process:
    """nginx on a free loopback port balancing over ``upstreams``, configured by the shipped
    ``deploy/nginx/newsdesk.conf`` (rendered with the lab's ports by ``service.cli.nginx``)."""
    port = free_port()
    work = lab.work / f"nginx-{len(upstreams)}"
    conf = shipped_nginx.write(
        work, [f"127.0.0.1:{u.port}" for u in upstreams], f"127.0.0.1:{port}", workers=1
    )
    binary = shipped_nginx.nginx_binary() or "nginx"
    command = [binary, "-p", str(work), "-c", str(conf), "-g", "daemon off;"]
    return Process(command, {}, work / "nginx.log", port=port, ready_path="/bench/hello")


def probes(lab: Lab) -> dict[str, str]:
    return {"pk-read": PROBES["pk-read"]} if lab.mode.quick else PROBES


def setups(lab: Lab) -> list[tuple[str, int]]:
    """(label, instances); the direct run (no nginx) is left out of the quick pass."""
    balanced = [(f"nginx + {n}", n) for n in (1, 2, 3)]
    return balanced if lab.mode.quick else [("1 instance, no nginx", 1), *balanced]


def plan(lab: Lab) -> int:
    return len(setups(lab)) * len(probes(lab)) * (lab.mode.rounds + warmups(lab))


def run(lab: Lab) -> dict[str, Any]:
    script = random_ids_script(lab, PROBES["pk-read"], 1, ROWS, "scale-ids")
    serving.prepare_probes(lab)
    instances = [
        hypercorn(
            lab, "bench.newsdesk_app:app", lab.env(), f"instance-{n}", ready_path="/bench/hello"
        )
        for n in range(3)
    ]
    rows = []
    with running(*instances):
        for label, n in setups(lab):
            balancer = nginx(lab, instances[:n]) if label.startswith("nginx") else None
            target = balancer.url if balancer else instances[0].url
            pids = [i.pid for i in instances[:n]]
            try:
                for probe, path in probes(lab).items():
                    lab.status(f"scaling: {label} {probe}")
                    lua = script if probe == "pk-read" else None
                    url = target + ("/" if lua else path)
                    warm_up(lab, url, CONNECTIONS, script=lua)
                    runs = [
                        load(lab, url, CONNECTIONS, script=lua, pids=pids)
                        for _ in range(lab.mode.rounds)
                    ]
                    rows.append({"setup": label, "instances": n, "probe": probe, **summarise(runs)})
            finally:
                if balancer:
                    balancer.stop()
    return {"rows": rows}


def section(data: dict[str, Any], chart_path: Path) -> tuple[list[str], str]:
    rows = data["rows"]
    chart.bars(
        chart_path,
        groups={
            probe: {r["setup"]: spread(r) for r in rows if r["probe"] == probe}
            for probe in {r["probe"]: None for r in rows}
        },
        ylabel="req/s",
    )
    lines = [
        "| probe | setup | req/s median (min to max) | p50 ms | p99 ms | errors |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['probe']} | {r['setup']} | {r['rps']['median']:,.0f} "
            f"({r['rps']['min']:,.0f} to {r['rps']['max']:,.0f}) | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['errors']} |"
        )

    def rps(setup: str, probe: str) -> float:
        return float(
            next(r["rps"]["median"] for r in rows if r["setup"] == setup and r["probe"] == probe)
        )

    one, two, three = (rps(f"nginx + {n}", "pk-read") for n in (1, 2, 3))
    balancer_cost = ""
    if any(r["setup"] == "1 instance, no nginx" for r in rows):
        direct = rps("1 instance, no nginx", "pk-read")
        balancer_cost = f"; nginx + 1 / no nginx = {one / direct:.2f}x"
    lines += [
        "",
        f"Primary-key read: nginx + 2 / nginx + 1 = **{two / one:.2f}x**, nginx + 3 / nginx + 1 "
        f"= **{three / one:.2f}x**{balancer_cost}. On 2 cores the "
        "instances, nginx, wrk, PostgreSQL and Redis all share the same CPUs: this shows how "
        "much a second process per core gains and what the balancer costs, not how a cluster "
        "of machines scales. nginx runs the shipped `deploy/nginx/newsdesk.conf` (one worker "
        "process, loopback ports).",
    ]
    third = (
        "a third, with no core of its own, added nothing"
        if three <= two * 1.05
        else f"a third still added {three / two:.2f}x"
    )
    verdict = (
        f"Scaling out works up to the cores there are: behind nginx on 2 cores a second "
        f"instance gave {two / one:.2f}x the requests of one, and {third}."
    )
    return lines, verdict

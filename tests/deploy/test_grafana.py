"""deploy/grafana/newsdesk.json: every PromQL expression of the dashboard names only metrics
that a running API instance (two Hypercorn workers) and a running job worker expose."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from service.cli.embedded import free_port
from tests.conftest import Workers, server_env
from tests.jobs.test_tasks import wait_for_status
from tests.support.api import account, publish
from tests.support.databases import ROOT, ServerStack
from tests.support.metrics import Exposition, ascrape
from tests.support.serve import ServeProcess

DASHBOARD = ROOT / "deploy" / "grafana" / "newsdesk.json"
README = ROOT / "README.md"
# Series Prometheus writes itself for each target it scrapes, in no exposition.
SCRAPE_SERIES = {"up"}
# What an operator must see besides the failure table's metrics: whether a worker runs each
# queue (NewsdeskQueueNotRunning) and whether the targets are scraped at all.
ALSO_WATCHED = {"job_queue_running", "up"}

# PromQL words that are not metric names: functions and aggregations are found by the "("
# after them; these are the rest.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression (strings, label matchers, ranges, grouping
    clauses and function names left out)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        follows = text[match.end() :].lstrip()
        if follows.startswith("(") or match.group() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def expressions(dashboard: dict[str, Any]) -> list[str]:
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append(target["expr"])
    return found


def test_metric_names_are_found_in_expressions() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket"
        '{status=~"5..", route!="a b"}[$__rate_interval]))) / sum(db_pool_size + x_total) > bool 1'
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "db_pool_size", "x_total"}


def test_the_dashboard_is_grafana_json_with_the_panels_an_operator_needs() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "newsdesk"
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource"}
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for needed in (
        "request rate",
        "p50",
        "p99",
        "error rate",
        "cache hit ratio",
        "pool use",
        "queue depth",
        "job duration",
    ):
        assert needed in titles, needed
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"], panel["title"]


def test_panels_do_not_overlap() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[x, y] = panel["title"]


def failure_table_metrics() -> set[str]:
    """The metric names the README's failure table ("When things fail") tells an operator to
    watch: backticked names in its last column (``name`` or ``name{labels}``)."""
    text = README.read_text()
    section = text.split("\n### When things fail\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]  # no header
    assert rows, "no failure table in README.md"
    names = set()
    for row in rows:
        watched = row.rstrip(" |").rsplit(" | ", 1)[1]
        for code in re.findall(r"`([^`]+)`", watched):
            match = re.fullmatch(r"([a-z][a-z0-9]*(?:_[a-z0-9]+)+)(\{[^}]*\})?", code)
            if match:
                names.add(match.group(1))
    return names


def test_every_metric_of_the_failure_table_has_a_panel() -> None:
    watched = failure_table_metrics()
    assert {"database_unavailable_total", "event_loop_lag_seconds", "views_buffered"} <= watched
    used: set[str] = set()
    for expr in expressions(json.loads(DASHBOARD.read_text())):
        used |= metric_names(expr)
    for name in sorted(watched | ALSO_WATCHED):
        series = {name} | {f"{name}_{suffix}" for suffix in ("bucket", "sum", "count")}
        assert series & used, f"no panel shows {name}"


@pytest.fixture(scope="module")
def instance(stack: ServerStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API instance as production runs it, with one failed login per e-mail address and
    client a day."""
    env = server_env(stack, RATE_LIMIT_LOGIN_EMAIL="1/day")
    server = ServeProcess(env, tmp_path_factory.mktemp("serve") / "serve.log", workers=2)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def worker(module_worker: Workers) -> str:
    port = free_port()
    module_worker(
        WORKER_METRICS_HOST="127.0.0.1", WORKER_METRICS_PORT=str(port), VIEW_FLUSH_SECONDS="1"
    )
    return f"http://127.0.0.1:{port}/metrics"


async def exercise(http: httpx.AsyncClient, pg: asyncpg.Connection) -> None:
    """What makes every series exist: writes, a processed article, a miss and a hit, a view,
    a refusal, a 404, a readiness check."""
    assert (await http.get("/readyz")).status_code == 200
    ann = await account(http)
    article = await publish(http, ann)
    assert await wait_for_status(pg, [article["id"]], "processed") == {article["id"]: "processed"}
    for _ in range(2):
        assert (await http.get(f"/api/v1/articles/{article['id']}")).status_code == 200
    assert (await http.get("/api/v1/articles")).status_code == 200
    assert (await http.get("/no-such-page")).status_code == 404
    guess = {"email": ann.email, "password": "not the password"}
    statuses = [(await http.post("/api/v1/auth/login", json=guess)).status_code for _ in range(3)]
    assert statuses == [401, 429, 429]


async def test_every_expression_names_only_exported_metrics(
    instance: str, worker: str, pg: asyncpg.Connection
) -> None:
    async with httpx.AsyncClient(base_url=instance, timeout=30) as http:
        await exercise(http, pg)
        api = await ascrape(http)
        worker_metrics: Exposition | None = None
        for _ in range(300):  # until the view has been flushed (bounded)
            worker_metrics = await ascrape(http, worker)
            if worker_metrics.total("view_flush_views_total") > 0:
                break
            await asyncio.sleep(0.1)
    assert worker_metrics is not None
    exported = set(api.samples) | set(worker_metrics.samples) | SCRAPE_SERIES
    dashboard = json.loads(await asyncio.to_thread(Path(DASHBOARD).read_text))
    used: set[str] = set()
    for expr in expressions(dashboard):
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, (expr, names - exported)
        used |= names
    # And the dashboard covers what the issue asks an operator to see.
    for name in ("http_requests_total", "cache_lookups_total", "job_queue_depth"):
        assert name in used

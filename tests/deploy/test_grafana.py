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
    a refusal, a 404."""
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
    exported = set(api.samples) | set(worker_metrics.samples)
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

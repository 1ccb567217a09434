"""deploy/prometheus/: the alerting rules (alerts.yaml) pass ``promtool check rules`` and their
unit tests (alerts.test.yaml) pass ``promtool test rules``, each alert with a case where it
fires and one where it must not; the scrape configuration (prometheus.yml) passes ``promtool
check config`` and names the jobs the rules expect. Every metric a rule names is one the API or
the job worker defines (``service.infra.metrics``, ``service.jobs.metrics``, imported, not
listed here), and the bulk backlog threshold is QUEUE_BACKLOG_WARN_SECONDS's default.

promtool comes from Debian's ``prometheus`` package (``make test-deps``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from service.core.settings import Settings
from service.infra import metrics as api_metrics
from service.infra.backlog import QUEUES, Backlog, QueueState
from service.jobs import metrics as job_metrics
from tests.deploy.test_grafana import metric_names
from tests.support.databases import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yaml"
RULE_TESTS = PROMETHEUS / "alerts.test.yaml"
CONFIG = PROMETHEUS / "prometheus.yml"
DEPLOY_README = ROOT / "deploy" / "README.md"
DURATION = re.compile(r"^\d+[smhd]$")
# Series Prometheus itself writes for every target it scrapes.
SCRAPE_SERIES = {"up"}
# The sample names each metric type exposes, after the metric's own name.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created", ""),
    "gauge": ("",),
}


def defined_metrics(module: ModuleType) -> set[str]:
    """The sample names of every metric a module defines at its top level."""
    names: set[str] = set()
    for value in vars(module).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def queue_metrics() -> set[str]:
    """The queue-wide gauges the worker's collector yields at a scrape (all of them: a view
    waiting, a flush done)."""
    collector = job_metrics.QueueCollector()
    queue = QueueState("bulk", QUEUES["bulk"], 1, 0, 0.0, True)
    collector.figures = Backlog([queue], 1, False, view_flushed_at=1.0, read_at=2.0)
    return {family.name for family in collector.collect()}


def exported_metrics() -> set[str]:
    return (
        defined_metrics(api_metrics)
        | defined_metrics(job_metrics)
        | queue_metrics()
        | SCRAPE_SERIES
    )


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    found = []
    for group in document["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"]
        found.extend(group["rules"])
    return found


def flat(expr: str) -> str:
    return " ".join(expr.split())


def balanced(expr: str) -> bool:
    pairs = {")": "(", "}": "{", "]": "["}
    stack: list[str] = []
    for char in re.sub(r'"(?:\\.|[^"\\])*"', "", expr):
        if char in "({[":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def promtool(*args: str, cwd: Path = PROMETHEUS) -> str:
    """Runs promtool in deploy/prometheus/; fails the test with its output unless it exits 0."""
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: `make test` installs it (Makefile test-deps)")
    done = subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"promtool {' '.join(args)} exited {done.returncode}:\n{output}")
    return output


def test_the_exported_metrics_are_read_from_the_definitions() -> None:
    exported = exported_metrics()
    assert {"http_requests_total", "http_request_duration_seconds_bucket"} <= exported
    assert {"database_unavailable_total", "redis_breaker_open", "event_loop_lag_seconds"} <= (
        exported
    )
    assert {"job_runs_total", "job_queue_running", "view_flush_oldest_pending_seconds"} <= (
        exported
    )


def test_every_rule_is_a_well_formed_alert_on_exported_metrics() -> None:
    found = rules()
    names = [rule["alert"] for rule in found]
    assert len(names) == len(set(names))
    exported = exported_metrics()
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert DURATION.match(rule["for"]), rule
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        expr = flat(rule["expr"])
        assert balanced(expr), expr
        assert re.search(r"(>|<|==)\s*[\d.]+(\)|\s|$)", expr), f"{rule['alert']}: no threshold"
        assert metric_names(expr) and metric_names(expr) <= exported, (
            rule["alert"],
            metric_names(expr) - exported,
        )


def test_the_bulk_backlog_alert_uses_the_documented_threshold() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    bulk = flat(by_name["NewsdeskBulkBacklog"]["expr"])
    assert 'job_queue_oldest_job_age_seconds{queue="bulk"}' in bulk
    threshold = float(bulk.rsplit(">", 1)[1])
    default = Settings.model_fields["queue_backlog_warn_seconds"].default
    assert threshold == default
    assert "max by (queue)" in bulk  # the same figure from every worker replica: max, not sum


def test_a_queue_with_no_series_at_all_counts_as_not_running() -> None:
    """With every worker gone no worker exports job_queue_running, and `== 0` alone finds
    nothing: each queue needs its absent()."""
    by_name = {rule["alert"]: rule for rule in rules()}
    expr = flat(by_name["NewsdeskQueueNotRunning"]["expr"])
    for queue in QUEUES:
        assert f'absent(job_queue_running{{queue="{queue}"}})' in expr, queue


def test_the_rules_name_the_scrape_jobs_of_the_configuration() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == [RULES.name]
    jobs = {scrape["job_name"] for scrape in config["scrape_configs"]}
    assert jobs == {"newsdesk-api", "newsdesk-worker"}
    matched: set[str] = set()
    for rule in rules():
        for op, value in re.findall(r'\bjob\s*(=~|=)\s*"([^"]*)"', rule["expr"]):
            hits = {j for j in jobs if (re.fullmatch(value, j) if op == "=~" else value == j)}
            assert hits, (rule["alert"], value)
            matched |= hits
    assert matched == jobs  # both the API and the workers have their absence alert


def test_promtool_checks_the_rules_and_the_configuration() -> None:
    assert "SUCCESS" in promtool("check", "rules", RULES.name)
    assert "SUCCESS" in promtool("check", "config", CONFIG.name)


def test_every_alert_has_unit_tests_where_it_fires_and_where_it_does_not() -> None:
    document = yaml.safe_load(RULE_TESTS.read_text())
    assert document["rule_files"] == [RULES.name]
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in document["tests"]:
        for case in test["alert_rule_test"]:
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert names - fires == set(), "alerts no unit test shows firing"
    assert names - quiet == set(), "alerts no unit test shows quiet"
    assert (fires | quiet) <= names


def test_the_alerts_pass_their_promtool_unit_tests() -> None:
    assert "SUCCESS" in promtool("test", "rules", RULE_TESTS.name)


def test_deploy_readme_explains_every_alert() -> None:
    text = DEPLOY_README.read_text()
    section = text.split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    for name in sorted(rule["alert"] for rule in rules()):
        assert f"`{name}`" in section, name

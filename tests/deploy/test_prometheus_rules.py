"""deploy/prometheus/alerts.yaml: Prometheus rule groups whose expressions name only metrics
the job worker exposes, and whose backlog threshold is QUEUE_BACKLOG_WARN_SECONDS's default
(promtool is not needed: the file's structure and expressions are checked here)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from service.core.settings import Settings
from tests.deploy.test_grafana import metric_names
from tests.support.databases import ROOT

RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
# Every metric the queue figures expose (service.jobs.metrics), checked against a live
# worker's exposition in tests/jobs/test_backlog_metrics.py and tests/jobs/test_metrics.py.
WORKER_METRICS = {
    "job_queue_depth",
    "job_queue_oldest_job_age_seconds",
    "job_queue_running",
    "job_runs_total",
    "view_flush_oldest_pending_seconds",
    "view_flush_lag_seconds",
}
DURATION = re.compile(r"^\d+[smhd]$")


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    found = []
    for group in document["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"]
        found.extend(group["rules"])
    return found


def balanced(expr: str) -> bool:
    pairs = {")": "(", "}": "{", "]": "["}
    stack: list[str] = []
    for char in re.sub(r'"(?:\\.|[^"\\])*"', "", expr):
        if char in "({[":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def test_every_rule_is_a_well_formed_alert_on_worker_metrics() -> None:
    found = rules()
    names = [rule["alert"] for rule in found]
    assert len(names) == len(set(names))
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert DURATION.match(rule["for"]), rule
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        expr = " ".join(rule["expr"].split())
        assert balanced(expr), expr
        assert re.search(r"(>|<|==)\s*[\d.]+$", expr), f"{rule['alert']}: no threshold: {expr}"
        assert metric_names(expr) and metric_names(expr) <= WORKER_METRICS, expr


def test_the_bulk_backlog_alert_uses_the_documented_threshold() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    bulk = " ".join(by_name["NewsdeskBulkBacklog"]["expr"].split())
    assert 'job_queue_oldest_job_age_seconds{queue="bulk"}' in bulk
    threshold = float(bulk.rsplit(">", 1)[1])
    default = Settings.model_fields["queue_backlog_warn_seconds"].default
    assert threshold == default
    assert "max by (queue)" in bulk  # the same figure from every worker replica: max, not sum

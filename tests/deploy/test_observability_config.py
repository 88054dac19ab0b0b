"""ops/prometheus-alerts.yml passes promtool; the Grafana dashboard and the alert rules query only
metrics the code exports."""

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from conftest import ROOT
from prometheus_client.metrics import MetricWrapperBase

from mwap.metrics import definitions
from mwap.metrics.queues import QueueCollector

RULES = ROOT / "ops" / "prometheus-alerts.yml"
DASHBOARD = ROOT / "ops" / "grafana-dashboard.json"
# The series names prometheus_client exposes for a family of each type.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
METRIC = re.compile(r"\bmwap_[a-z0-9_]+\b")


class _Pipeline:
    """Enough of a redis pipeline for mwap.broker.queue_stats: empty lists."""

    def __init__(self) -> None:
        self.replies: list[Any] = []

    def llen(self, _key: str) -> None:
        self.replies.append(0)

    def lindex(self, _key: str, _index: int) -> None:
        self.replies.append(None)

    def execute(self) -> list[Any]:
        return self.replies


class _Redis:
    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline()


def exported_series(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every series name the platform's /metrics can carry: the families in definitions.py, and the
    broker collector's (run against an empty stand-in broker)."""
    names = {
        family._name + suffix
        for family in vars(definitions).values()
        if isinstance(family, MetricWrapperBase)
        for suffix in SUFFIXES[str(family._type)]
    }
    monkeypatch.setattr("mwap.metrics.queues.redis_client", lambda _settings: _Redis())
    for family in QueueCollector(object()).collect():
        names.add(family.name)
    return names


def strings(node: Any, keys: set[str]) -> Iterator[str]:
    """Every string value under one of ``keys``, anywhere in a JSON/YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str):
                yield value
            yield from strings(value, keys)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item, keys)


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    names = exported_series(monkeypatch)
    assert {"mwap_jobs_started_total", "mwap_job_duration_seconds_bucket", "mwap_queue_depth"} <= names
    return names


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:  # ops/test installs it (ops/bootstrap.sh, MWAP_NEED_PROMTOOL)
        pytest.fail("promtool is missing: apt-get install prometheus (ops/test does)")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_name_exported_metrics(exported: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = list(strings(dashboard, {"expr", "query", "definition"}))
    used = {name for query in queries for name in METRIC.findall(query)}
    assert len(used) >= 10, used  # the dashboard's queries were found
    assert used <= exported, f"the dashboard queries metrics nothing exports: {sorted(used - exported)}"


def test_alert_rules_name_exported_metrics(exported: set[str]) -> None:
    rules = yaml.safe_load(RULES.read_text())
    used = {name for expr in strings(rules, {"expr"}) for name in METRIC.findall(expr)}
    assert used, "no rule expression found"
    assert used <= exported, f"the alert rules query metrics nothing exports: {sorted(used - exported)}"


def test_a_misspelt_metric_is_caught(exported: set[str]) -> None:
    """The check above can fail: a counter without _total, or a histogram's bare name."""
    for wrong in ("mwap_jobs_started", "mwap_job_duration_seconds", "mwap_queue_depth_total"):
        assert wrong not in exported


def test_queue_gauges_are_never_added_across_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each API pod exports the broker's gauges (queue depth and age, broker up): a ``sum`` would
    count them once per replica. Every use of one takes the ``max`` (or tests its absence)."""
    monkeypatch.setattr("mwap.metrics.queues.redis_client", lambda _settings: _Redis())
    names = {family.name for family in QueueCollector(object()).collect()}
    assert {"mwap_queue_depth", "mwap_queue_oldest_message_age_seconds", "mwap_broker_up"} <= names
    dashboard = json.loads(DASHBOARD.read_text())
    rules = yaml.safe_load(RULES.read_text())
    queries = [*strings(dashboard, {"expr", "query", "definition"}), *strings(rules, {"expr"})]
    seen = 0
    for query in queries:
        for match in METRIC.finditer(query):
            if match.group() not in names:
                continue
            seen += 1
            before = query[: match.start()].rstrip()
            assert re.search(r"(\bmax(\s+by\s*\(\s*queue\s*\))?\s*\(|\babsent\()$", before), query
            assert not re.search(r"\b(sum|avg|count)\b", query), query
    assert seen >= 4, "the dashboard and rules read the queue gauges"

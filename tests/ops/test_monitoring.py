"""Monitoring (issue 18): the Prometheus alert rules in ops/prometheus pass `promtool check rules`
and their unit tests (`promtool test rules`), every metric the rules and the Grafana dashboard
read is one /metrics serves (or a recording rule of ours), and /metrics reads the job queue."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from persistence.jobs.models import Job
from tests.helpers import ROOT

RULES = ROOT / "ops" / "prometheus" / "charter-rules.yml"
RULE_TESTS = ROOT / "ops" / "prometheus" / "charter-rules.test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "charter-dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed; .ci/run installs it"
)
PROMETHEUS_OWN = {"up"}
"""Series Prometheus makes itself rather than scrapes."""


def _rule_expressions() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule.get("alert") or rule["record"]: rule["expr"] for group in groups for rule in group["rules"]}


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _names_in(expression: str) -> set[str]:
    """The series names an expression reads: our metrics and recording rules, and `up`."""
    names = set(
        re.findall(r"\b(charter(?:_[a-z0-9]+)+|charter:[a-z0-9_:]+|up)\b(?=\s*[{\[)]|\s*$|\s*[=<>!)])", expression)
    )
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in names}


def _served_names(text: str) -> set[str]:
    """Every metric name in a Prometheus text exposition: the declared families (``# TYPE``)
    and each sample's name (counters' ``_total``)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@needs_promtool
def test_the_rules_are_valid_for_promtool():
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_the_rules_pass_their_unit_tests():
    result = subprocess.run([PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_named_in_the_issue_is_there():
    alerts = set(_rule_expressions())
    assert {
        "CharterHighErrorRate",
        "CharterHighLatencyP99",
        "CharterNotReady",
        "CharterInstanceDown",
        "CharterJobQueueBacklog",
        "CharterJobsWaiting",
        "CharterCircuitBreakerOpen",
        "CharterBackupTooOld",
    } <= alerts


def test_the_rules_and_the_dashboard_read_only_metrics_that_metrics_serves(client):
    client.get("/api/v1/health")  # at least one request counted
    response = client.get("/metrics")
    assert response.status_code == 200
    served = _served_names(response.text)
    recorded = {name for name in _rule_expressions() if name.startswith("charter:")}
    for source, expressions in (("rules", _rule_expressions().values()), ("dashboard", _dashboard_expressions())):
        read = set().union(*(_names_in(expression) for expression in expressions))
        assert read, source
        unknown = read - served - recorded - PROMETHEUS_OWN
        assert unknown == set(), f"the {source} read series /metrics does not serve: {sorted(unknown)}"


def test_the_dashboard_is_importable_json_with_distinct_panels():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        area = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, f"panel {panel['title']!r} overlaps another"
        cells |= area
        assert all(target["datasource"]["uid"] == "${datasource}" for target in panel["targets"])


def test_metrics_reads_the_job_queue_and_the_database(client, new_uow):
    waiting_since = datetime.now(UTC) - timedelta(minutes=7)
    job_id = uuid.uuid4()
    with new_uow() as uow:
        uow.jobs.add(
            Job(
                id=job_id,
                kind="probe.monitoring",
                status="queued",
                cancel_requested=False,
                attempts=0,
                max_attempts=1,
                next_attempt_at=waiting_since,
                payload={},
                progress_done=0,
                created_at=waiting_since,
            )
        )
    try:
        text = client.get("/metrics").text
    finally:
        with new_uow() as uow:
            uow.session.delete(uow.jobs.get(job_id))
    assert 'charter_jobs{kind="probe.monitoring",status="queued"} 1.0' in text
    age = float(re.search(r"^charter_job_oldest_due_age_seconds (\S+)$", text, re.MULTILINE).group(1))
    assert age >= 7 * 60
    assert re.search(r"^charter_database_up 1\.0$", text, re.MULTILINE)
    # the next scrape reads the kind as gone, not as its last count
    assert 'charter_jobs{kind="probe.monitoring",status="queued"} 0.0' in client.get("/metrics").text

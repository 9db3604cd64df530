"""Issue 13: the Prometheus side, checked with Prometheus's own ``promtool`` (Debian's
``prometheus`` package; .ci/run installs it): the shipped alerting rules load and pass their unit
tests, and a real scrape of Steward's ``/metrics`` passes promtool's metric lint (counters end in
``_total``, units in names, help texts).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
RULES = ROOT / "config" / "deploy" / "prometheus" / "alerts.yml"
TOKEN = "scrape-me-0123456789"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool is missing (apt-get install prometheus)")
    return found


def _run(
    promtool: str, *args: str, stdin: str | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - Prometheus's promtool on our files
        [promtool, *args], input=stdin, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_alerting_rules_load_and_pass_their_unit_tests(promtool):
    checked = _run(promtool, "check", "rules", str(RULES))
    tested = _run(promtool, "test", "rules", "alerts_test.yml", cwd=ROOT / "tests" / "prometheus")

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@pytest.mark.django_db
def test_a_real_scrape_passes_promtools_metric_lint(promtool, client, settings, drifted_check):
    settings.STEWARD_METRICS_TOKEN = TOKEN  # drifted_check: drift scores, an alert, a finished check

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    linted = _run(promtool, "check", "metrics", stdin=response.content.decode())

    assert response.status_code == 200
    assert "steward_drift_checks_finished_total" in response.content.decode()
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.django_db
def test_the_shipped_dashboard_queries_parse_and_name_only_metrics_steward_exports(promtool, tmp_path):
    from monitoring.grafana import dashboard_spec
    from monitoring.metrics import registry

    # Every family /metrics serves (one with no sample yet prints nothing, so not from a scrape).
    exported = {family.name for family in registry().collect()}
    queries = [
        target["expr"].replace("$model", ".*")  # Grafana's variable, as "All" expands it
        for panel in dashboard_spec()["panels"]
        for target in panel["targets"]
    ]
    # promtool parses PromQL inside rule files only: each query becomes a recording rule.
    recorded = [{"record": f"panel_{n}", "expr": query} for n, query in enumerate(queries)]
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    checked = _run(promtool, "check", "rules", str(rules))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    named = {name for query in queries for name in re.findall(r"\bsteward_[a-z_]+", query)}
    # A counter's samples end in _total, a histogram's in _bucket/_count/_sum; the family does not.
    base = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in named}
    assert base <= exported, f"the dashboard queries metrics Steward does not export: {base - exported}"
    assert len(queries) == 13

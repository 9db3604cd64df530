"""Issue 14, one verdict language: a check shows data, prediction and performance drift each with
its own badge; the alert's title names what breached; monitor, check and alert agree on the
severity; the alert list keeps an acknowledged, still-breaching alert in view.
"""

from __future__ import annotations

import re

import pytest

from monitoring.actions.alerts import do_acknowledge_alert
from monitoring.actions.checks import CheckOutcome
from monitoring.actions.monitors import do_create_monitor
from monitoring.models import Alert, CurrentSource
from tests.monitoring.conftest import CLEAN, HUM_DRIFT, T0, TEMP_OK, finish_check

pytestmark = pytest.mark.django_db

# Columns did not drift, the model got worse: the case where the old title said "Data drift".
PERFORMANCE_ONLY = CheckOutcome(
    results=CLEAN.results,
    is_dataset_drift=False,
    drifted_count=0,
    drifted_fraction=0.0,
    performance={
        "task": "regression",
        "target": "cnt",
        "rows": 500,
        "tolerance": 0.1,
        "metrics": {
            "mae": {
                "current": 97.5,
                "baseline": 25.0,
                "baseline_source": "training",
                "change": 2.9,
                "is_degraded": True,
            },
            "rmse": {
                "current": 30.0,
                "baseline": 29.0,
                "baseline_source": "training",
                "change": 0.0345,
                "is_degraded": False,
            },
        },
    },
    is_performance_drift=True,
)


def _badges(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<span class="badge badge-([a-z-]+)">([^<]+)</span>', html)


@pytest.fixture
def critical_monitor(registered_version, current_dataset_version, scientist):
    return do_create_monitor(
        model_version=registered_version,
        name="performance",
        source=CurrentSource.DATASET,
        current_dataset=current_dataset_version.dataset,
        severity="critical",
        actor=scientist,
    )


def test_a_performance_breach_is_called_so_with_the_monitors_severity(
    client, critical_monitor, scientist, owner
):
    check = finish_check(critical_monitor, PERFORMANCE_ONLY, T0, scientist)
    alert = Alert.objects.get()

    assert alert.title == f"Performance drift on {check.model_version}: mae 97.5 (+290%)"
    assert (critical_monitor.severity, check.breach_severity, alert.severity) == ("critical",) * 3

    client.force_login(owner)
    page = client.get(check.get_absolute_url()).content.decode()
    assert _badges(page)[1:5] == [
        ("no-drift", "No data drift"),
        ("not-measured", "Prediction drift not measured"),
        ("drift", "Performance drift: mae"),
        ("critical", "Critical"),
    ]
    assert "(the monitor's)" in page
    # The check names its severity as its alert's page does (it said "critical" beside the
    # alert's "Critical", as if they were two severities).
    alert_page = client.get(alert.get_absolute_url()).content.decode()
    assert ("critical", "Critical") in _badges(alert_page)
    # The monitor's page lists the check with the same three verdicts.
    monitor_page = client.get(critical_monitor.get_absolute_url()).content.decode()
    assert ("drift", "Performance drift: mae") in _badges(monitor_page)
    assert ("no-drift", "No data drift") in _badges(monitor_page)


def test_column_and_dataset_drift_are_told_apart(client, monitor, scientist, owner):
    from tests.monitoring.conftest import BREACH

    dataset_drift = finish_check(monitor, BREACH, T0, scientist)
    assert [v.label for v in dataset_drift.verdicts] == [
        "Dataset drift: 1 of 2 columns",
        "Prediction drift not measured",
        "Performance not measured",
    ]
    columns_only = CheckOutcome(
        results=BREACH.results, is_dataset_drift=False, drifted_count=1, drifted_fraction=0.5
    )
    check = finish_check(monitor, columns_only, T0, scientist)
    assert (check.verdicts[0].status, check.verdicts[0].label) == ("warning", "Data drift: 1 of 2 columns")
    # One alert for the monitor, titled by its latest check, at the monitor's severity.
    alert = Alert.objects.get()
    assert alert.title == f"Data drift on {check.model_version}: 1 of 2 columns"
    assert (monitor.severity, alert.severity) == ("warning", "warning")


def test_the_alert_list_keeps_acknowledged_alerts_in_view(client, monitor, scientist, owner):
    from tests.monitoring.conftest import BREACH

    finish_check(monitor, BREACH, T0, scientist)
    alert = Alert.objects.get()
    do_acknowledge_alert(alert=alert, actor=owner)
    client.force_login(owner)

    listed = client.get("/alerts/").content.decode()
    assert f"/alerts/{alert.pk}/" in listed
    assert '<option value="unresolved" selected>' in listed
    only_open = client.get("/alerts/?state=open").content.decode()
    assert f"/alerts/{alert.pk}/" not in only_open
    # The API takes the same filter.
    answer = client.get("/api/alerts/?state=unresolved").json()
    assert [row["id"] for row in answer["results"]] == [alert.pk]


def test_a_check_that_tested_no_column_does_not_say_no_data_drift(monitor, scientist):
    # Every column too short or empty: it said "No data drift" though no column had a verdict.
    untested = CheckOutcome(
        results=[
            dict(TEMP_OK, status="insufficient_data", is_drifted=False, score=None, method=None),
            dict(HUM_DRIFT, status="no_data", is_drifted=False, score=None, method=None),
        ],
        is_dataset_drift=False,
        drifted_count=0,
        drifted_fraction=0.0,
    )
    check = finish_check(monitor, untested, T0, scientist)
    data = check.verdicts[0]
    assert (data.status, data.label) == ("not-measured", "Data drift not measured: no column tested")


def test_a_monitor_says_its_schedule_and_row_filter_as_people_read_them(client, monitor, owner, scientist):
    from monitoring.actions.monitors import do_update_monitor

    do_update_monitor(monitor=monitor, actor=scientist, schedule_minutes=1440, reference_where={"yr": 0})
    client.force_login(owner)
    page = client.get(monitor.get_absolute_url()).content.decode()
    assert "<dt>Schedule</dt><dd>daily" in page
    assert "where <code>{&quot;yr&quot;: 0}</code>" in page
    listed = client.get(monitor.model_version.get_absolute_url()).content.decode()
    assert "<td>daily</td>" in listed

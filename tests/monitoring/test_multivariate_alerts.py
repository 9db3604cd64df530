"""Multivariate drift raises alerts (issue 11): a drifted domain-classifier or PCA test opens,
repeats, re-opens and auto-resolves the alert like a drifted column does, and the alert names the
test and the features driving it. On the bike data with ``atemp`` re-paired against ``temp``
(every column keeps its values, so no column drifts): through the API, the pages and a worker."""

from __future__ import annotations

import pandas as pd
import pytest
from django.core import mail

from monitoring.execute import execute_drift_check
from monitoring.models import Alert, DriftCheck, Notification
from tests.monitoring.conftest import register_frame
from tests.monitoring.test_column_rules import _wait_for, report_worker  # noqa: F401 (a fixture)
from tests.monitoring.test_multivariate import repaired_atemp  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

BOTH = {"multivariate": ["domain_classifier", "pca"], "multivariate_max_rows": 2000, "make_report": False}


@pytest.fixture
def unchanged_2011(dataset, scientist, bike_frame, tmp_path):
    """The 2011 rows as they are: the reference's own rows, so nothing can drift."""
    from governance.actions.datasets import do_create_dataset

    current = do_create_dataset(team=dataset.team, name="bike-2011-again", actor=scientist)
    rows = bike_frame[bike_frame["yr"] == 0].reset_index(drop=True)
    return register_frame(current, rows, tmp_path / "again.csv", scientist)


def _drivers(test: dict) -> list[str]:
    return [item["feature"] for item in test["top_features"][:3]]


def _expected_title(check: DriftCheck) -> str:
    """The title the alert must carry: the multivariate verdict, each test with its drivers."""
    named = ", ".join(f"{t['test']} ({', '.join(_drivers(t))})" for t in check.multivariate)
    return f"Multivariate drift on {check.model_version}: {named}"


def test_a_multivariate_drift_opens_an_alert_naming_the_tests_and_features_and_notifies_the_owner(
    client,
    client_for,
    scientist,
    owner,
    registered_version,
    repaired_atemp,  # noqa: F811
    unchanged_2011,
    django_capture_on_commit_callbacks,
):
    api = client_for(scientist)
    flipped = api.post(
        "/api/drift-checks/",
        {"model_version": registered_version.pk, "current_dataset_version": repaired_atemp.pk, **BOTH},
        format="json",
    )
    assert flipped.status_code == 201, flipped.json()

    with django_capture_on_commit_callbacks(execute=True):
        assert execute_drift_check(flipped.json()["id"]) == "succeeded"

    check = DriftCheck.objects.get(pk=flipped.json()["id"])
    # No column moved and the dataset did not drift: the multivariate tests alone breach.
    assert (check.drifted_count, check.is_dataset_drift, check.is_breach) == (0, False, True)
    assert [(t["test"], t["status"]) for t in check.multivariate] == [
        ("domain_classifier", "drift"),
        ("pca", "drift"),
    ]
    for test in check.multivariate:
        assert set(_drivers(test)[:2]) == {"temp", "atemp"}
    alert = Alert.objects.get()
    # No monitor: a warning, as drifted columns short of the dataset share are.
    assert (alert.state, alert.severity, alert.drift_check_id, alert.owner) == (
        "open",
        "warning",
        check.pk,
        owner,
    )
    assert alert.title == _expected_title(check)
    classifier, pca = check.multivariate
    assert alert.summary.splitlines() == [
        f"domain_classifier: ROC AUC = {classifier['statistic']:.4g} "
        f"(threshold {classifier['threshold']:.4g}, p = {classifier['p_value']:.4g}); "
        f"driven by {', '.join(_drivers(classifier))}",
        f"pca: reconstruction error = {pca['statistic']:.4g} (outside {pca['lower_bound']:.4g} to "
        f"{pca['threshold']:.4g}); driven by {', '.join(_drivers(pca))}",
    ]
    assert [(t["test"], t["reference_rows"], t["current_rows"]) for t in alert.evidence["multivariate"]] == [
        ("domain_classifier", 2000, 2000),
        ("pca", 2000, 2000),
    ]
    assert alert.evidence["drifted_columns"] == []
    # The owner is told, by email, with the tests and their features in the message.
    notification = Notification.objects.get()
    assert (notification.alert_id, notification.level, notification.state, notification.recipients) == (
        alert.pk,
        0,
        "sent",
        [owner.email],
    )
    (message,) = mail.outbox
    assert message.to == [owner.email]
    assert alert.title in message.subject
    assert "domain_classifier: ROC AUC" in message.body
    assert "driven by temp, atemp" in message.body or "driven by atemp, temp" in message.body

    # The check page says why the alert was raised; the alert page shows the lines.
    client.force_login(scientist)
    page = client.get(check.get_absolute_url()).content.decode()
    assert 'id="multivariate-alert"' in page
    assert "<strong>domain_classifier</strong> found drift, driven by <code>" in page
    assert "(severity warning)" in page
    assert f'alert #{alert.pk}</a> <span class="muted">({alert.title})</span>' in page
    assert "pca: reconstruction error" in client.get(alert.get_absolute_url()).content.decode()
    assert api.get(f"/api/alerts/{alert.pk}/").json()["evidence"]["multivariate"][0]["test"] == (
        "domain_classifier"
    )

    # The reference's own rows: no test drifts, no alert (the open one is left as it is).
    clean = api.post(
        "/api/drift-checks/",
        {"model_version": registered_version.pk, "current_dataset_version": unchanged_2011.pk, **BOTH},
        format="json",
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert execute_drift_check(clean.json()["id"]) == "succeeded"
    quiet = DriftCheck.objects.get(pk=clean.json()["id"])
    assert [(t["test"], t["status"]) for t in quiet.multivariate] == [
        ("domain_classifier", "ok"),
        ("pca", "ok"),
    ]
    assert (quiet.is_breach, Alert.objects.count(), Notification.objects.count()) == (False, 1, 1)
    assert 'id="multivariate-alert"' not in client.get(quiet.get_absolute_url()).content.decode()


def test_a_monitors_multivariate_alert_takes_its_severity_auto_resolves_and_reopens(
    client_for,
    scientist,
    bike_frame,
    registered_version,
    repaired_atemp,  # noqa: F811
    tmp_path,
    django_capture_on_commit_callbacks,
):
    api = client_for(scientist)
    created = api.post(
        "/api/monitors/",
        {
            "model_version": registered_version.pk,
            "name": "joint",
            "source": "dataset",
            "current_dataset": repaired_atemp.dataset_id,
            "multivariate": ["pca"],
            "severity": "critical",
            "auto_resolve_after": 1,
            "make_report": False,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    monitor_id = created.json()["id"]

    def run() -> DriftCheck:
        with django_capture_on_commit_callbacks(execute=True):
            check_id = api.post(f"/api/monitors/{monitor_id}/run/").json()["id"]
            assert execute_drift_check(check_id) == "succeeded"
        return DriftCheck.objects.get(pk=check_id)

    first = run()
    alert = Alert.objects.get()
    assert (first.drifted_count, alert.state, alert.severity) == (0, "open", "critical")
    assert alert.title == _expected_title(first)

    # The monitored dataset's next batch is the 2011 rows as they are: clean, so resolved.
    rows = bike_frame[bike_frame["yr"] == 0].reset_index(drop=True)
    register_frame(repaired_atemp.dataset, rows, tmp_path / "clean.csv", scientist)
    second = run()
    alert.refresh_from_db()
    assert ([(t["test"], t["status"]) for t in second.multivariate], second.is_breach) == (
        [("pca", "ok")],
        False,
    )
    assert (alert.state, alert.clean_checks, alert.resolved_by) == ("resolved", 1, None)

    # The flipped batch again, within the monitor's re-open window: the same alert re-opens.
    flipped = DriftCheck.objects.get(pk=first.pk).current_dataset_version
    register_frame(repaired_atemp.dataset, pd.read_csv(flipped.path), tmp_path / "again.csv", scientist)
    run()
    alert.refresh_from_db()
    assert (Alert.objects.count(), alert.state, alert.occurrences) == (1, "open", 2)
    changes = alert.events.exclude(kind="escalate").order_by("id").values_list("kind", flat=True)
    assert list(changes) == ["open", "auto_resolve", "reopen"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_raises_the_multivariate_alert_and_a_clean_check_none(
    report_worker,  # noqa: F811
    client_for,
    scientist,
    owner,
    registered_version,
    repaired_atemp,  # noqa: F811
    unchanged_2011,
):
    api = client_for(scientist)
    ids = [
        api.post(
            "/api/drift-checks/",
            {"model_version": registered_version.pk, "current_dataset_version": version.pk, **BOTH},
            format="json",
        ).json()["id"]
        for version in (unchanged_2011, repaired_atemp)
    ]

    _wait_for(
        "finished",
        lambda: DriftCheck.objects.filter(pk__in=ids, state__in=["succeeded", "failed"]).count() == 2,
    )

    clean, flipped = (DriftCheck.objects.get(pk=pk) for pk in ids)
    assert (clean.state, clean.error, clean.is_breach) == ("succeeded", "", False)
    assert (flipped.state, flipped.error, flipped.drifted_count) == ("succeeded", "", 0)
    alert = Alert.objects.get()
    assert (alert.drift_check_id, alert.state, alert.title) == (flipped.pk, "open", _expected_title(flipped))
    _wait_for("notified", lambda: Notification.objects.filter(alert=alert, state="sent").exists())
    assert list(Notification.objects.values_list("recipients", flat=True)) == [[owner.email]]

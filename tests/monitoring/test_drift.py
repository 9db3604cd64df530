"""Drift between the bike data of 2011 and 2012, drift checks, and the alerts they raise."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest
from django.utils import timezone
from evidently import Report
from evidently.metrics import DriftedColumnsCount, ValueDrift

import config.celery
from governance.actions.model_versions import do_register_model_version
from governance.models import AuditEvent
from monitoring import drift, tasks
from monitoring.actions.checks import claim_drift_check, do_request_drift_check
from monitoring.engine import CheckConfig, DatasetProfile, build_profile, run_check
from monitoring.execute import execute_drift_check
from monitoring.models import Alert, AlertState, CheckState, DriftCheck, ReferenceProfile
from monitoring.report_http import STORAGE_SHIM
from monitoring.reports import execute_drift_report
from tests.conftest import DRIFT_COLUMNS, mail_count
from tests.monitoring.conftest import register_frame

WASSERSTEIN = "Wasserstein distance (normed)"


def _evidently_verdicts(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]
) -> tuple[dict, int]:
    """Evidently's own per-column ValueDrift tests and its drifted-column count, asked directly."""
    snapshot = Report(
        [DriftedColumnsCount(), *[ValueDrift(column=c) for c in columns]], include_tests=True
    ).run(reference_data=reference[columns], current_data=current[columns])
    payload = snapshot.dict()
    metrics = {metric["id"]: metric for metric in payload["metrics"]}
    verdicts, count = {}, None
    for metric in payload["metrics"]:
        if metric["config"]["type"].endswith("DriftedColumnsCount"):
            count = int(metric["value"]["count"])
    for test in payload["tests"]:
        metric = metrics[test["metric_config"]["metric_id"]]
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            verdicts[config["column"]] = (
                config["method"],
                metric["value"],
                config["threshold"],
                test["status"] == "FAIL",
            )
    return verdicts, count


def _verdicts(result: drift.DriftResult) -> dict:
    return {c.column: (c.method, c.score, c.threshold, c.is_drifted) for c in result.columns}


def test_2012_against_2011_agrees_with_evidently(bike_drift_result, bike_frame):
    reference, current = bike_frame[bike_frame["yr"] == 0], bike_frame[bike_frame["yr"] == 1]
    expected, count = _evidently_verdicts(reference, current, DRIFT_COLUMNS)
    result = bike_drift_result

    assert _verdicts(result) == expected
    assert [c.column for c in result.columns] == DRIFT_COLUMNS
    assert {c.column for c in result.columns if c.is_drifted} == {"hum", "cnt"}
    for column in ("hum", "cnt"):
        method, score, threshold, _ = _verdicts(result)[column]
        assert (method, threshold) == (WASSERSTEIN, 0.1)
        assert score > threshold
    assert (result.drifted_count, count) == (2, 2)
    assert result.drifted_fraction == 2 / 12
    assert result.is_dataset_drift is False
    assert result.sampled_rows is None
    assert result.html.lstrip().lower().startswith("<!doctype html>")


def test_small_samples_use_statistical_tests_and_agree_with_evidently(bike_frame):
    """Below 1,000 rows evidently switches to K-S (numeric) and Z / chi-square (categorical) p-values."""
    reference, current = (
        bike_frame[bike_frame["yr"] == 0].head(500),
        bike_frame[bike_frame["yr"] == 1].head(500),
    )
    columns = ["season", "temp", "hum", "cnt"]

    result = drift.compare(reference, current, columns, drift_share=0.5)

    expected, count = _evidently_verdicts(reference, current, columns)
    assert _verdicts(result) == expected
    assert {c.column: c.method for c in result.columns} == {
        "season": "Z-test p_value",
        "temp": "K-S p_value",
        "hum": "K-S p_value",
        "cnt": "K-S p_value",
    }
    assert (result.drifted_count, count) == (3, 3)
    assert result.is_dataset_drift is True


def test_same_data_does_not_drift(bike_frame):
    rows = bike_frame[bike_frame["yr"] == 0]

    result = drift.compare(rows, rows.copy(), DRIFT_COLUMNS)

    assert [(c.column, c.score, c.is_drifted) for c in result.columns] == [
        (c, 0.0, False) for c in DRIFT_COLUMNS
    ]
    assert (result.drifted_count, result.drifted_fraction, result.is_dataset_drift) == (0, 0.0, False)


@pytest.mark.parametrize(
    ("reference", "current", "columns", "share", "message"),
    [
        ("empty", "2012", ["hum"], 0.5, "the reference data has no rows"),
        ("2011", "empty", ["hum"], 0.5, "the current data has no rows"),
        ("2011", "2012", [], 0.5, "no columns to compare"),
        ("2011", "no hum", ["temp", "hum", "rain"], 0.5, "the reference data lacks column(s) 'rain'"),
        (
            "2011+rain",
            "no hum",
            ["temp", "hum", "rain"],
            0.5,
            "the current data lacks column(s) 'hum', 'rain'",
        ),
        ("2011", "blank hum", ["temp", "hum"], 0.5, "column(s) 'hum' have no values in the current data"),
        ("blank hum", "2012", ["hum"], 0.5, "column(s) 'hum' have no values in the reference data"),
        ("2011", "2012", ["hum"], 0.0, "drift_share must be in (0, 1], got 0.0"),
        ("2011", "2012", ["hum"], 1.5, "drift_share must be in (0, 1], got 1.5"),
    ],
)
def test_inputs_that_cannot_be_compared(bike_frame, reference, current, columns, share, message):
    frames = {
        "2011": bike_frame[bike_frame["yr"] == 0],
        "2012": bike_frame[bike_frame["yr"] == 1],
        "empty": bike_frame.head(0),
        "no hum": bike_frame.drop(columns=["hum"]),
        "2011+rain": bike_frame.assign(rain=0.0),
        "blank hum": bike_frame.assign(hum=np.nan),
    }

    with pytest.raises(drift.DriftInputError) as raised:
        drift.compare(frames[reference], frames[current], columns, share)

    assert str(raised.value) == message


# Drift checks: the engine decides, evidently reports --------------------------------------------


def _request(version, current, actor, **kwargs) -> DriftCheck:
    return do_request_drift_check(
        model_version=version, current_dataset_version=current, actor=actor, **kwargs
    )


def test_check_decides_with_the_engine_and_shows_evidently_beside_it(
    registered_version,
    current_dataset_version,
    scientist,
    owner,
    bike_frame,
    bike_drift_result,
    mail_dir,
    settings,
    django_capture_on_commit_callbacks,
):
    check = _request(registered_version, current_dataset_version, scientist)
    assert check.columns == DRIFT_COLUMNS
    assert (check.reference_where, check.window["rows"]) == ({"yr": 0}, 8734)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        state = execute_drift_check(check.pk)
    check.refresh_from_db()
    # The verdict is stored and the alert raised before the report is even asked for (issue 11).
    assert (check.state, check.report_state, check.report, check.evidently_results) == (
        "succeeded",
        "queued",
        "",
        [],
    )
    assert Alert.objects.count() == 1
    assert not mail_dir.exists()  # the email waits for the commit
    assert len(callbacks) == 2  # the report's task, then the first escalation step
    with django_capture_on_commit_callbacks(execute=True):
        callbacks[1]()  # the escalation step and its delivery; the report is built just below
    with django_capture_on_commit_callbacks(execute=True):
        assert execute_drift_report(check.pk) == "succeeded"

    check.refresh_from_db()
    reference = build_profile(bike_frame[bike_frame["yr"] == 0])
    expected = run_check(
        reference, bike_frame[bike_frame["yr"] == 1], CheckConfig(columns=tuple(DRIFT_COLUMNS))
    )
    assert state == CheckState.SUCCEEDED
    assert check.results == [column.to_dict() for column in expected.columns]
    assert [(c["column"], c["method"], c["threshold"]) for c in check.drifted_columns] == [
        ("hum", "wasserstein", 0.1),
        ("cnt", "wasserstein", 0.1),
    ]
    assert {c["column"]: c["status"] for c in check.results} == {
        c: "drift" if c in ("hum", "cnt") else "ok" for c in DRIFT_COLUMNS
    }
    assert (check.drifted_count, check.drifted_fraction, check.is_dataset_drift) == (2, 2 / 12, False)
    assert (check.progress, check.stage, check.error, check.report_error) == (1.0, "done", "", "")
    # Evidently's verdicts on the same rows, for people, agree column by column.
    # (Scores to 1e-12: the report runs evidently in its own process, whose BLAS threads may sum
    # in another order than this one's, e.g. 0.6792124618131068 against ...067.)
    expected_evidently = bike_drift_result.columns_as_dicts()
    assert [
        {**c, "score": pytest.approx(c["score"], rel=1e-12)} for c in expected_evidently
    ] == check.evidently_results
    assert [c["is_drifted"] for c in check.evidently_results] == [c["is_drifted"] for c in check.results]
    assert (settings.ARTIFACT_ROOT / check.report).read_text().lstrip().lower().startswith("<!doctype html>")
    # No prediction column in these rows, and hence no performance either.
    assert (check.prediction, check.performance, check.is_performance_drift) == (None, None, None)

    alert = Alert.objects.get()
    assert (alert.owner, alert.state, alert.severity, alert.occurrences) == (owner, "open", "warning", 1)
    assert (alert.drift_check, alert.model_version, alert.team) == (check, registered_version, check.team)
    assert (alert.dedup_key, alert.monitor) == (f"model_version:{registered_version.pk}", None)
    assert alert.title == "Data drift on bike-demand v1: 2 of 12 columns"
    hum, cnt = check.drifted_columns
    assert alert.summary.splitlines() == [
        f"hum: wasserstein = {hum['score']:.4g} (threshold 0.1)",
        f"cnt: wasserstein = {cnt['score']:.4g} (threshold 0.1)",
    ]
    assert alert.evidence["report_url"] == f"{settings.STEWARD_BASE_URL}/drift-checks/{check.pk}/report/"
    (mail,) = list(mail_dir.iterdir())
    message = mail.read_text()
    assert "To: olivia@example.com" in message
    assert alert.summary in message
    assert f"{settings.STEWARD_BASE_URL}{alert.get_absolute_url()}" in message
    assert list(
        AuditEvent.objects.filter(object_type__in=["driftcheck", "alert"])
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["drift_check.request", "drift_check.complete", "alert.open", "alert.escalate"]


def test_the_reference_profile_is_built_once_and_reused(
    registered_version, current_dataset_version, scientist
):
    first, second = (_request(registered_version, current_dataset_version, scientist) for _ in range(2))

    execute_drift_check(first.pk, make_report=False)
    profile = ReferenceProfile.objects.get()
    built_at = profile.built_at
    execute_drift_check(second.pk, make_report=False)

    profile.refresh_from_db()
    first.refresh_from_db()
    second.refresh_from_db()
    assert (profile.state, profile.rows, profile.where, profile.predictions_of) == (
        "ready",
        8645,
        {"yr": 0},
        None,
    )
    assert (profile.dataset_version, profile.built_at) == (
        registered_version.training_dataset_version,
        built_at,
    )
    assert first.reference_profile == second.reference_profile == profile
    assert first.results == second.results
    assert DatasetProfile.from_dict(profile.profile).rows == 8645


def test_a_second_drifting_check_adds_to_the_open_alert(
    registered_version, current_dataset_version, scientist, mail_dir, django_capture_on_commit_callbacks
):
    checks = [_request(registered_version, current_dataset_version, scientist) for _ in range(2)]

    with django_capture_on_commit_callbacks(execute=True):
        states = [execute_drift_check(check.pk, make_report=False) for check in checks]

    alert = Alert.objects.get()
    assert states == [CheckState.SUCCEEDED, CheckState.SUCCEEDED]
    assert (alert.occurrences, alert.state, alert.drift_check_id) == (2, AlertState.OPEN, checks[1].pk)
    assert Alert.objects.filter(state__in=["open", "acknowledged"]).count() == 1
    assert list(
        AuditEvent.objects.filter(object_type="alert").values_list("action", flat=True).order_by("id")
    ) == ["alert.open", "alert.repeat", "alert.escalate"]  # the step went out on commit, after both
    assert mail_count(mail_dir) == 1


def test_after_resolution_new_drift_opens_a_new_alert(
    drifted_check, registered_version, current_dataset_version, owner, scientist
):
    from monitoring.actions.alerts import do_resolve_alert

    first = Alert.objects.get()
    do_resolve_alert(alert=first, actor=owner)

    execute_drift_check(
        _request(registered_version, current_dataset_version, scientist).pk, make_report=False
    )

    assert list(Alert.objects.order_by("id").values_list("state", "occurrences")) == [
        ("resolved", 1),
        ("open", 1),
    ]


def test_check_without_drift_opens_no_alert(registered_version, dataset, scientist, bike_frame, tmp_path):
    same = register_frame(dataset, bike_frame[bike_frame["yr"] == 0], tmp_path / "hour-2011.csv", scientist)
    check = _request(registered_version, same, scientist)

    assert execute_drift_check(check.pk, make_report=False) == CheckState.SUCCEEDED

    check.refresh_from_db()
    assert (check.drifted_count, check.is_dataset_drift, check.report) == (0, False, "")
    assert {c["status"] for c in check.results} == {"ok"}
    assert Alert.objects.count() == 0


def test_an_empty_column_is_drift_by_missing_rate_and_the_others_keep_their_verdicts(
    registered_version, dataset, scientist, bike_frame, tmp_path
):
    """Evidently aborts its whole report on a column with no values; the engine does not."""
    current = register_frame(
        dataset, bike_frame[bike_frame["yr"] == 1].assign(hum=np.nan), tmp_path / "no-humidity.csv", scientist
    )
    check = _request(registered_version, current, scientist)

    assert execute_drift_check(check.pk) == CheckState.SUCCEEDED
    # The report fails on its own; the check and its verdicts stay as they are.
    assert execute_drift_report(check.pk) == "failed"

    check.refresh_from_db()
    assert check.state == CheckState.SUCCEEDED
    hum = next(c for c in check.results if c["column"] == "hum")
    assert (hum["status"], hum["method"], hum["reference_missing_rate"], hum["current_missing_rate"]) == (
        "drift",
        "missing_rate",
        0.0,
        1.0,
    )
    assert [c["column"] for c in check.drifted_columns] == ["hum", "cnt"]
    assert check.report_error == (
        "evidently could not make its report: column(s) 'hum' have no values in the current data"
    )
    assert (check.report, check.evidently_results) == ("", [])
    assert Alert.objects.get().title == "Data drift on bike-demand v1: 2 of 12 columns"


def test_too_few_rows_are_insufficient_data_not_drift(
    registered_version, dataset, scientist, bike_frame, tmp_path
):
    few = register_frame(
        dataset, bike_frame[bike_frame["yr"] == 1].head(500), tmp_path / "few.csv", scientist
    )

    assert (
        execute_drift_check(_request(registered_version, few, scientist).pk, make_report=False) == "succeeded"
    )

    check = DriftCheck.objects.get()
    assert {(c["status"], c["message"]) for c in check.results} == {
        ("insufficient_data", "the current window has 500 rows; the minimum is 2000")
    }
    assert (check.drifted_count, check.is_dataset_drift, Alert.objects.count()) == (0, False, 0)


def test_a_missing_file_fails_the_check_with_the_reason(
    registered_version, current_dataset_version, scientist
):
    check = _request(registered_version, current_dataset_version, scientist)
    current_dataset_version.path.unlink()

    assert execute_drift_check(check.pk) == CheckState.FAILED

    check.refresh_from_db()
    assert check.error.startswith("[Errno 2] No such file or directory")
    assert (check.results, check.report, check.progress, check.stage) == ([], "", 1.0, "failed")
    assert Alert.objects.count() == 0
    assert AuditEvent.objects.filter(action="drift_check.fail", object_id=str(check.pk)).count() == 1


def test_running_a_finished_check_again_does_nothing(drifted_check):
    events = AuditEvent.objects.count()

    assert execute_drift_check(drifted_check.pk) == CheckState.SUCCEEDED
    assert AuditEvent.objects.count() == events
    assert Alert.objects.get().occurrences == 1


def test_redelivered_check_running_on_a_live_worker_is_left_alone(
    registered_version, current_dataset_version, scientist
):
    # Issue 16 changed this contract: a redelivery used to fail a check its live worker was running.
    check = _request(registered_version, current_dataset_version, scientist)
    assert claim_drift_check(check.pk) is True
    events = AuditEvent.objects.count()

    assert execute_drift_check(check.pk) == CheckState.RUNNING

    check.refresh_from_db()
    assert (check.state, check.attempt, check.error) == (CheckState.RUNNING, 1, "")
    assert AuditEvent.objects.count() == events
    assert Alert.objects.count() == 0


def test_redelivered_check_whose_worker_died_runs_again(
    registered_version, current_dataset_version, scientist
):
    check = _request(registered_version, current_dataset_version, scientist)
    assert claim_drift_check(check.pk) is True
    # Test set-up: its worker last beat two hours ago (telemetry, not audited).
    DriftCheck.objects.filter(pk=check.pk).update(heartbeat_at=timezone.now() - datetime.timedelta(hours=2))

    assert execute_drift_check(check.pk, make_report=False) == CheckState.SUCCEEDED

    check.refresh_from_db()
    assert (check.attempt, check.progress) == (2, 1.0)
    assert list(
        AuditEvent.objects.filter(object_type="driftcheck", object_id=str(check.pk))
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["drift_check.request", "drift_check.retry", "drift_check.complete"]


def test_the_stale_sweep_sends_a_check_whose_worker_died_again_or_fails_it_on_its_last_attempt(
    registered_version, current_dataset_version, scientist, settings, monkeypatch
):
    # Issue 16: a check's task redelivered while its heartbeat looked alive does nothing, so the
    # sweep is what brings back a check whose worker died.
    settings.STEWARD_JOB_HEARTBEAT_TIMEOUT_S = 90
    sent = []
    monkeypatch.setattr(config.celery.app, "send_task", lambda name, **options: sent.append(name))
    retried, last = (_request(registered_version, current_dataset_version, scientist) for _ in range(2))
    for check in (retried, last):
        assert claim_drift_check(check.pk) is True
    DriftCheck.objects.filter(pk=last.pk).update(attempt=settings.STEWARD_JOB_MAX_ATTEMPTS)
    DriftCheck.objects.update(heartbeat_at=timezone.now() - datetime.timedelta(hours=2))

    assert tasks.recover_stale_drift_checks() == [last.pk]

    assert sent == ["monitoring.tasks.run_drift_check"]
    assert DriftCheck.objects.get(pk=retried.pk).state == CheckState.RUNNING
    failed = DriftCheck.objects.get(pk=last.pk)
    assert (failed.state, failed.error) == (
        CheckState.FAILED,
        "no heartbeat from the worker for over 90 s on its last attempt (3 of 3); the worker was lost",
    )
    assert execute_drift_check(retried.pk, make_report=False) == CheckState.SUCCEEDED
    assert DriftCheck.objects.get(pk=retried.pk).attempt == 2


def test_request_names_unknown_columns_and_bad_shares(
    client_for, scientist, registered_version, current_dataset_version
):
    client = client_for(scientist)
    body = {"model_version": registered_version.pk, "current_dataset_version": current_dataset_version.pk}

    unknown = client.post("/api/drift-checks/", body | {"columns": ["temp", "rain"]}, format="json")
    zero = client.post("/api/drift-checks/", body | {"drift_share": 0}, format="json")
    chosen = client.post(
        "/api/drift-checks/", body | {"columns": ["temp", "hum"], "drift_share": 1}, format="json"
    )

    assert (unknown.status_code, unknown.json()) == (
        400,
        {"columns": ["'rain' not in the reference dataset version bike-sharing-hourly v1"]},
    )
    assert (zero.status_code, zero.json()) == (400, {"drift_share": ["must be in (0, 1], got 0.0"]})
    assert chosen.status_code == 201
    assert (chosen.json()["columns"], chosen.json()["drift_share"], chosen.json()["state"]) == (
        ["temp", "hum"],
        1.0,
        "queued",
    )
    assert DriftCheck.objects.count() == 1


def test_model_version_without_training_data_cannot_be_checked(
    client_for, scientist, registered_model, current_dataset_version
):
    version = do_register_model_version(
        model=registered_model,
        artifact_bytes=b"weights",
        metrics={},
        signature={},
        training_spec={},
        training_dataset_version=None,
        source_job_id=None,
        actor=scientist,
    )

    response = client_for(scientist).post(
        "/api/drift-checks/",
        {"model_version": version.pk, "current_dataset_version": current_dataset_version.pk},
        format="json",
    )

    assert (response.status_code, response.json()) == (
        400,
        {"model_version": ["bike-demand v1 has no training dataset version to compare to"]},
    )


# Alerts through the API


def test_owner_acknowledges_then_resolves(client_for, drifted_check, owner):
    alert = Alert.objects.get()
    client = client_for(owner)

    acknowledged = client.post(f"/api/alerts/{alert.pk}/acknowledge/")
    twice = client.post(f"/api/alerts/{alert.pk}/acknowledge/")
    resolved = client.post(f"/api/alerts/{alert.pk}/resolve/")
    again = client.post(f"/api/alerts/{alert.pk}/resolve/")

    assert (
        acknowledged.status_code,
        acknowledged.json()["state"],
        acknowledged.json()["acknowledged_by"],
    ) == (
        200,
        "acknowledged",
        "olivia",
    )
    assert (twice.status_code, twice.json()) == (
        400,
        {"state": [f"alert #{alert.pk} is acknowledged, not open"]},
    )
    assert (resolved.status_code, resolved.json()["state"], resolved.json()["resolved_by"]) == (
        200,
        "resolved",
        "olivia",
    )
    assert (again.status_code, again.json()) == (400, {"state": [f"alert #{alert.pk} is already resolved"]})
    assert list(
        AuditEvent.objects.filter(object_type="alert").order_by("id").values_list("action", "actor_label")
    ) == [("alert.open", "system"), ("alert.acknowledge", "olivia"), ("alert.resolve", "olivia")]


def test_viewer_cannot_acknowledge_or_resolve(client_for, drifted_check, viewer):
    alert = Alert.objects.get()
    events = AuditEvent.objects.count()
    client = client_for(viewer)

    answers = [client.post(f"/api/alerts/{alert.pk}/{verb}/") for verb in ("acknowledge", "resolve")]

    denied = {"detail": "only the model's owner or the team's model owners and data scientists may do this"}
    assert [(a.status_code, a.json()) for a in answers] == [(403, denied), (403, denied)]
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_by, alert.resolved_by) == (AlertState.OPEN, None, None)
    assert AuditEvent.objects.count() == events


def test_report_endpoint_returns_the_evidently_html(
    client, client_for, viewer, outsider, registered_version, current_dataset_version, scientist, settings
):
    check = _request(registered_version, current_dataset_version, scientist)
    queued = client_for(viewer).get(f"/api/drift-checks/{check.pk}/report/")
    execute_drift_check(check.pk)
    building = client_for(viewer).get(f"/api/drift-checks/{check.pk}/report/")
    execute_drift_report(check.pk)
    check.refresh_from_db()

    response = client_for(viewer).get(f"/api/drift-checks/{check.pk}/report/")
    hidden = client_for(outsider).get(f"/api/drift-checks/{check.pk}/report/")

    assert (queued.status_code, queued.json()) == (404, {"detail": "this drift check has no report (yet)"})
    assert building.status_code == 404  # the verdict is in; the report's task has not run yet
    client.force_login(viewer)
    page_copy = client.get(f"/drift-checks/{check.pk}/report/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    stored = (settings.ARTIFACT_ROOT / check.report).read_bytes()
    served_html = b"".join(response.streaming_content)
    # The stored report, with the storage stand-in its sandbox needs right after <head>.
    assert served_html.replace(STORAGE_SHIM, b"", 1) == stored
    head = served_html.index(b"<head>") + len(b"<head>")
    assert served_html[head : head + len(STORAGE_SHIM)] == STORAGE_SHIM
    # Both copies carry the report's own policy, not the site's (issue 13): its inline scripts
    # run sandboxed (an opaque origin: nothing of Steward's to read), nothing reaches the network,
    # only Steward frames it.
    assert page_copy.status_code == 200
    for served in (response, page_copy):
        assert served["Content-Security-Policy"] == (
            "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
            "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; frame-ancestors 'self'"
        )
    assert client_for(viewer).get(f"/api/drift-checks/{check.pk}/").json()["report_url"] == (
        f"/api/drift-checks/{check.pk}/report/"
    )
    assert hidden.status_code == 404


def test_drift_checks_and_alerts_lists_in_constant_queries(
    client_for,
    fresh,
    drifted_check,
    registered_version,
    current_dataset_version,
    scientist,
    owner,
    bike_drift_result,
    viewer,
    django_assert_num_queries,
):
    from monitoring.actions.alerts import do_acknowledge_alert, do_resolve_alert
    from monitoring.actions.checks import do_finish_drift_check

    do_resolve_alert(alert=Alert.objects.get(), actor=owner)
    for _ in range(2):
        do_finish_drift_check(
            _request(registered_version, current_dataset_version, scientist).pk, result=bike_drift_result
        )
    do_acknowledge_alert(alert=Alert.objects.get(state="open"), actor=scientist)
    checks_client, alerts_client = client_for(fresh(viewer)), client_for(fresh(viewer))

    # 1 platform and team roles (one UNION), 2 the page
    with django_assert_num_queries(2):
        checks = checks_client.get("/api/drift-checks/")
    # 1 platform and team roles (one UNION), 2 the page (owner, acknowledger, resolver joined)
    with django_assert_num_queries(2):
        alerts = alerts_client.get("/api/alerts/")

    assert len(checks.json()["results"]) == 3
    assert [
        (a["state"], a["occurrences"], a["acknowledged_by"], a["resolved_by"])
        for a in alerts.json()["results"]
    ] == [
        ("acknowledged", 2, "dana", None),
        ("resolved", 1, None, "olivia"),
    ]

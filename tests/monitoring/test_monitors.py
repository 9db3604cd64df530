"""Monitors: settings, their django-celery-beat schedule, their window of the model's predictions,
prediction and performance drift, progress, and retraining on drift."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from governance.models import AuditEvent
from monitoring.actions import checks, monitors
from monitoring.actions.checks import do_run_monitor
from monitoring.actions.monitors import (
    do_create_monitor,
    do_delete_monitor,
    do_pause_monitor,
    do_resume_monitor,
    do_update_monitor,
)
from monitoring.actions.policies import do_create_escalation_policy
from monitoring.actions.retraining import submit_retraining
from monitoring.engine import CheckConfig, build_profile, run_check
from monitoring.engine import performance as perf
from monitoring.execute import execute_drift_check, predict_with_model, prepare_reference_profiles
from monitoring.models import Alert, DriftCheck, Monitor, ReferenceProfile
from monitoring.queries import predictions_of, window_of
from monitoring.tasks import run_monitor
from runners import actions as runners_actions
from runners.models import Job
from tests.conftest import BIKE_FEATURES, DRIFT_COLUMNS, run_job


@pytest.fixture
def predict_2012(dataset_version, registered_version, scientist):
    """Run an inference job of the bike model on the 2012 rows (plain function, no broker)."""

    def run():
        job = run_job(
            kind="infer",
            dataset_version=dataset_version,
            model_version=registered_version,
            spec={"where": {"yr": 1}},
            actor=scientist,
        )
        return job.output_dataset_version

    return run


def test_a_new_monitor_takes_the_training_data_as_reference_and_gets_a_beat_schedule(
    registered_version, scientist
):
    monitor = do_create_monitor(
        model_version=registered_version, name="hourly", schedule_minutes=60, actor=scientist
    )

    assert (monitor.reference_dataset_version, monitor.reference_where) == (
        registered_version.training_dataset_version,
        {"yr": 0},
    )
    assert (monitor.source, monitor.columns, monitor.team) == (
        "predictions",
        DRIFT_COLUMNS,
        registered_version.team,
    )
    task = PeriodicTask.objects.get()
    assert (task.name, task.task, json.loads(task.args), task.enabled) == (
        f"monitor-{monitor.pk}",
        "monitoring.tasks.run_monitor",
        [monitor.pk],
        True,
    )
    assert (task.interval.every, task.interval.period) == (60, IntervalSchedule.MINUTES)
    assert monitor.periodic_task == task
    event = AuditEvent.objects.get(action="monitor.create")
    assert (event.actor, event.after["schedule_minutes"], event.after["columns"]) == (
        scientist,
        60,
        DRIFT_COLUMNS,
    )


def test_monitor_actions_keep_the_periodic_task_in_step(registered_version, scientist, owner):
    monitor = do_create_monitor(
        model_version=registered_version, name="hourly", schedule_minutes=60, actor=scientist
    )

    do_update_monitor(monitor=monitor, schedule_minutes=15, actor=scientist)
    every = PeriodicTask.objects.get().interval.every
    do_pause_monitor(monitor=monitor, actor=owner)
    paused = PeriodicTask.objects.get().enabled
    do_resume_monitor(monitor=monitor, actor=owner)
    resumed = PeriodicTask.objects.get().enabled
    do_update_monitor(monitor=monitor, schedule_minutes=None, actor=scientist)
    unscheduled = PeriodicTask.objects.count()
    do_update_monitor(monitor=monitor, schedule_minutes=5, actor=scientist)
    do_delete_monitor(monitor=Monitor.objects.get(), actor=owner)

    assert (every, paused, resumed, unscheduled) == (15, False, True, 0)
    assert (Monitor.objects.count(), PeriodicTask.objects.count()) == (0, 0)
    assert list(
        AuditEvent.objects.filter(object_type="monitor").order_by("id").values_list("action", "actor_label")
    ) == [
        ("monitor.create", "dana"),
        ("monitor.update", "dana"),
        ("monitor.pause", "olivia"),
        ("monitor.resume", "olivia"),
        ("monitor.update", "dana"),
        ("monitor.update", "dana"),
        ("monitor.delete", "olivia"),
    ]


@pytest.mark.parametrize(
    ("options", "errors"),
    [
        (
            {"columns": ["temp", "rain"]},
            {"columns": ["'rain' not in the reference dataset version bike-sharing-hourly v1"]},
        ),
        (
            {"methods": {"hum": "ttest"}},
            {
                "methods": [
                    "unknown method 'ttest' for column 'hum'; choose from "
                    "('ks', 'wasserstein', 'psi', 'jensenshannon', 'chisquare', 'z', 'missing_rate')"
                ]
            },
        ),
        (
            {"thresholds": {"hum": -1}},
            {"thresholds": ["threshold for column 'hum' must be a finite number >= 0"]},
        ),
        ({"thresholds": {"rain": 0.2}}, {"thresholds": ["'rain' is not a monitored column or 'prediction'"]}),
        ({"drift_share": 0}, {"drift_share": ["drift_share must be in (0, 1], got 0"]}),
        (
            {"source": "dataset"},
            {"current_dataset": ["choose the dataset whose uploaded versions are checked"]},
        ),
        (
            {"reference_where": {"year": 1}},
            {"reference_where": ["where: column 'year' is not in the dataset"]},
        ),
        (
            {"schedule_minutes": 0},
            {"schedule_minutes": ["must be at least 1 minute, or empty to run only on request"]},
        ),
        ({"performance_tolerance": 1.5}, {"performance_tolerance": ["must be in [0, 1)"]}),
        # Past these, beat's schedule and the reopen window overflowed (a hostile tester's find).
        ({"schedule_minutes": 10**18}, {"schedule_minutes": ["must be from 1 to 527040 minutes"]}),
        ({"reopen_within_hours": 10**15}, {"reopen_within_hours": ["must be from 0 to 8784 hours"]}),
        ({"window_versions": 10**12}, {"window_versions": ["must be from 1 to 1000 dataset versions"]}),
    ],
)
def test_monitor_settings_are_checked(registered_version, scientist, options, errors):
    with pytest.raises(ValidationError) as raised:
        do_create_monitor(model_version=registered_version, name="m", actor=scientist, **options)

    assert raised.value.message_dict == errors
    assert (Monitor.objects.count(), PeriodicTask.objects.count()) == (0, 0)


def test_a_policy_of_another_team_is_refused(registered_version, scientist, other_team, outsider, admin):
    from governance.actions.teams import do_set_membership

    do_set_membership(user=outsider, team=other_team, role="model_owner", actor=admin)
    policy = do_create_escalation_policy(
        team=other_team, name="theirs", levels=[{"users": [outsider]}], actor=outsider
    )

    with pytest.raises(ValidationError) as raised:
        do_create_monitor(
            model_version=registered_version, name="m", escalation_policy=policy, actor=scientist
        )

    assert raised.value.message_dict == {"escalation_policy": ["the policy belongs to another team"]}


def test_a_viewer_may_not_create_run_or_pause_a_monitor(registered_version, viewer, fresh, scientist):
    monitor = do_create_monitor(
        model_version=registered_version, name="m", actor=scientist, schedule_minutes=5
    )
    events = AuditEvent.objects.count()

    for act in (
        lambda: do_create_monitor(model_version=registered_version, name="v", actor=fresh(viewer)),
        lambda: do_run_monitor(monitor=monitor, actor=fresh(viewer)),
        lambda: do_pause_monitor(monitor=monitor, actor=fresh(viewer)),
        lambda: do_delete_monitor(monitor=monitor, actor=fresh(viewer)),
    ):
        with pytest.raises(PermissionDenied):
            act()

    assert list(Monitor.objects.values_list("name", "is_active")) == [("m", True)]
    assert (PeriodicTask.objects.get().enabled, DriftCheck.objects.count()) == (True, 0)
    assert AuditEvent.objects.count() == events


def test_the_window_is_the_newest_predictions_of_the_version_found_through_lineage(
    registered_version, scientist, predict_2012
):
    monitor = do_create_monitor(
        model_version=registered_version, name="m", window_versions=2, actor=scientist
    )
    with pytest.raises(ValidationError) as raised:
        do_run_monitor(monitor=monitor, actor=scientist)
    assert raised.value.message_dict == {
        "source": ["there are no inference outputs of bike-demand v1 to check yet"]
    }

    first, second, third = predict_2012(), predict_2012(), predict_2012()
    check = do_run_monitor(monitor=monitor, actor=scientist)

    assert list(predictions_of(registered_version)) == [third, second, first]
    assert window_of(monitor) == [second, third]
    assert (check.current_dataset_version, check.window) == (
        third,
        {
            "dataset_versions": [second.pk, third.pk],
            "labels": ["bike-demand-predictions v2", "bike-demand-predictions v3"],
            "rows": 2 * 8734,
        },
    )
    assert check.config["engine"]["columns"] == DRIFT_COLUMNS
    assert check.config["engine"]["min_sample_size"] == 2000


def test_predictions_drift_and_performance_against_the_training_baseline(
    registered_version, scientist, predict_2012, bike_frame, django_capture_on_commit_callbacks, settings
):
    monitor = do_create_monitor(model_version=registered_version, name="m", actor=scientist)
    predictions = predict_2012()
    check = do_run_monitor(monitor=monitor, actor=scientist)
    seen = {}

    def predictor(model_version, rows):
        # Called mid-check: the row shows how far the check has got.
        seen["progress"] = DriftCheck.objects.values_list("state", "progress", "stage").get(pk=check.pk)
        return predict_with_model(model_version, rows)

    assert execute_drift_check(check.pk, predictor=predictor, make_report=False) == "succeeded"

    check.refresh_from_db()
    reference_rows = bike_frame[bike_frame["yr"] == 0]
    current = pd.read_csv(predictions.path)
    reference_predictions = predict_with_model(registered_version, reference_rows)
    expected_prediction = run_check(
        build_profile(pd.DataFrame({"prediction": reference_predictions.to_numpy()})),
        current[["prediction"]],
        CheckConfig(columns=("prediction",)),
    ).columns[0]
    assert seen["progress"] == ("running", 0.6, "prediction and performance drift")
    assert check.prediction == expected_prediction.to_dict()
    assert check.prediction["method"] == "wasserstein"
    error = current["prediction"] - current["cnt"]
    mae, rmse = float(np.abs(error).mean()), float(np.sqrt((error**2).mean()))
    baseline = registered_version.metrics
    # A new monitor tests the change by bootstrap (issue 11): each metric's interval of the
    # difference to the validation baseline lies wholly above zero (an error metric: worse is up).
    intervals = {
        name: {key: values.pop(key) for key in ("difference", "ci_low", "ci_high", "ci_level", "test")}
        for name, values in check.performance["metrics"].items()
    }
    for name, value in (("mae", mae), ("rmse", rmse)):
        found = intervals[name]
        assert found["difference"] == pytest.approx(value - baseline[name])
        assert 0 < found["ci_low"] < found["difference"] < found["ci_high"]
        assert (found["ci_level"], found["test"]) == (pytest.approx(0.9), "bootstrap")
    assert check.performance == {
        "task": "regression",
        "target": "cnt",
        "rows": 8734,
        "test": "bootstrap",
        "alpha": 0.05,
        "min_effect": 0.0,
        "tolerance": 0.1,
        "coverage": {"rows": 8734, "labelled": 8734, "share": 1.0, "late_labels": 0, "joined_on": ""},
        "status": "drift",
        "message": "worse than baseline: mae, rmse",
        "metrics": {
            "mae": {
                "current": pytest.approx(mae),
                "baseline": baseline["mae"],
                "baseline_source": "validation",
                "change": pytest.approx(mae / baseline["mae"] - 1),
                "is_degraded": True,
            },
            "rmse": {
                "current": pytest.approx(rmse),
                "baseline": baseline["rmse"],
                "baseline_source": "validation",
                "change": pytest.approx(rmse / baseline["rmse"] - 1),
                "is_degraded": True,
            },
        },
    }
    assert check.is_performance_drift is True
    # The model's predictions on the reference rows are cached beside the data's profile.
    cached = ReferenceProfile.objects.get(predictions_of=registered_version)
    assert (cached.state, cached.rows) == ("ready", 8645)
    truth, predicted = perf.labelled(
        reference_rows["cnt"], pd.Series(reference_predictions.to_numpy(), index=reference_rows.index)
    )
    assert cached.baseline_metrics == pytest.approx(perf.regression_metrics(truth, predicted))
    alert = Alert.objects.get()
    # The monitor's severity, though performance drifted: monitor, check and alert agree (issue 14).
    assert (check.monitor.severity, check.breach_severity, alert.severity) == ("warning",) * 3
    # The title names each kind that breached, each in the check's own words.
    assert alert.title.startswith("Data drift on bike-demand v1: 2 of 12 columns; performance drift: mae ")
    assert f"mae {mae:.4g}" in alert.title
    assert alert.summary.splitlines()[-2:] == [
        f"mae: {mae:.4g} against baseline {baseline['mae']:.4g} ({mae / baseline['mae'] - 1:+.0%})",
        f"rmse: {rmse:.4g} against baseline {baseline['rmse']:.4g} ({rmse / baseline['rmse'] - 1:+.0%})",
    ]
    assert alert.evidence["performance"]["mae"]["is_degraded"] is True


def test_without_a_model_runtime_prediction_drift_is_skipped(registered_version, scientist, predict_2012):
    monitor = do_create_monitor(model_version=registered_version, name="m", actor=scientist)
    predict_2012()
    check = do_run_monitor(monitor=monitor, actor=scientist)

    execute_drift_check(check.pk, make_report=False)

    check.refresh_from_db()
    assert check.prediction == {
        "column": "prediction",
        "status": "skipped",
        "message": "no model runtime in this process to predict on the reference rows",
        "is_drifted": False,
    }
    assert check.performance["metrics"]["mae"]["baseline_source"] == "validation"


def test_profiles_can_be_built_before_the_first_check(registered_version, scientist):
    monitor = do_create_monitor(model_version=registered_version, name="m", actor=scientist)

    assert prepare_reference_profiles(monitor.pk, predictor=predict_with_model) == ["ready", "ready"]
    assert prepare_reference_profiles(monitor.pk, predictor=predict_with_model) == ["ready", "ready"]
    assert ReferenceProfile.objects.count() == 2


def test_retraining_is_submitted_once_when_the_alert_opens(registered_version, scientist, predict_2012):
    monitor = do_create_monitor(
        model_version=registered_version, name="m", retrain_on_drift=True, actor=scientist
    )
    predict_2012()
    calls, submitted = [], []

    # A real job row: retrain_job is a foreign key to runners.Job (issue 8).
    def retrainer(monitor, check):
        calls.append((monitor.pk, check.pk))
        submitted.append(submit_retraining(monitor, check))
        return submitted[-1]

    first = do_run_monitor(monitor=monitor, actor=scientist)
    execute_drift_check(first.pk, retrainer=retrainer, make_report=False)
    second = do_run_monitor(monitor=monitor, actor=scientist)
    execute_drift_check(second.pk, retrainer=retrainer, make_report=False)

    alert = Alert.objects.get()
    (job_id,) = submitted
    assert calls == [(monitor.pk, first.pk)]
    assert (alert.retrain_job_id, DriftCheck.objects.get(pk=first.pk).retrain_job_id) == (job_id, job_id)
    assert list(alert.events.values_list("kind", "note")) == [
        ("open", alert.events.first().note),
        ("retrain", f"training job #{job_id}"),
        ("repeat", alert.events.last().note),
    ]
    assert AuditEvent.objects.filter(action="alert.retrain").count() == 1


def test_submit_retraining_trains_on_the_newest_labelled_data(registered_version, scientist, owner):
    monitor = do_create_monitor(
        model_version=registered_version,
        name="m",
        retrain_on_drift=True,
        retrain_where={"yr": 1},
        actor=scientist,
    )
    check = DriftCheck(pk=1)

    job = Job.objects.get(pk=submit_retraining(monitor, check))

    assert (job.kind, job.state, job.dataset_version, job.registered_model) == (
        "train",
        "queued",
        registered_version.training_dataset_version,
        registered_version.model,
    )
    assert (job.spec["where"], job.spec["features"], job.created_by) == ({"yr": 1}, BIKE_FEATURES, scientist)


def test_a_refused_retraining_is_recorded_on_the_alert(registered_version, scientist, predict_2012):
    monitor = do_create_monitor(
        model_version=registered_version, name="m", retrain_on_drift=True, actor=scientist
    )
    predict_2012()

    def refuse(monitor, check):
        raise PermissionDenied("you may not change objects of this team")

    execute_drift_check(
        do_run_monitor(monitor=monitor, actor=scientist).pk, retrainer=refuse, make_report=False
    )

    alert = Alert.objects.get()
    assert (alert.retrain_job_id, alert.events.get(kind="retrain").note) == (
        None,
        "not submitted: you may not change objects of this team",
    )


def test_the_scheduled_task_checks_an_active_monitor_only(registered_version, scientist, predict_2012):
    monitor = do_create_monitor(model_version=registered_version, name="m", actor=scientist)
    nothing_yet = run_monitor(monitor.pk)
    predict_2012()

    check_id = run_monitor(monitor.pk)
    do_pause_monitor(monitor=monitor, actor=scientist)
    paused = run_monitor(monitor.pk)

    check = DriftCheck.objects.get()
    assert (nothing_yet, check_id, paused) == (None, check.pk, None)
    assert (check.monitor, check.created_by, check.state) == (monitor, scientist, "queued")
    event = AuditEvent.objects.get(action="drift_check.request")
    assert (event.actor_label, event.on_behalf_of) == ("system", scientist)


@pytest.mark.django_db(transaction=True)
def test_retrain_job_ids_are_kept_as_foreign_keys_and_dangling_ones_nulled(
    monkeypatch, registered_version, current_dataset_version, scientist
):
    # Committed for real (the migrations run outside a test transaction): nothing goes to a broker.
    monkeypatch.setattr(checks, "enqueue_drift_check", lambda check_id: None)
    monkeypatch.setattr(monitors, "enqueue_reference_profiles", lambda monitor_id: None)
    monkeypatch.setattr(runners_actions, "enqueue_job", lambda job_id: None)
    monitor = do_create_monitor(
        model_version=registered_version, name="m", retrain_on_drift=True, actor=scientist
    )
    kept, dangling = (
        checks.do_request_drift_check(
            model_version=registered_version, current_dataset_version=current_dataset_version, actor=scientist
        )
        for _ in range(2)
    )
    job_id = submit_retraining(monitor, kept)
    executor = MigrationExecutor(connection)
    executor.migrate([("monitoring", "0002_monitors_escalation_channels")])
    # Before issue 8 the column was a bare integer: any number, a deleted job's included.
    with connection.cursor() as cursor:
        update = "UPDATE monitoring_driftcheck SET retrain_job_id = %s WHERE id = %s"
        cursor.execute(update, [job_id, kept.pk])
        cursor.execute(update, [4242, dangling.pk])

    executor = MigrationExecutor(connection)
    # Every app's leaves, not only monitoring's: going back unapplied the other apps' migrations that
    # depend on a later monitoring one, and the tests after this one need their tables.
    executor.migrate(executor.loader.graph.leaf_nodes())

    ids = dict(DriftCheck.objects.values_list("pk", "retrain_job_id"))
    assert ids == {kept.pk: job_id, dangling.pk: None}
    assert DriftCheck.objects.get(pk=kept.pk).retrain_job == Job.objects.get(pk=job_id)
    Job.objects.filter(pk=job_id).delete()
    assert DriftCheck.objects.get(pk=kept.pk).retrain_job_id is None

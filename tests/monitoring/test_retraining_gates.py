"""Retraining triggered by drift goes through the same promotion gates (issue 15): the version a
monitor's retraining job registers asks for production through the promotion API like any other,
the gate policy's evaluation runs on it, and approval is refused while a gate fails, naming it.

Everything real: a bike-sharing model, its 2012 predictions drifting, the drift check task with
the retrainer the worker passes, the training and evaluation jobs run by the worker's function."""

from __future__ import annotations

import pytest

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.promotions import do_approve_promotion, do_request_promotion
from governance.models import AuditEvent, DatasetVersion, Evaluation, ModelAlias, PromotionRequest
from monitoring import tasks as monitoring_tasks
from monitoring.models import Alert
from runners.execute import execute_job
from runners.models import Job, JobKind, JobState
from tests.conftest import run_job

# The bike model's RMSE is about a hundred riders an hour: a bound of 1 fails.
GATES = [{"kind": "metric_bound", "metric": "rmse", "max": 1.0}, {"kind": "no_open_critical_alert"}]


@pytest.fixture
def drift_retrained_version(client_for, scientist, registered_version, dataset_version):
    """The version registered by the training job a drift alert submitted (monitor with
    ``retrain_on_drift``), and the check's alert."""
    client = client_for(scientist)
    monitor = client.post(
        "/api/monitors/",
        {
            "model_version": registered_version.pk,
            "name": "drift",
            "retrain_on_drift": True,
            # Retrain on the newest month only: a small job in test time.
            "retrain_where": {"yr": 1, "mnth": 12},
        },
        format="json",
    )
    assert monitor.status_code == 201, monitor.json()
    # The model's predictions on the 2012 rows: the window the monitor checks.
    run_job(
        kind="infer",
        dataset_version=dataset_version,
        model_version=registered_version,
        spec={"where": {"yr": 1}},
        actor=scientist,
    )
    check = client.post(f"/api/monitors/{monitor.json()['id']}/run/")
    assert check.status_code == 201, check.json()

    # The task the worker runs: the check, then the retraining the alert it opened asks for.
    monitoring_tasks.run_drift_check(check.json()["id"])

    alert = Alert.objects.get()
    retraining = alert.retrain_job
    assert (retraining.kind, retraining.registered_model, retraining.created_by) == (
        JobKind.TRAIN,
        registered_version.model,
        scientist,
    )
    assert execute_job(retraining.pk) == "succeeded"
    retraining.refresh_from_db()
    return retraining.output_model_version


@pytest.fixture
def december_2012(team, scientist, bike_frame, tmp_path) -> DatasetVersion:
    """The 744 rows of December 2012 as their own dataset: held-out data the gates evaluate on."""
    path = tmp_path / "december-2012.csv"
    bike_frame[(bike_frame["yr"] == 1) & (bike_frame["mnth"] == 12)].to_csv(path, index=False)
    dataset = do_create_dataset(team=team, name="bike-december-2012", actor=scientist)
    return do_register_dataset_version(
        dataset=dataset,
        file_path=path,
        filename=path.name,
        source=DatasetVersion.Source.PATH,
        actor=scientist,
    )


def test_a_version_retrained_on_drift_is_held_by_the_failing_gate(
    client_for,
    team,
    owner,
    scientist,
    approver,
    registered_version,
    december_2012,
    drift_retrained_version,
    django_capture_on_commit_callbacks,
):
    # Version 1 held production before the team set gates on it.
    first = do_request_promotion(model_version=registered_version, actor=scientist, acknowledge_alerts=True)
    do_approve_promotion(promotion_request=first, actor=approver)
    protected = client_for(owner).put(
        f"/api/teams/{team.pk}/protected-aliases/", {"protected_aliases": ["production"]}, format="json"
    )
    assert protected.status_code == 200, protected.json()
    policy = client_for(owner).put(
        "/api/gate-policies/set/",
        {
            "team": team.pk,
            "alias": "production",
            "conditions": GATES,
            "evaluation": {"dataset": december_2012.dataset_id, "task": "regression", "target": "cnt"},
        },
        format="json",
    )
    assert policy.status_code == 200, policy.json()
    retrained = drift_retrained_version
    assert (retrained.version, retrained.source_job_id) == (2, Alert.objects.get().retrain_job_id)

    # The retrained version asks for production through the promotion API: the policy's
    # evaluation starts on it, as for any candidate.
    with django_capture_on_commit_callbacks(execute=True):
        requested = client_for(scientist).post(
            "/api/promotion-requests/",
            {"model_version": retrained.pk, "reason": "retrained on drift"},
            format="json",
        )
    assert requested.status_code == 201, requested.json()
    evaluation_job = Job.objects.get(kind=JobKind.EVALUATE)
    assert (
        evaluation_job.model_version,
        evaluation_job.dataset_version,
        evaluation_job.spec["champion_version"],
    ) == (
        retrained,
        december_2012,
        registered_version.pk,
    )
    assert execute_job(evaluation_job.pk) == JobState.SUCCEEDED
    rmse = Evaluation.objects.get(job_id=evaluation_job.pk).results["metrics"]["rmse"]
    events = AuditEvent.objects.count()

    refused = client_for(approver).post(
        f"/api/promotion-requests/{requested.json()['id']}/approve/", {"reason": "looks fine"}, format="json"
    )

    assert refused.status_code == 400
    (message,) = refused.json()["gates"]
    ci = f" (CI {rmse['ci_low']:.4g} to {rmse['ci_high']:.4g})"
    assert message == (
        f"gate metric_bound fails: rmse = {rmse['value']:.4g}{ci}, must be ≤ 1. "
        "Approval is refused while a gate fails; an approver may override with a written reason "
        "(override_reason), which a second approver must then approve"
    )
    assert ModelAlias.objects.get(name="production").model_version == registered_version
    assert PromotionRequest.objects.get(pk=requested.json()["id"]).state == "pending"
    assert AuditEvent.objects.count() == events
    shown = client_for(approver).get(f"/api/promotion-requests/{requested.json()['id']}/").json()
    assert [(gate["kind"], gate["passed"]) for gate in shown["gate_results"]] == [
        ("metric_bound", False),
        ("no_open_critical_alert", True),
    ]

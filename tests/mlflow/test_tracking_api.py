"""The tracking side of Steward's MLflow API (issue 9) through the real client and raw HTTP: the
rules each endpoint keeps (RBAC, unknown ids, malformed batches, the artifact proxy's path and size
limits), each denial asserting that nothing changed."""

from __future__ import annotations

import datetime
import hashlib
import math
from pathlib import Path

import pytest
import requests
from django.utils import timezone
from mlflow.exceptions import MlflowException

from governance.models import AuditEvent
from runners.actions import do_fail_stale_jobs, do_redispatch_queued_jobs
from runners.models import Experiment, Job, LoggedModel, RunArtifact, RunMetric
from tests.mlflow.artifact_helpers import run_file

pytestmark = pytest.mark.django_db(transaction=True)


def call(steward_server, token: str, method: str, endpoint: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{steward_server.url}{endpoint}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        **kwargs,
    )


@pytest.fixture
def run(mlflow_client):
    """A running run of the scientist in a fresh experiment."""
    experiment_id = mlflow_client.create_experiment("tracking-rules")
    return mlflow_client.create_run(experiment_id, run_name="rules")


def artifact_url(run) -> str:
    info = run.info
    return f"/api/2.0/mlflow-artifacts/artifacts/experiments/{info.experiment_id}/{info.run_id}/artifacts"


def test_experiment_lifecycle_audited_and_names_unique_per_team(mlflow_client, team):
    experiment_id = mlflow_client.create_experiment("churn", tags={"purpose": "demo"})
    experiment = Experiment.objects.get(pk=int(experiment_id))
    assert (experiment.team, experiment.tags) == (team, {"purpose": "demo"})
    assert experiment.artifact_location == f"mlflow-artifacts:/experiments/{experiment_id}"
    with pytest.raises(MlflowException) as taken:
        mlflow_client.create_experiment("CHURN")
    assert taken.value.error_code == "RESOURCE_ALREADY_EXISTS"
    assert Experiment.objects.count() == 1

    assert mlflow_client.get_experiment_by_name("churn").experiment_id == experiment_id
    mlflow_client.rename_experiment(experiment_id, "churn-v2")
    mlflow_client.set_experiment_tag(experiment_id, "owner", "mobility")
    mlflow_client.delete_experiment(experiment_id)
    assert mlflow_client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    assert [e.name for e in mlflow_client.search_experiments()] == []
    mlflow_client.restore_experiment(experiment_id)
    fetched = mlflow_client.get_experiment(experiment_id)
    assert (fetched.name, fetched.lifecycle_stage, fetched.tags) == (
        "churn-v2",
        "active",
        {"purpose": "demo", "owner": "mobility"},
    )
    assert [e.name for e in mlflow_client.search_experiments(filter_string="name LIKE 'churn%'")] == [
        "churn-v2"
    ]
    assert list(
        AuditEvent.objects.filter(object_type__icontains="experiment")
        .order_by("id")
        .values_list("action", flat=True)
    ) == [
        "experiment.create",
        "experiment.rename",
        "experiment.delete",
        "experiment.restore",
    ]


def test_unknown_run_is_resource_does_not_exist(mlflow_client):
    with pytest.raises(MlflowException) as missing:
        mlflow_client.get_run("0" * 32)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as no_experiment:
        mlflow_client.create_run("999999")
    assert no_experiment.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert not Job.objects.exists()


def test_log_batch_stores_nan_and_refuses_a_non_numeric_value(mlflow_env, steward_server, mlflow_client, run):
    token = mlflow_env["MLFLOW_TRACKING_TOKEN"]
    run_id = run.info.run_id
    ok = call(
        steward_server,
        token,
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        json={
            "run_id": run_id,
            "metrics": [
                {"key": "auc", "value": "NaN", "timestamp": 1000, "step": 0},
                {"key": "auc", "value": 0.75, "timestamp": 2000, "step": 1},
            ],
            "params": [{"key": "lr", "value": "0.1"}],
            "tags": [{"key": "team", "value": "mobility"}],
        },
    )
    assert ok.status_code == 200, ok.text
    history = mlflow_client.get_metric_history(run_id, "auc")
    assert [m.step for m in history] == [0, 1]
    assert math.isnan(history[0].value)
    assert history[1].value == 0.75

    bad = call(
        steward_server,
        token,
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        json={"run_id": run_id, "metrics": [{"key": "auc", "value": "high", "timestamp": 3000, "step": 2}]},
    )
    assert bad.status_code == 400
    assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "value must be a number" in bad.json()["message"]
    assert RunMetric.objects.filter(key="auc").count() == 2

    # A parameter is logged once: another value is refused and the first stays.
    with pytest.raises(MlflowException) as changed:
        mlflow_client.log_param(run_id, "lr", "0.2")
    assert changed.value.error_code == "INVALID_PARAMETER_VALUE"
    fetched = mlflow_client.get_run(run_id)
    assert fetched.data.params == {"lr": "0.1"}
    assert fetched.data.metrics == {"auc": 0.75}
    assert fetched.data.tags["team"] == "mobility"


def test_run_end_is_final_search_and_delete(mlflow_client, run):
    run_id = run.info.run_id
    mlflow_client.log_param(run_id, "model", "forest")
    mlflow_client.log_metric(run_id, "rmse", 40.0)
    mlflow_client.set_terminated(run_id, "FINISHED")
    with pytest.raises(MlflowException) as reopened:
        mlflow_client.set_terminated(run_id, "FAILED")
    assert reopened.value.error_code == "INVALID_PARAMETER_VALUE"
    assert mlflow_client.get_run(run_id).info.status == "FINISHED"
    assert AuditEvent.objects.filter(action="run.end").count() == 1

    experiment_id = run.info.experiment_id
    other = mlflow_client.create_run(experiment_id)
    found = mlflow_client.search_runs(
        [experiment_id], filter_string="params.model = 'forest' AND metrics.rmse < 50"
    )
    assert [r.info.run_id for r in found] == [run_id]
    assert len(mlflow_client.search_runs([experiment_id])) == 2
    mlflow_client.delete_run(other.info.run_id)
    assert [r.info.run_id for r in mlflow_client.search_runs([experiment_id])] == [run_id]
    mlflow_client.restore_run(other.info.run_id)
    assert len(mlflow_client.search_runs([experiment_id])) == 2
    with pytest.raises(MlflowException) as bad_filter:
        mlflow_client.search_runs([experiment_id], filter_string="params.model = 'forest' OR params.x = 'y'")
    assert bad_filter.value.error_code == "INVALID_PARAMETER_VALUE"


def test_another_team_cannot_read_the_run_or_its_artifacts(
    mlflow_env, steward_server, mlflow_client, use_token, run, tmp_path, outsider
):
    upload = call(
        steward_server,
        mlflow_env["MLFLOW_TRACKING_TOKEN"],
        "PUT",
        f"{artifact_url(run)}/notes.txt",
        data=b"secret",
    )
    assert upload.status_code == 200, upload.text
    outsider_token = use_token(outsider)
    with pytest.raises(MlflowException) as hidden:
        mlflow_client.get_run(run.info.run_id)
    assert hidden.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    for method, endpoint, kwargs in [
        ("GET", f"{artifact_url(run)}/notes.txt", {}),
        (
            "GET",
            "/api/2.0/mlflow-artifacts/artifacts",
            {"params": {"path": artifact_url(run).split("artifacts/", 1)[1]}},
        ),
        ("PUT", f"{artifact_url(run)}/planted.txt", {"data": b"x"}),
    ]:
        answer = call(steward_server, outsider_token, method, endpoint, **kwargs)
        assert answer.status_code == 404, (method, endpoint, answer.text)
        assert answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as refused:
        mlflow_client.log_metric(run.info.run_id, "x", 1.0)
    assert refused.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    job = Job.objects.get(pk=int(run.info.run_id))
    assert run_file(job, "planted.txt") is None
    assert not RunMetric.objects.exists()


def test_a_viewer_reads_but_cannot_log(mlflow_client, use_token, run, viewer):
    use_token(viewer)
    assert mlflow_client.get_run(run.info.run_id).info.run_name == "rules"
    with pytest.raises(MlflowException) as denied:
        mlflow_client.log_metric(run.info.run_id, "x", 1.0)
    assert denied.value.error_code == "PERMISSION_DENIED"
    assert not RunMetric.objects.exists()


def test_artifact_proxy_refuses_traversal_and_oversized_uploads(
    mlflow_env, steward_server, run, settings, tmp_path
):
    token = mlflow_env["MLFLOW_TRACKING_TOKEN"]
    job = Job.objects.get(pk=int(run.info.run_id))
    for endpoint in (f"{artifact_url(run)}/%2E%2E/%2E%2E/escaped.txt", f"{artifact_url(run)}/a//b.txt"):
        answer = call(steward_server, token, "PUT", endpoint, data=b"x")
        assert answer.status_code == 400, (endpoint, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    listing = call(
        steward_server,
        token,
        "GET",
        "/api/2.0/mlflow-artifacts/artifacts",
        params={"path": f"experiments/{job.experiment_id}/{job.mlflow_run_id}/artifacts/../../.."},
    )
    assert listing.status_code == 400
    assert not RunArtifact.objects.filter(path__contains="escaped").exists()

    settings.STEWARD_MAX_MODEL_BYTES = 10
    too_big = call(steward_server, token, "PUT", f"{artifact_url(run)}/big.bin", data=b"x" * 11)
    assert too_big.status_code == 400
    assert "at most 10 bytes" in too_big.json()["message"]
    assert run_file(job, "big.bin") is None
    # Nothing left behind, not even the refused upload's scratch file.
    assert not RunArtifact.objects.exists()
    assert not list(Path(settings.STEWARD_ARTIFACT_CACHE).glob(".incoming-*"))
    fits = call(steward_server, token, "PUT", f"{artifact_url(run)}/small.bin", data=b"x" * 10)
    assert fits.status_code == 200
    assert run_file(job, "small.bin") == b"x" * 10


def test_logged_model_create_finalize_search_and_tags(mlflow_client, run):
    from mlflow.entities import LoggedModelStatus

    model = mlflow_client.create_logged_model(
        run.info.experiment_id, name="forest", source_run_id=run.info.run_id, params={"depth": "4"}
    )
    assert model.model_id.startswith("m-")
    assert model.status == LoggedModelStatus.PENDING
    finalized = mlflow_client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    assert finalized.status == LoggedModelStatus.READY
    mlflow_client.set_logged_model_tags(model.model_id, {"quality": "good"})
    mlflow_client.delete_logged_model_tag(model.model_id, "quality")
    mlflow_client.set_logged_model_tags(model.model_id, {"kept": "yes"})
    found = mlflow_client.search_logged_models([run.info.experiment_id], filter_string="name = 'forest'")
    assert [(m.model_id, m.params, m.tags) for m in found] == [
        (model.model_id, {"depth": "4"}, {"kept": "yes"})
    ]
    assert LoggedModel.objects.get().source_run.mlflow_run_id == run.info.run_id
    assert list(
        AuditEvent.objects.filter(action__startswith="logged_model.")
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["logged_model.create", "logged_model.finalize"]
    with pytest.raises(MlflowException) as missing:
        mlflow_client.get_logged_model("m-" + "0" * 32)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_the_run_page_shows_a_tracked_run_to_its_team_only(mlflow_client, run, scientist, outsider, client):
    mlflow_client.log_param(run.info.run_id, "depth", "7")
    mlflow_client.log_metric(run.info.run_id, "rmse", 41.5)
    job = Job.objects.get(pk=int(run.info.run_id))
    client.force_login(scientist)
    page = client.get(job.get_absolute_url())
    assert page.status_code == 200
    body = page.content.decode()
    assert run.info.run_id in body
    assert "tracking-rules" in body
    assert "&quot;depth&quot;: &quot;7&quot;" in body
    assert "41.5" in body
    assert "Cancel job" not in body  # its MLflow client ends it
    assert client.post(f"{job.get_absolute_url()}cancel/").status_code == 400
    job.refresh_from_db()
    assert (job.state, job.is_cancel_requested) == ("running", False)
    jobs = client.get("/jobs/")
    assert jobs.status_code == 200
    assert "tracking-rules" in jobs.content.decode()
    client.force_login(outsider)
    assert client.get(job.get_absolute_url()).status_code == 404


def test_a_versions_files_download_through_the_proxy_to_its_team_only(
    mlflow_env, steward_server, registered_version, api_token, outsider
):
    token = mlflow_env["MLFLOW_TRACKING_TOKEN"]
    root = f"steward/model-versions/{registered_version.pk}"
    listing = call(steward_server, token, "GET", "/api/2.0/mlflow-artifacts/artifacts", params={"path": root})
    assert listing.status_code == 200
    (entry,) = listing.json()["files"]
    assert (entry["is_dir"], entry["file_size"]) == (False, registered_version.size_bytes)
    download = call(
        steward_server, token, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{root}/{entry['path']}"
    )
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == registered_version.sha256
    # Immutable: no upload into a registered version.
    planted = call(
        steward_server, token, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{root}/extra.bin", data=b"x"
    )
    assert planted.status_code == 400
    # Another team's user: the version does not exist for them.
    outsider_token = api_token(outsider)
    hidden = call(
        steward_server, outsider_token, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{root}/{entry['path']}"
    )
    assert (hidden.status_code, hidden.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    hidden_list = call(
        steward_server, outsider_token, "GET", "/api/2.0/mlflow-artifacts/artifacts", params={"path": root}
    )
    assert hidden_list.status_code == 404


def test_the_stale_sweep_leaves_a_quiet_tracked_run_running(run):
    # A tracked run runs outside Steward: no heartbeat to miss, nothing to re-send to a worker.
    job = Job.objects.get(pk=int(run.info.run_id))
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - datetime.timedelta(hours=2))
    assert do_fail_stale_jobs(90) == []
    assert do_redispatch_queued_jobs(0, 12) == []
    job.refresh_from_db()
    assert (job.state, job.attempt, job.dispatch_count) == ("running", 0, 0)

"""Issue 17: a code run's code logs through the real ``mlflow`` client with a token scoped to its
job. What it logs lands on the job (params, metric history with steps, artifacts, a registered
model version with lineage); everything outside its own run is refused, naming the rule."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
import requests
from django.utils import timezone
from mlflow.exceptions import MlflowException

from governance.actions.datasets import do_erase_dataset_version
from governance.actions.model_versions import do_register_model_version_from_artifact
from governance.actions.tokens import do_issue_job_token, do_revoke_job_tokens
from governance.models import ApiToken, AuditEvent, ModelVersion, TokenScope
from governance.names import name_key
from lineage.models import LineageEdge
from runners.models import (
    CodeProject,
    CodeVersion,
    Experiment,
    Job,
    JobDataset,
    JobDatasetRole,
    JobKind,
    JobState,
    RunInput,
    RunMetric,
)
from runners.tracking import (
    CODE_STATUS_TAG,
    do_create_experiment,
    do_create_logged_model,
)
from tests.mlflow.artifact_helpers import plant_folder, run_file

pytestmark = pytest.mark.django_db(transaction=True)

RULE = "a job token may only use the MLflow API of its own run (job #{})"
ARABIC_INDIC = str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")


def make_code_run(team, user, *, experiment: Experiment, inputs=(), state=JobState.RUNNING) -> Job:
    """A code run as the worker leaves it when its code starts: kind code, running, with its
    experiment, code version and dataset inputs (the code-run slice submits these for real)."""
    project, _ = CodeProject.objects.get_or_create(
        team=team, name_key=name_key("bike-code"), defaults={"name": "bike-code", "created_by": user}
    )
    code, _ = CodeVersion.objects.get_or_create(
        project=project,
        version=1,
        defaults={
            "sha256": "0" * 64,
            "file": "code/none.tar",
            "size_bytes": 0,
            "entry_points": {"main": {"command": "python train.py", "parameters": {}}},
            "created_by": user,
        },
    )
    job = Job.objects.create(
        team=team,
        kind=JobKind.CODE,
        state=state,
        code_version=code,
        entry_point="main",
        experiment=experiment,
        run_name="code-run",
        created_by=user,
        started_at=timezone.now(),
        finished_at=timezone.now() if state in (JobState.SUCCEEDED, JobState.FAILED) else None,
    )
    for name, version in inputs:
        JobDataset.objects.create(job=job, role=JobDatasetRole.INPUT, name=name, dataset_version=version)
    return job


def job_token(job: Job) -> str:
    _, secret = do_issue_job_token(
        job_id=job.pk, user=job.created_by, expires_at=timezone.now() + datetime.timedelta(hours=1)
    )
    return secret


@pytest.fixture
def experiment(scientist) -> Experiment:
    return do_create_experiment(name="code-runs", actor=scientist)


@pytest.fixture
def code_run(team, scientist, experiment, dataset_version) -> Job:
    """A running code run of ``scientist`` reading the real bike data as its input ``train``."""
    return make_code_run(team, scientist, experiment=experiment, inputs=[("train", dataset_version)])


@pytest.fixture
def code_env(mlflow_env, code_run, monkeypatch) -> str:
    """The environment a code run's code gets: its job token, run id and experiment id."""
    secret = job_token(code_run)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", secret)
    monkeypatch.setenv("MLFLOW_RUN_ID", str(code_run.pk))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", str(code_run.experiment_id))
    # A code run's process starts fresh; this test process may hold an earlier test's experiment.
    monkeypatch.setattr("mlflow.tracking.fluent._active_experiment_id", None)
    return secret


def call(steward_server, token: str, method: str, endpoint: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{steward_server.url}{endpoint}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        **kwargs,
    )


def refused(excinfo, job: Job) -> str:
    """The refusal's message, after checking it is MLflow's PERMISSION_DENIED naming the rule."""
    assert excinfo.value.error_code == "PERMISSION_DENIED"
    assert RULE.format(job.pk) in excinfo.value.message
    return excinfo.value.message


def test_code_logs_to_its_own_run_and_registers_a_version(
    code_env, code_run, mlflow_client, dataset_version, scientist, tmp_path
):
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LinearRegression

    notes = tmp_path / "notes.txt"
    notes.write_text("fitted on three points\n")
    model = LinearRegression().fit(np.array([[0.0], [1.0], [2.0]]), np.array([1.0, 3.0, 5.0]))
    events_before = AuditEvent.objects.count()

    with mlflow.start_run() as run:
        # MLFLOW_RUN_ID resumes the job's run; no new run is created.
        assert run.info.run_id == str(code_run.pk)
        assert run.info.experiment_id == str(code_run.experiment_id)
        mlflow.log_param("alpha", "0.5")
        for step, loss in enumerate([4.0, 2.5, 1.25]):
            mlflow.log_metric("loss", loss, step=step)
        mlflow.log_artifact(str(notes))
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name="bike-code-model", serialization_format="cloudpickle"
        )

    code_run.refresh_from_db()
    # end_run told Steward FINISHED: kept as a tag, the job stays the worker's to end.
    assert code_run.state == JobState.RUNNING
    assert code_run.finished_at is None
    assert code_run.tags[CODE_STATUS_TAG] == "FINISHED"
    assert mlflow_client.get_run(str(code_run.pk)).info.status == "RUNNING"
    assert code_run.params == {"alpha": "0.5"}
    assert code_run.metrics["loss"] == 1.25
    assert list(RunMetric.objects.filter(job=code_run, key="loss").values_list("step", "value")) == [
        (0, 4.0),
        (1, 2.5),
        (2, 1.25),
    ]
    assert run_file(code_run, "notes.txt") == b"fitted on three points\n"
    assert [f.path for f in mlflow_client.list_artifacts(str(code_run.pk))] == ["notes.txt"]

    # The version: from the job, with its metrics and params, trained on its "train" input.
    version = ModelVersion.objects.get(model__name="bike-code-model")
    assert version.source_job_id == code_run.pk
    assert version.source == f"models:/{info.model_id}"
    assert version.metrics == {"loss": 1.25}
    assert version.training_spec["params"]["alpha"] == "0.5"
    assert version.training_dataset_version_id == dataset_version.pk
    assert version.model.team_id == code_run.team_id
    assert set(
        LineageEdge.objects.filter(target_type="model_version").values_list(
            "source_type", "source_id", "target_id", "relation"
        )
    ) == {("job", code_run.pk, version.pk, "output")}
    # Audited as its submitter, through the token's user; nobody else's name on it.
    event = AuditEvent.objects.get(id__gt=0, action="model_version.register", object_id=str(version.pk))
    assert (event.actor_id, event.on_behalf_of_id) == (scientist.pk, None)
    assert AuditEvent.objects.count() > events_before

    # The code may read back the version it registered (the client polls it), not promote it.
    again = mlflow_client.get_model_version("bike-code-model", "1")
    assert again.run_id == str(code_run.pk)
    for attempt in (
        lambda: mlflow_client.set_registered_model_alias("bike-code-model", "production", "1"),
        lambda: mlflow_client.delete_model_version("bike-code-model", "1"),
        lambda: mlflow_client.transition_model_version_stage("bike-code-model", "1", "Archived"),
    ):
        with pytest.raises(MlflowException) as excinfo:
            attempt()
        refused(excinfo, code_run)
    version.refresh_from_db()
    assert (version.status, version.aliases.count()) == (ModelVersion.Status.READY, 0)


def test_start_run_resumes_and_params_are_set_once(code_env, code_run, mlflow_client, dataset_version):
    import mlflow
    import pandas as pd

    with mlflow.start_run():
        # An input logged with the file's sha256 as digest links to that dataset version.
        frame = pd.DataFrame({"hr": [0, 1], "cnt": [16, 40]})
        mlflow.log_input(mlflow.data.from_pandas(frame, name="bike", digest=dataset_version.sha256))
        mlflow.log_param("lr", "0.1")
        with pytest.raises(MlflowException) as changed:
            mlflow.log_param("lr", "0.2")
        assert changed.value.error_code == "INVALID_PARAMETER_VALUE"
        mlflow.set_tag("phase", "fit")
        mlflow.end_run(status="FAILED")
    code_run.refresh_from_db()
    assert code_run.params == {"lr": "0.1"}
    assert (code_run.state, code_run.tags[CODE_STATUS_TAG], code_run.tags["phase"]) == (
        JobState.RUNNING,
        "FAILED",
        "fit",
    )
    assert Job.objects.filter(kind=JobKind.TRACKED).count() == 0
    assert list(RunInput.objects.filter(job=code_run).values_list("name", "dataset_version")) == [
        ("bike", dataset_version.pk)
    ]


def test_searches_answer_only_its_own_run_and_experiment(
    code_env, code_run, team, scientist, experiment, mlflow_client
):
    other = make_code_run(team, scientist, experiment=experiment)
    runs = mlflow_client.search_runs([str(experiment.pk)])
    assert [r.info.run_id for r in runs] == [str(code_run.pk)]
    assert other.pk != code_run.pk
    assert [e.experiment_id for e in mlflow_client.search_experiments()] == [str(experiment.pk)]
    assert mlflow_client.get_experiment_by_name("code-runs").experiment_id == str(experiment.pk)


def test_everything_outside_its_run_is_refused(
    code_env, code_run, team, scientist, experiment, mlflow_client, model_version, other_team, outsider
):
    # Another run, even of the same user, team and experiment.
    other = make_code_run(team, scientist, experiment=experiment)
    for attempt in (
        lambda: mlflow_client.log_param(str(other.pk), "x", "1"),
        lambda: mlflow_client.log_metric(str(other.pk), "x", 1.0),
        lambda: mlflow_client.get_run(str(other.pk)),
        lambda: mlflow_client.set_terminated(str(other.pk)),
    ):
        with pytest.raises(MlflowException) as excinfo:
            attempt()
        refused(excinfo, code_run)
    theirs = do_create_logged_model(experiment=experiment, source_run=other, actor=scientist)
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.get_logged_model(theirs.pk)
    refused(excinfo, code_run)
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.finalize_logged_model(theirs.pk, "READY")
    refused(excinfo, code_run)
    assert mlflow_client.search_logged_models([str(experiment.pk)]) == []
    # Creating experiments and runs, deleting its own run.
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.create_experiment("elsewhere")
    refused(excinfo, code_run)
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.create_run(str(experiment.pk))
    refused(excinfo, code_run)
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.delete_run(str(code_run.pk))
    refused(excinfo, code_run)
    # Another experiment, by id and by name.
    elsewhere = do_create_experiment(name="elsewhere", actor=scientist)
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.get_experiment(str(elsewhere.pk))
    refused(excinfo, code_run)
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.get_experiment_by_name("elsewhere")
    refused(excinfo, code_run)
    # A version it did not register (its own team's), a registered model, another team's model.
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.get_model_version(model_version.model.name, str(model_version.version))
    refused(excinfo, code_run)
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.get_registered_model(model_version.model.name)
    refused(excinfo, code_run)
    assert mlflow_client.search_model_versions() == []
    assert Experiment.objects.filter(name="elsewhere").count() == 1
    assert Job.objects.filter(deleted_at__isnull=False).count() == 0
    assert "x" not in Job.objects.get(pk=other.pk).params


def test_another_teams_version_is_refused_like_a_missing_one(
    code_env, code_run, steward_server, other_team, outsider, tmp_path
):
    from governance.actions.registered_models import do_create_registered_model

    theirs = do_create_registered_model(team=other_team, name="fraud-model", owner=outsider, actor=outsider)
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00" * 8)
    do_register_model_version_from_artifact(
        model=theirs, artifact_path=weights, source="test", actor=outsider
    )
    answers = [
        call(
            steward_server,
            code_env,
            "GET",
            "/api/2.0/mlflow/model-versions/get",
            params={"name": name, "version": "1"},
        )
        for name in ("fraud-model", "no-such-model")
    ]
    assert [a.status_code for a in answers] == [403, 403]
    assert [a.json()["error_code"] for a in answers] == ["PERMISSION_DENIED", "PERMISSION_DENIED"]
    assert (
        answers[0].json()["message"].replace("fraud-model", "no-such-model") == answers[1].json()["message"]
    )


def test_registering_another_runs_artifacts_is_refused(
    code_env, code_run, team, scientist, experiment, steward_server, sklearn_model_dir
):
    other = make_code_run(team, scientist, experiment=experiment)
    plant_folder(other, sklearn_model_dir, "model")
    created = call(
        steward_server, code_env, "POST", "/api/2.0/mlflow/registered-models/create", json={"name": "stolen"}
    )
    assert created.status_code == 200
    answer = call(
        steward_server,
        code_env,
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        json={"name": "stolen", "source": f"runs:/{other.pk}/model"},
    )
    assert answer.status_code == 403
    assert RULE.format(code_run.pk) in answer.json()["message"]
    assert ModelVersion.objects.filter(model__name="stolen").count() == 0
    # Another team in the steward.team tag is refused too.
    answer = call(
        steward_server,
        code_env,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        json={"name": "abroad", "tags": [{"key": "steward.team", "value": "fraud"}]},
    )
    assert answer.status_code == 403


@pytest.mark.parametrize(
    "run_id",
    ["abc", "-1", "1e3", "9" * 40, " {pk}", "{pk}.0", "{pk}/../{other}", "ARABIC"],
)
def test_forged_run_ids_are_refused(code_env, code_run, steward_server, run_id):
    if run_id == "ARABIC":
        run_id = str(code_run.pk).translate(ARABIC_INDIC)
    run_id = run_id.format(pk=code_run.pk, other=code_run.pk + 1)
    for method, endpoint, body in (
        ("POST", "/api/2.0/mlflow/runs/log-parameter", {"run_id": run_id, "key": "k", "value": "v"}),
        (
            "POST",
            "/api/2.0/mlflow/runs/log-metric",
            {"run_id": run_id, "key": "k", "value": 1, "timestamp": 1},
        ),
    ):
        answer = call(steward_server, code_env, method, endpoint, json=body)
        assert answer.status_code == 403, (run_id, answer.text)
        assert answer.json()["error_code"] == "PERMISSION_DENIED"
    answer = call(steward_server, code_env, "GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id})
    assert answer.status_code == 403
    code_run.refresh_from_db()
    assert code_run.params == {}
    assert RunMetric.objects.filter(job=code_run).count() == 0


def test_artifacts_of_another_run_are_refused(
    code_env, code_run, team, scientist, experiment, steward_server
):
    other = make_code_run(team, scientist, experiment=experiment)
    base = "/api/2.0/mlflow-artifacts/artifacts"
    put = call(
        steward_server,
        code_env,
        "PUT",
        f"{base}/experiments/{experiment.pk}/{other.pk}/artifacts/x.txt",
        data=b"intruder",
    )
    assert put.status_code == 403
    assert run_file(other, "x.txt") is None
    listing = call(steward_server, code_env, "GET", base, params={"path": f"experiments/{experiment.pk}"})
    assert listing.status_code == 403
    own = call(
        steward_server,
        code_env,
        "PUT",
        f"{base}/experiments/{experiment.pk}/{code_run.pk}/artifacts/ok.txt",
        data=b"mine",
    )
    assert own.status_code == 200
    assert run_file(code_run, "ok.txt") == b"mine"


def test_drf_refuses_a_job_token(code_env, code_run, steward_server, dataset_version):
    answer = requests.get(
        f"{steward_server.url}/api/datasets/", headers={"Authorization": f"Bearer {code_env}"}, timeout=30
    )
    assert answer.status_code == 403
    assert answer.json()["detail"] == RULE.format(code_run.pk)


def test_revoked_token_and_finished_job_are_401(
    code_env, code_run, team, scientist, experiment, steward_server
):
    do_revoke_job_tokens(job_id=code_run.pk)
    answer = call(steward_server, code_env, "GET", "/api/2.0/mlflow/runs/get", params={"run_id": code_run.pk})
    assert (answer.status_code, answer.json()["error_code"]) == (401, "UNAUTHENTICATED")
    assert "revoked" in answer.json()["message"]

    finished = make_code_run(team, scientist, experiment=experiment, state=JobState.SUCCEEDED)
    secret = job_token(finished)
    answer = call(
        steward_server,
        secret,
        "POST",
        "/api/2.0/mlflow/runs/log-parameter",
        json={"run_id": str(finished.pk), "key": "late", "value": "1"},
    )
    assert (answer.status_code, answer.json()["error_code"]) == (401, "UNAUTHENTICATED")
    assert f"job #{finished.pk}" in answer.json()["message"]
    finished.refresh_from_db()
    assert finished.params == {}


def test_a_user_token_sees_a_code_run_but_cannot_end_or_delete_it(code_run, mlflow_client):
    run = mlflow_client.get_run(str(code_run.pk))
    assert (run.info.status, run.info.experiment_id) == ("RUNNING", str(code_run.experiment_id))
    mlflow_client.set_terminated(str(code_run.pk), "KILLED")
    code_run.refresh_from_db()
    assert (code_run.state, code_run.tags[CODE_STATUS_TAG]) == (JobState.RUNNING, "KILLED")
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.delete_run(str(code_run.pk))
    assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE"
    code_run.refresh_from_db()
    assert code_run.deleted_at is None


def test_job_tokens_stay_out_of_the_personal_token_lists(code_run, scientist, client_for, api_token, client):
    api_token(scientist)
    job_token(code_run)
    listed = client_for(scientist).get("/api/tokens/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [row["name"] for row in rows] == ["mlflow"]
    client.force_login(scientist)
    page = client.get("/account/tokens/").content.decode()
    assert "mlflow" in page
    assert f"job {code_run.pk}" not in page
    job_token_pk = ApiToken.objects.get(scope=TokenScope.JOB).pk
    assert client_for(scientist).post(f"/api/tokens/{job_token_pk}/revoke/").status_code == 404
    assert ApiToken.objects.filter(user=scientist, scope=TokenScope.JOB).count() == 1


def test_a_tracked_run_still_ends_through_update_run(mlflow_client):
    experiment_id = mlflow_client.create_experiment("tracked")
    run = mlflow_client.create_run(experiment_id)
    mlflow_client.set_terminated(run.info.run_id, "FINISHED")
    job = Job.objects.get(pk=int(run.info.run_id))
    assert (job.kind, job.state, CODE_STATUS_TAG in job.tags) == (JobKind.TRACKED, JobState.SUCCEEDED, False)


def test_training_input_is_the_first_without_one_named_train(team, scientist, experiment, dataset_version):
    from runners.mlflow_sources import training_input

    job = make_code_run(team, scientist, experiment=experiment, inputs=[("rides", dataset_version)])
    assert training_input(job) == dataset_version.pk
    assert training_input(make_code_run(team, scientist, experiment=experiment)) is None


def test_a_code_run_whose_input_was_erased_registers_nothing(
    code_env, code_run, mlflow_client, dataset_version, owner, steward_server, sklearn_model_dir
):
    """GDPR Art. 17 (issue 12): the code's own registration, through MLflow with its job token,
    is refused once the data it was given is erased while it runs; nothing is half-registered."""
    plant_folder(code_run, sklearn_model_dir, "model")
    do_erase_dataset_version(dataset_version=dataset_version, reason="subject request", actor=owner)
    created = call(
        steward_server,
        code_env,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        json={"name": "from-erased"},
    )
    assert created.status_code == 200

    answer = call(
        steward_server,
        code_env,
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        json={"name": "from-erased", "source": f"runs:/{code_run.pk}/model", "run_id": str(code_run.pk)},
    )

    assert answer.status_code == 400, answer.text
    assert f"run {code_run.pk} read {dataset_version}, which was erased on" in answer.json()["message"]
    assert not ModelVersion.objects.filter(model__name="from-erased").exists()
    assert not LineageEdge.objects.filter(source_type="job", source_id=code_run.pk).exists()
    assert not AuditEvent.objects.filter(action="model_version.register").exists()

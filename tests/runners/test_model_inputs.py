"""Model versions as inputs of a code run (issue 17: "it can read only what the job was given"):
batch inference by the templates' ``predict`` entry points, run for real by the worker's plain
function ``execute_job`` in the sandbox against a live Steward, with a version registered by an
earlier training code run; and what the job token may and may not do with a given version."""

from __future__ import annotations

import datetime
import json

import pandas as pd
import pytest
import requests
from django.utils import timezone
from mlflow.exceptions import MlflowException

from governance.actions.model_versions import do_delete_model_version, do_register_model_version
from governance.actions.registered_models import do_create_registered_model
from governance.actions.tokens import do_issue_job_token
from governance.models import ApiToken, DatasetVersion, ModelVersion
from lineage.models import LineageEdge
from runners.code_runs import do_submit_code_run
from runners.code_versions import do_create_code_project, do_register_code_version
from runners.execute import execute_job
from runners.models import CodeVersion, Job, JobLogChunk, JobState
from tests.conftest import BIKE_FEATURES, BIKE_HOURLY, small_training_spec
from tests.runners.code_fixtures import make_code_version

RULE = "a job token may only use the MLflow API of its own run (job #{})"
PREDICT = {
    "MLproject": """
        name: scorer
        entry_points:
          main:
            parameters:
              model_uri: {type: uri}
              note: {type: string, default: model}
            command: "python score.py {model_uri} {note}"
    """,
    "score.py": "import os, sys\nprint(sys.argv[1:], os.environ.get('STEWARD_MODEL_MODEL'))\n",
}


def template(team, user, name: str) -> CodeVersion:
    """Version 1 of project ``name``: the shipped template ``name``, registered by ``user``."""
    project = do_create_code_project(team=team, name=name, actor=user)
    return do_register_code_version(project, template=name, actor=user)


def log_of(job: Job) -> str:
    return "".join(JobLogChunk.objects.filter(job=job).order_by("seq").values_list("text", flat=True))


def ran(job: Job) -> Job:
    """Run ``job`` as a worker would; it must succeed (its log shown otherwise)."""
    state = execute_job(job.pk)
    job.refresh_from_db()
    assert state == JobState.SUCCEEDED, f"{job.error}\n{log_of(job)}"
    return job


def trained_vision_model(team, user, model_name: str = "digits-cnn") -> tuple[DatasetVersion, ModelVersion]:
    """The vision template's digits (its ``prepare`` entry point) and its CNN trained on them for 4
    epochs by a code run, as ``user`` runs them; the model version is registered as ``model_name``."""
    code = template(team, user, "vision")
    digits = ran(
        do_submit_code_run(
            code_version=code, entry_point="prepare", outputs={"datasets": ["digits"]}, actor=user
        )
    ).output_dataset_version
    ran(
        do_submit_code_run(
            code_version=code,
            entry_point="train",
            parameters={"epochs": 4, "model_name": model_name},
            inputs={"train": digits},
            actor=user,
        )
    )
    return digits, ModelVersion.objects.get(model__name=model_name)


def edges_into(job: Job) -> set[tuple[str, int, str]]:
    return set(
        LineageEdge.objects.filter(target_type="job", target_id=job.pk).values_list(
            "source_type", "source_id", "relation"
        )
    )


@pytest.mark.django_db(transaction=True)
def test_tabular_template_predicts_with_a_version_a_training_run_registered(
    team, scientist, dataset_version, live_server, settings
):
    settings.STEWARD_API_URL = live_server.url
    code = template(team, scientist, "tabular")
    train = ran(
        do_submit_code_run(
            code_version=code,
            entry_point="train",
            parameters={
                "target": "cnt",
                "features": ",".join(BIKE_FEATURES),
                "categorical": "season,weathersit",
                "epochs": 3,
                "model_name": "bike-template",
            },
            inputs={"train": dataset_version},
            actor=scientist,
        )
    )
    version = ModelVersion.objects.select_related("model").get(model__name="bike-template")
    assert (version.version, version.source_job_id, version.flavor) == (1, train.pk, "steward_tabular")

    job = ran(
        do_submit_code_run(
            code_version=code,
            entry_point="predict",
            parameters={"model_uri": "model"},
            inputs={"data": dataset_version},
            models={"model": version},
            outputs={"datasets": ["predictions"]},
            actor=scientist,
        )
    )
    assert job.spec["models"] == {"model": version.pk}
    assert "running predict: python predict.py --model-uri=models:/bike-template/1" in log_of(job)
    predictions = job.output_dataset_version
    assert (predictions.dataset.name, predictions.dataset.team_id) == ("predictions", team.pk)
    frame = pd.read_csv(predictions.path)
    truth = pd.read_csv(BIKE_HOURLY)
    assert len(frame) == len(truth) == predictions.row_count
    assert list(frame.columns) == [*truth.columns, "prediction"]
    # Sane predictions: rentals per hour that follow the hours' demand, not a constant.
    assert frame["prediction"].notna().all()
    assert frame["prediction"].corr(frame["cnt"]) > 0.5
    assert abs(frame["prediction"].mean() - frame["cnt"].mean()) < frame["cnt"].std()
    assert edges_into(job) == {
        ("code_version", code.pk, "input"),
        ("dataset_version", dataset_version.pk, "input"),
        ("model_version", version.pk, "input"),
    }
    assert LineageEdge.objects.filter(
        source_type="job", source_id=job.pk, target_type="dataset_version", target_id=predictions.pk
    ).exists()
    assert not ApiToken.objects.filter(job_id=job.pk, revoked_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_vision_template_predicts_with_a_version_a_training_run_registered(
    team, scientist, live_server, settings
):
    settings.STEWARD_API_URL = live_server.url
    code = template(team, scientist, "vision")
    prepared = ran(
        do_submit_code_run(
            code_version=code, entry_point="prepare", outputs={"datasets": ["digits"]}, actor=scientist
        )
    )
    digits = prepared.output_dataset_version
    assert digits.row_count == 1797
    ran(
        do_submit_code_run(
            code_version=code,
            entry_point="train",
            parameters={"epochs": 4, "model_name": "digits-cnn"},
            inputs={"train": digits},
            actor=scientist,
        )
    )
    version = ModelVersion.objects.get(model__name="digits-cnn")
    assert (version.version, version.executes_code) == (1, True)

    job = ran(
        do_submit_code_run(
            code_version=code,
            entry_point="predict",
            parameters={"model_uri": "cnn"},
            inputs={"data": digits},
            models={"cnn": version},
            outputs={"datasets": ["predictions"]},
            actor=scientist,
        )
    )
    assert "--model-uri=models:/digits-cnn/1" in log_of(job)
    frame = pd.read_csv(job.output_dataset_version.path)
    assert len(frame) == 1797
    assert frame["confidence"].between(0, 1).all()
    assert set(frame["prediction"]) <= set(range(10))
    # The CNN labels the digits it learned from (it reached > 0.9 on held-out ones in training).
    assert (frame["prediction"] == frame["label"]).mean() > 0.9
    assert ("model_version", version.pk, "input") in edges_into(job)


@pytest.fixture
def versions(registered_version, scientist, bike_training_result, dataset_version) -> list[ModelVersion]:
    """Versions 1 and 2 of the team's ``bike-demand`` (the same trained artifact, no job)."""
    second = do_register_model_version(
        model=registered_version.model,
        artifact_bytes=bike_training_result.artifact,
        metrics=bike_training_result.metrics,
        signature=bike_training_result.signature,
        training_spec=small_training_spec(),
        training_dataset_version=dataset_version,
        source_job_id=None,
        actor=None,
        on_behalf_of=scientist,
    )
    return [registered_version, second]


def _running_with_token(job: Job) -> str:
    """``job`` as its worker leaves it when its code starts (claimed, running), and its token."""
    Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING, started_at=timezone.now(), attempt=1)
    _, secret = do_issue_job_token(
        job_id=job.pk, user=job.created_by, expires_at=timezone.now() + datetime.timedelta(hours=1)
    )
    return secret


@pytest.mark.django_db(transaction=True)
def test_the_job_token_reads_the_given_version_only(
    team, scientist, owner, versions, mlflow_env, monkeypatch, tmp_path
):
    import mlflow
    from mlflow import MlflowClient

    given, other = versions
    code = make_code_version(team, scientist, PREDICT)
    job = do_submit_code_run(
        code_version=code,
        entry_point="main",
        parameters={"model_uri": "model"},
        models={"model": given},
        actor=scientist,
    )
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", _running_with_token(job))
    client = MlflowClient()

    # Reading the given version: its description, download URI and files (the model's artifact).
    assert client.get_model_version("bike-demand", "1").version == "1"
    uri = client.get_model_version_download_uri("bike-demand", "1")
    assert uri == f"mlflow-artifacts:/steward/model-versions/{given.pk}"
    local = mlflow.artifacts.download_artifacts("models:/bike-demand/1", dst_path=str(tmp_path / "given"))
    files = [path for path in (tmp_path / "given").rglob("*") if path.is_file()]
    assert [path.read_bytes() for path in files] == [given.path.read_bytes()], local

    def refusal(call, *args) -> str:
        with pytest.raises(MlflowException) as excinfo:
            call(*args)
        assert excinfo.value.error_code == "PERMISSION_DENIED"
        assert RULE.format(job.pk) in excinfo.value.message
        return excinfo.value.message

    # Version 2 was not given: refused, naming the rule, whichever way it is asked for.
    message = refusal(client.get_model_version, "bike-demand", "2")
    assert message.endswith(
        "version 2 of 'bike-demand' is neither an output of its run nor a model version the job was given"
    )
    refusal(client.get_model_version_download_uri, "bike-demand", "2")
    with pytest.raises(requests.HTTPError) as excinfo:
        mlflow.artifacts.download_artifacts(f"mlflow-artifacts:/steward/model-versions/{other.pk}")
    assert excinfo.value.response.status_code == 403
    assert RULE.format(job.pk) in excinfo.value.response.json()["message"]
    # The given one is read-only to it; aliases and the model itself stay closed.
    refusal(client.set_model_version_tag, "bike-demand", "1", "k", "v")
    refusal(client.update_model_version, "bike-demand", "1", "changed")
    refusal(client.delete_model_version, "bike-demand", "1")
    refusal(client.set_registered_model_alias, "bike-demand", "prod", "1")
    refusal(client.get_model_version_by_alias, "bike-demand", "prod")
    # Its model is shown (the client checks it first) with no version it may not read.
    model = client.get_registered_model("bike-demand")
    assert (model.name, model.latest_versions, model.aliases) == ("bike-demand", [], {})
    do_create_registered_model(team=team, name="bike-other", owner=owner, actor=owner)
    assert "model 'bike-other' holds no version" in refusal(client.get_registered_model, "bike-other")
    given.refresh_from_db()
    assert (given.tags, given.description, given.status) == ({}, "", ModelVersion.Status.READY)
    assert not given.aliases.exists()
    # A version deleted while the run runs is no longer readable.
    do_delete_model_version(version=given, actor=owner)
    refusal(client.get_model_version_download_uri, "bike-demand", "1")


@pytest.mark.django_db
def test_given_models_are_validated_at_submission(
    team, scientist, owner, viewer, admin, other_team, outsider, versions, dataset_version, client_for
):
    code = make_code_version(team, scientist, PREDICT)
    client = client_for(scientist)
    body = {
        "kind": "code",
        "code_version": code.pk,
        "entry_point": "main",
        "parameters": {"model_uri": "model"},
        "models": {"model": versions[0].pk},
    }
    created = client.post("/api/jobs/", body, format="json")
    assert created.status_code == 201, created.json()
    job = Job.objects.get(pk=created.json()["id"])
    assert job.spec["models"] == {"model": versions[0].pk}
    assert job.spec["parameters"] == {"model_uri": "model", "note": "model"}

    foreign_model = do_create_registered_model(team=other_team, name="fraud", owner=outsider, actor=outsider)
    foreign = do_register_model_version(
        model=foreign_model,
        artifact_bytes=versions[0].path.read_bytes(),
        metrics={},
        signature=versions[0].signature,
        training_spec={},
        training_dataset_version=None,
        source_job_id=None,
        actor=None,
        on_behalf_of=outsider,
    )
    do_delete_model_version(version=versions[1], actor=owner)
    refusals = {
        "another team's, unseen": ({"model": foreign.pk}, f'Invalid pk \\"{foreign.pk}\\"'),
        "deleted": ({"model": versions[1].pk}, "model: bike-demand v2 is deleted"),
        "bad name": ({"a model": versions[0].pk}, "'a model': 1 to 64 of A-Z"),
        "same variable": (
            {"m-1": versions[0].pk, "m_1": versions[0].pk},
            "name the same variable STEWARD_MODEL_M_1",
        ),
        "not an object": ([versions[0].pk], "Expected a dictionary"),
    }
    jobs = Job.objects.count()
    for case, (models, message) in refusals.items():
        answer = client.post("/api/jobs/", body | {"models": models}, format="json")
        assert answer.status_code == 400, case
        assert message in json.dumps(answer.json()), (case, answer.json())
    clash = client.post("/api/jobs/", body | {"inputs": {"model": dataset_version.pk}}, format="json")
    assert clash.status_code == 400
    assert "'model' also name dataset inputs" in json.dumps(clash.json())
    # A platform admin sees the other team's version: refused as of another team, named.
    answer = client_for(admin).post("/api/jobs/", body | {"models": {"model": foreign.pk}}, format="json")
    assert answer.status_code == 400
    assert "model: fraud v1 belongs to another team than the code" in json.dumps(answer.json())
    assert client_for(viewer).post("/api/jobs/", body, format="json").status_code == 403
    assert Job.objects.count() == jobs


@pytest.mark.django_db
def test_a_version_deleted_before_the_run_starts_fails_it_with_the_reason(team, scientist, owner, versions):
    code = make_code_version(team, scientist, PREDICT)
    job = do_submit_code_run(
        code_version=code,
        entry_point="main",
        parameters={"model_uri": "model"},
        models={"model": versions[0]},
        actor=scientist,
    )
    do_delete_model_version(version=versions[0], actor=owner)
    assert execute_job(job.pk) == JobState.FAILED
    job.refresh_from_db()
    assert job.error == "model input 'model': bike-demand v1 is deleted; the run cannot read it"
    assert not ApiToken.objects.filter(job_id=job.pk).exists()
    assert not LineageEdge.objects.filter(target_type="job", target_id=job.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_the_uri_reaches_the_code_as_a_parameter_and_in_its_environment(
    team, scientist, versions, live_server, settings
):
    settings.STEWARD_API_URL = live_server.url
    code = make_code_version(team, scientist, PREDICT)
    job = ran(
        do_submit_code_run(
            code_version=code,
            entry_point="main",
            parameters={"model_uri": "model", "note": "model"},
            models={"model": versions[1]},
            actor=scientist,
        )
    )
    # Both the uri and the string parameter name the given model; the variable holds its URI.
    assert "['models:/bike-demand/2', 'models:/bike-demand/2'] models:/bike-demand/2\n" in log_of(job)
    assert ("model_version", versions[1].pk, "input") in edges_into(job)
    assert DatasetVersion.objects.count() == 1

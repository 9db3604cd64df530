"""Issue 9, flows 1 and 4, with the real ``mlflow`` client against a live Steward: a run logged
with params, metrics, tags, artifacts and an input dataset; an sklearn and a PyTorch model logged
(MLflow 3 logged models) and registered; the version loaded back by alias through the artifact
proxy predicts what the logged model predicted."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.test import Client
from mlflow.exceptions import MlflowException

from governance.models import AuditEvent, ModelVersion
from lineage.models import LineageEdge
from runners.models import ExternalDataset, Job, JobKind, JobState, LoggedModel, RunInput, RunMetric
from tests.test_charts import page

pytestmark = pytest.mark.django_db(transaction=True)

FEATURES = ["temp", "hum", "windspeed", "hr"]


@pytest.fixture(scope="module")
def bike_rows(bike_frame) -> pd.DataFrame:
    """A few hundred rows of the real hourly bike data: enough for a small regression."""
    return bike_frame.iloc[:400][[*FEATURES, "cnt"]].reset_index(drop=True)


def actions(after: int) -> list[str]:
    """The audit events' actions since event ``after`` (the fixtures' own events come before)."""
    return list(AuditEvent.objects.filter(id__gt=after).order_by("id").values_list("action", flat=True))


def last_event_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_sklearn_run_logged_registered_and_loaded_by_alias(
    mlflow_env, mlflow_client, bike_rows, tmp_path, team, scientist, outsider, client_for
):
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LinearRegression

    X, y = bike_rows[FEATURES], bike_rows["cnt"]
    before = last_event_id()
    notes = tmp_path / "notes.txt"
    notes.write_text("trained on the first 400 hours\n")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "residuals.csv").write_text("i,residual\n0,1.5\n")

    experiment = mlflow.set_experiment("bike-demand-experiments")
    with mlflow.start_run(run_name="linear-baseline") as run:
        mlflow.log_param("model", "linear")
        mlflow.log_params({"features": ",".join(FEATURES), "rows": len(X)})
        for step, loss in enumerate([9.0, 5.0, 3.5]):
            mlflow.log_metric("loss", loss, step=step)
        mlflow.log_metrics({"nan_metric": float("nan"), "rmse_train": 120.5})
        mlflow.set_tag("stage", "baseline")
        mlflow.log_artifact(str(notes))
        mlflow.log_artifacts(str(tmp_path / "plots"), artifact_path="plots")
        mlflow.log_input(mlflow.data.from_pandas(bike_rows, name="bike-400"), context="training")
        model = LinearRegression().fit(X, y)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name="bike-linear",
            input_example=X.iloc[:2],
            serialization_format="cloudpickle",
        )

    # The run is a tracked job with its params, tags, latest metrics and full metric history.
    job = Job.objects.get(pk=int(run.info.run_id))
    assert (job.kind, job.state, job.team, job.run_name) == (
        JobKind.TRACKED,
        JobState.SUCCEEDED,
        team,
        "linear-baseline",
    )
    assert job.experiment.name == "bike-demand-experiments"
    assert str(job.experiment_id) == experiment.experiment_id
    assert job.params == {"model": "linear", "features": ",".join(FEATURES), "rows": "400"}
    assert job.tags["stage"] == "baseline"
    assert job.metrics["loss"] == 3.5
    assert job.metrics["rmse_train"] == 120.5
    assert job.metrics["nan_metric"] == "NaN"
    assert list(RunMetric.objects.filter(job=job, key="loss").values_list("step", "value")) == [
        (0, 9.0),
        (1, 5.0),
        (2, 3.5),
    ]
    history = mlflow_client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 9.0), (1, 5.0), (2, 3.5)]
    nan_history = mlflow_client.get_metric_history(run.info.run_id, "nan_metric")
    assert len(nan_history) == 1
    assert math.isnan(nan_history[0].value)

    # Artifacts went through the proxy and list back.
    listed = sorted(f.path for f in mlflow_client.list_artifacts(run.info.run_id))
    assert listed == ["notes.txt", "plots"]
    assert [f.path for f in mlflow_client.list_artifacts(run.info.run_id, "plots")] == ["plots/residuals.csv"]
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="notes.txt", dst_path=str(tmp_path / "dl")
    )
    assert Path(downloaded).read_text() == "trained on the first 400 hours\n"

    # The input dataset matched no Steward dataset version: an external dataset, edge to the run.
    run_input = RunInput.objects.get(job=job)
    assert (run_input.name, run_input.context, run_input.dataset_version) == ("bike-400", "training", None)
    external = ExternalDataset.objects.get()
    assert run_input.external_dataset == external
    assert external.team == team

    # The logged model and the registered version: run, metrics, params, flavor.
    logged = LoggedModel.objects.get(pk=info.model_id)
    assert (logged.source_run, logged.status) == (job, "LOGGED_MODEL_READY")
    version = ModelVersion.objects.get(model__name="bike-linear")
    assert version.version == 1
    assert version.source_job_id == job.pk
    assert version.source == f"models:/{info.model_id}"
    assert version.metrics == {"loss": 3.5, "rmse_train": 120.5}
    assert version.training_spec["params"]["model"] == "linear"
    # The version's page charts the curves logged through MLflow (issue 14), with their table.
    table = page(Client(), scientist, version.get_absolute_url()).tables[
        "Training and validation metrics by step"
    ]
    assert table[0][:2] == ["step", "loss"]
    assert [row[:2] for row in table[1:]] == [["0", "9"], ["1", "5"], ["2", "3.5"]]
    assert (version.flavor, version.executes_code, version.is_directory) == ("mlflow_model", True, True)

    # Lineage: external dataset -> run -> model version.
    edges = set(
        LineageEdge.objects.values_list("source_type", "source_id", "target_type", "target_id", "relation")
    )
    assert edges == {
        ("external_dataset", external.pk, "job", job.pk, "input"),
        ("job", job.pk, "model_version", version.pk, "output"),
    }
    # Steward's lineage API walks it back from the version, to the team and not to outsiders.
    graph = client_for(scientist).get(
        "/api/lineage/", {"node": f"model_version:{version.pk}", "direction": "upstream"}
    )
    assert {node["id"] for node in graph.json()["nodes"]} == {
        f"model_version:{version.pk}",
        f"job:{job.pk}",
        f"external_dataset:{external.pk}",
    }
    assert (
        client_for(outsider).get("/api/lineage/", {"node": f"model_version:{version.pk}"}).status_code == 404
    )
    # Audited: the experiment, the run's start and end, its input, the logged model, the version.
    assert actions(before) == [
        "experiment.create",
        "run.start",
        "run.log_inputs",
        "logged_model.create",
        "logged_model.finalize",
        "registered_model.create",
        "model_version.register",
        "run.end",
    ]
    end = AuditEvent.objects.get(action="run.end")
    assert end.after["params"]["model"] == "linear"
    assert end.after["metrics"]["loss"] == 3.5

    # Flow 4: an unprotected alias, then load by alias through the artifact proxy.
    mlflow_client.set_registered_model_alias("bike-linear", "champion", "1")
    loaded = mlflow.pyfunc.load_model("models:/bike-linear@champion")
    probe = bike_rows[FEATURES].iloc[100:110]
    np.testing.assert_allclose(np.asarray(loaded.predict(probe)), model.predict(probe))


def test_pytorch_model_logged_with_a_steward_dataset_input(
    mlflow_env, mlflow_client, dataset_version, bike_rows, team
):
    import mlflow
    import mlflow.pytorch
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(len(FEATURES), 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    X = torch.tensor(bike_rows[FEATURES].to_numpy(), dtype=torch.float32)

    mlflow.set_experiment("bike-torch")
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.5, step=1)
        # The digest is the Steward dataset version's sha256: the input links to it.
        mlflow.log_input(
            mlflow.data.from_pandas(bike_rows, name="hour.csv", digest=dataset_version.sha256),
            context="training",
        )
        # The pickle format: the whole module pickled, so loading it executes code.
        info = mlflow.pytorch.log_model(
            net,
            name="net",
            registered_model_name="bike-torch-net",
            serialization_format="pickle",
            input_example=X[:2].numpy(),
        )

    job = Job.objects.get(pk=int(run.info.run_id))
    assert RunInput.objects.get(job=job).dataset_version == dataset_version
    assert not ExternalDataset.objects.exists()
    version = ModelVersion.objects.get(model__name="bike-torch-net")
    assert (version.source_job_id, version.metrics, version.flavor) == (job.pk, {"loss": 0.5}, "mlflow_model")
    assert version.executes_code is True
    edges = set(LineageEdge.objects.values_list("source_type", "source_id", "target_type", "target_id"))
    assert edges == {
        ("dataset_version", dataset_version.pk, "job", job.pk),
        ("job", job.pk, "model_version", version.pk),
    }
    assert LoggedModel.objects.get(pk=info.model_id).source_run == job

    mlflow_client.set_registered_model_alias("bike-torch-net", "candidate", "1")
    loaded = mlflow.pyfunc.load_model("models:/bike-torch-net@candidate")
    probe = bike_rows[FEATURES].iloc[:5].astype("float32")
    with torch.no_grad():
        expected = net(torch.tensor(probe.to_numpy())).numpy()
    np.testing.assert_allclose(np.asarray(loaded.predict(probe)).reshape(-1), expected.reshape(-1), rtol=1e-5)


def test_version_registered_from_a_finished_runs_artifacts(
    mlflow_env, mlflow_client, sklearn_model_dir, use_token, outsider
):
    import mlflow

    mlflow.set_experiment("exported-models")
    with mlflow.start_run() as run:
        mlflow.log_metric("r2", 0.9)
        mlflow.log_param("fit", "ols")
        mlflow.log_artifacts(str(sklearn_model_dir), artifact_path="exported")
    job = Job.objects.get(pk=int(run.info.run_id))
    assert job.state == JobState.SUCCEEDED

    # The client turns runs:/ into the run's artifact URI (mlflow-artifacts:/...); a runs:/
    # source given directly resolves too. Both versions have the run, its metrics and parameters.
    registered = mlflow.register_model(f"runs:/{run.info.run_id}/exported", "bike-exported")
    direct = mlflow_client.create_model_version("bike-exported", f"runs:/{run.info.run_id}/exported")
    assert (registered.version, direct.version) == ("1", "2")
    experiment_id = run.info.experiment_id
    expected_sources = [
        f"mlflow-artifacts:/experiments/{experiment_id}/{run.info.run_id}/artifacts/exported",
        f"runs:/{run.info.run_id}/exported",
    ]
    versions = list(ModelVersion.objects.filter(model__name="bike-exported").order_by("version"))
    assert [v.source for v in versions] == expected_sources
    for version in versions:
        assert (version.source_job_id, version.metrics) == (job.pk, {"r2": 0.9})
        assert version.training_spec == {"params": {"fit": "ols"}}
        assert version.sha256 == versions[0].sha256
        assert LineageEdge.objects.filter(
            source_type="job",
            source_id=job.pk,
            target_type="model_version",
            target_id=version.pk,
            relation="output",
        ).exists()
    loaded = mlflow.pyfunc.load_model("models:/bike-exported/1")
    np.testing.assert_allclose(loaded.predict(np.array([[3.0]])), [7.0])

    # Another team cannot register a version from this run: the run does not exist for them.
    use_token(outsider)
    mlflow_client.create_registered_model("outsider-model")
    with pytest.raises(MlflowException) as hidden:
        mlflow_client.create_model_version("outsider-model", f"runs:/{run.info.run_id}/exported")
    assert hidden.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert not ModelVersion.objects.filter(model__name="outsider-model").exists()

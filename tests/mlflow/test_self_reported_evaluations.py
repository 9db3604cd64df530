"""Self-reported evaluations (issue 15): a run logged with the real ``mlflow`` client that reads
its test data as an input with the context "evaluation" (or "test") and logs metrics becomes an
evaluation record of the version it registers, marked self-reported."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest
from django.urls import reverse

from governance.models import AuditEvent, Evaluation, ModelVersion
from lineage.models import LineageEdge
from runners.models import Job
from tests.conftest import ADULT

pytestmark = pytest.mark.django_db(transaction=True)

FEATURES = ["age", "education-num", "hours-per-week"]


def _log_run(context: str, registered_model_name: str) -> str:
    """A logistic regression on the adult data, its test rows logged as an input with
    ``context`` (digest: the file's sha256, so Steward links its dataset version), two metrics,
    and the model logged and registered; returns the run id."""
    import mlflow
    import mlflow.data
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    frame = pd.read_csv(ADULT)
    train, test = frame.iloc[:20000], frame.iloc[20000:]
    model = LogisticRegression(max_iter=200).fit(train[FEATURES], train["label"])
    dataset = mlflow.data.from_pandas(
        test, name="adult-test", targets="label", digest=hashlib.sha256(ADULT.read_bytes()).hexdigest()
    )
    mlflow.set_experiment("adult-self-reported")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context=context)
        mlflow.log_metric("accuracy", float(model.score(test[FEATURES], test["label"])))
        mlflow.log_metric("test_rows", float(len(test)))
        mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=registered_model_name,
            serialization_format="cloudpickle",
        )
    return run.info.run_id


def test_a_run_with_an_evaluation_input_records_a_self_reported_evaluation(mlflow_env, adult_version):
    run_id = _log_run("evaluation", "adult-self")

    version = ModelVersion.objects.get(model__name="adult-self")
    job = Job.objects.get(pk=int(run_id))
    evaluation = Evaluation.objects.get()
    assert (evaluation.source, evaluation.is_self_reported, evaluation.job_id) == (
        "self_reported",
        True,
        job.pk,
    )
    assert (evaluation.model_version, evaluation.dataset_version) == (version, adult_version)
    assert evaluation.spec == {
        "context": "evaluation",
        "input": "adult-test",
        "digest": adult_version.sha256,
    }
    assert evaluation.results == {
        "metrics": {
            "accuracy": {"value": job.metrics["accuracy"], "ci_low": None, "ci_high": None, "reason": None},
            "test_rows": {"value": 12561.0, "ci_low": None, "ci_high": None, "reason": None},
        }
    }
    assert AuditEvent.objects.filter(action="evaluation.record", object_id=str(evaluation.pk)).count() == 1
    edges = set(LineageEdge.objects.values_list("source_type", "source_id", "target_type", "target_id"))
    assert {
        ("model_version", version.pk, "evaluation", evaluation.pk),
        ("dataset_version", adult_version.pk, "evaluation", evaluation.pk),
        ("job", job.pk, "evaluation", evaluation.pk),
    } <= edges


def test_a_run_whose_inputs_are_training_data_records_no_evaluation(mlflow_env, adult_version):
    _log_run("training", "adult-trained")

    assert ModelVersion.objects.filter(model__name="adult-trained").count() == 1
    assert not Evaluation.objects.exists()


def test_the_real_mlflow_evaluate_records_its_metrics_as_a_self_reported_evaluation(
    mlflow_env, mlflow_client, scientist, client_for
):
    """MLflow 3's ``mlflow.models.evaluate`` logs its held-out frame as an input with no context and
    every metric against that dataset (``dataset_name``/``dataset_digest``); the version the run
    registered gets those metrics, and the plots it logged are named on the record."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    frame = pd.read_csv(ADULT)
    train, test = frame.iloc[:20000], frame.iloc[20000:]
    model = LogisticRegression(max_iter=200).fit(train[FEATURES], train["label"])
    mlflow.set_experiment("adult-evaluated")
    with mlflow.start_run() as run:
        mlflow.log_metric("training_rows", float(len(train)))  # no dataset: not the evaluation's
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name="adult-evaluated",
            serialization_format="cloudpickle",
        )
        result = mlflow.models.evaluate(
            info.model_uri,
            test[[*FEATURES, "label"]],
            targets="label",
            model_type="classifier",
            evaluators=["default"],
            evaluator_config={"default": {"log_model_explainability": False}},
        )

    version = ModelVersion.objects.get(model__name="adult-evaluated")
    logged = mlflow_client.get_run(run.info.run_id)
    (evaluated_input,) = logged.inputs.dataset_inputs
    assert [tag.key for tag in evaluated_input.tags] == []  # mlflow.evaluate gives no context
    evaluated = {key: value for key, value in logged.data.metrics.items() if key != "training_rows"}
    assert {"accuracy_score", "f1_score", "roc_auc", "log_loss", "example_count"} <= set(evaluated)
    assert evaluated["example_count"] == 12561.0
    assert evaluated["accuracy_score"] == pytest.approx(float(result.metrics["accuracy_score"]))
    history = mlflow_client.get_metric_history(run.info.run_id, "roc_auc")
    assert {(p.dataset_name, p.dataset_digest) for p in history} == {
        (evaluated_input.dataset.name, evaluated_input.dataset.digest)
    }

    client = client_for(scientist)
    client.force_login(scientist)  # the page too, not only the API
    listed = client.get("/api/evaluations/", {"model_version": version.pk}).json()["results"]
    assert len(listed) == 1
    record = listed[0]
    assert (record["source"], record["job_id"], record["dataset_version"]) == (
        "self_reported",
        int(run.info.run_id),
        None,  # MLflow's own short digest names no Steward dataset version
    )
    assert record["spec"] == {
        "context": "",
        "input": evaluated_input.dataset.name,
        "digest": evaluated_input.dataset.digest,
    }
    assert record["results"]["metrics"] == {
        key: {"value": value, "ci_low": None, "ci_high": None, "reason": None}
        for key, value in sorted(evaluated.items())
    }
    artifacts = f"mlflow-artifacts:/experiments/{logged.info.experiment_id}/{run.info.run_id}/artifacts"
    assert record["results"]["artifacts"] == [
        f"{artifacts}/{name}"
        for name in (
            "calibration_curve_plot.png",
            "confusion_matrix.png",
            "lift_curve_plot.png",
            "precision_recall_curve_plot.png",
            "roc_curve_plot.png",
        )
    ]
    assert sorted(a.path for a in mlflow_client.list_artifacts(run.info.run_id)) == [
        uri.rsplit("/", 1)[1] for uri in record["results"]["artifacts"]
    ]
    page = client.get(reverse("evaluation_detail", args=[record["id"]])).content.decode()
    assert "self-reported" in page
    assert f"<code>{artifacts}/roc_curve_plot.png</code>" in page

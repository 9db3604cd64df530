"""Self-reported evaluations (issue 15): a run logged with the real ``mlflow`` client that reads
its test data as an input with the context "evaluation" (or "test") and logs metrics becomes an
evaluation record of the version it registers, marked self-reported."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

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

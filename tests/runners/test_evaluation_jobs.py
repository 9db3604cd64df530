"""Evaluation jobs end to end (issue 15): submitted through ``do_submit_job`` and the jobs API,
run by the worker's plain function (``execute_job``) with the model's predictions from a serving
child, recorded as a ``governance.Evaluation`` with audit events and lineage.

The data is the real adult census file and the models are trained by real training jobs on it
(target ``label``, positive class ``" >50K"`` with its leading space)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from governance.actions.aliases import do_set_alias, do_set_protected_aliases
from governance.actions.model_versions import do_register_model_version_from_artifact
from governance.audit.leaf import iso_timestamp
from governance.datafiles import read_frame
from governance.models import AuditEvent, Evaluation, ModelVersion
from lineage.models import LineageEdge
from monitoring.evidence import model_card, model_version_subjects
from runners.actions import do_submit_job
from runners.execute import execute_job
from runners.models import Job, JobKind, JobState
from tests.conftest import ADULT, run_job

POSITIVE = " >50K"
NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = ["workclass", "marital-status", "occupation", "relationship", "race", "sex"]
# Small resamples and one importance repeat: the same code as the defaults, in test time.
FAST = {"bootstrap_resamples": 50, "importance_repeats": 1, "importance_max_rows": 1000}


def evaluation_spec(**extra) -> dict:
    return {
        "task": "classification",
        "target": "label",
        "positive_label": POSITIVE,
        "sensitive_attributes": ["sex", "race"],
        "slice_columns": ["education"],
        **FAST,
        **extra,
    }


def _train(version_data, registered_model, scientist, **extra) -> ModelVersion:
    spec = {
        "target": "label",
        "features": NUMERIC + CATEGORICAL,
        "categorical": CATEGORICAL,
        "task": "classification",
        "epochs": 1,
        "hidden_layers": [16],
        "seed": 1,
        **extra,
    }
    job = run_job(
        kind=JobKind.TRAIN,
        dataset_version=version_data,
        registered_model=registered_model,
        spec=spec,
        actor=scientist,
    )
    return job.output_model_version


@pytest.fixture
def adult_model_version(adult_version, registered_model, scientist) -> ModelVersion:
    """Version 1 of a classifier trained by a real training job on the adult data."""
    return _train(adult_version, registered_model, scientist)


def _evaluate(model_version, dataset_version, scientist, **spec) -> Job:
    job = do_submit_job(
        kind=JobKind.EVALUATE,
        dataset_version=dataset_version,
        model_version=model_version,
        spec=evaluation_spec(**spec),
        actor=scientist,
    )
    execute_job(job.pk)
    job.refresh_from_db()
    return job


def test_an_evaluation_job_records_metrics_slices_and_fairness_for_sex_and_race(
    adult_model_version, adult_version, scientist, client_for
):
    job = _evaluate(adult_model_version, adult_version, scientist)

    assert (job.state, job.error) == (JobState.SUCCEEDED, "")
    evaluation = Evaluation.objects.get()
    assert (evaluation.model_version, evaluation.dataset_version, evaluation.job_id, evaluation.source) == (
        adult_model_version,
        adult_version,
        job.pk,
        "steward",
    )
    assert evaluation.champion_version is None
    assert evaluation.spec["sensitive_attributes"] == ["sex", "race"]
    assert evaluation.spec["positive_label"] == POSITIVE
    results = evaluation.results
    assert (results["rows"], results["dropped"]) == (
        32561,
        {"sampled_out": 0, "target_missing": 0, "prediction_missing": 0},
    )
    # The softmax of the built-in classifier reaches the engine: the probability metrics exist.
    assert all(results["metrics"][name]["value"] is not None for name in ("roc_auc", "log_loss", "brier"))
    assert results["metrics"]["roc_auc"]["value"] > 0.8
    assert set(results["fairness"]) == {"sex", "race"}
    groups = {group["group"] for group in results["fairness"]["sex"]["groups"]}
    assert groups == {" Male", " Female"}
    assert len(results["fairness"]["race"]["groups"]) == 5
    assert results["slices"]["items"]
    assert {entry["perturbation"] for entry in results["robustness"]} == {
        "gaussian_noise",
        "missing_values",
        "category_swap",
    }
    assert len(results["importance"]) == 14  # every column but the label
    assert job.metrics["rows"] == 32561.0
    assert job.metrics["f1"] == results["metrics"]["f1"]["value"]
    assert job.log_tail.splitlines()[-1].startswith("evaluated 32561 rows in ")

    events = AuditEvent.objects.filter(object_type__in=["job", "evaluation"]).exclude(
        object_type="job", object_id__in=[str(adult_model_version.source_job_id)]
    )
    fields = ("action", "actor_label", "on_behalf_of_label", "object_id")
    assert list(events.order_by("id").values_list(*fields)) == [
        ("job.submit", "dana", "", str(job.pk)),
        ("job.start", "system", "dana", str(job.pk)),
        ("evaluation.record", "system", "dana", str(evaluation.pk)),
        ("job.succeed", "system", "dana", str(job.pk)),
    ]
    edges = set(LineageEdge.objects.values_list("source_type", "source_id", "target_type", "target_id"))
    assert {
        ("model_version", adult_model_version.pk, "job", job.pk),
        ("dataset_version", adult_version.pk, "job", job.pk),
        ("job", job.pk, "evaluation", evaluation.pk),
        ("model_version", adult_model_version.pk, "evaluation", evaluation.pk),
        ("dataset_version", adult_version.pk, "evaluation", evaluation.pk),
    } <= edges

    page = client_for(scientist)
    page.force_login(scientist)
    body = page.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="{evaluation.get_absolute_url()}"' in body

    # The evidence pack (issue 12) holds the evaluation and its job's events.
    assert model_card(adult_model_version, scientist)["evaluations"] == [
        {
            "evaluation_id": evaluation.pk,
            "source": "steward",
            "dataset_version_id": adult_version.pk,
            "job_id": job.pk,
            "champion_version_id": None,
            "primary_metric": "f1",
            "metrics": {name: entry["value"] for name, entry in results["metrics"].items()},
            "recorded_at": iso_timestamp(evaluation.created_at),
        }
    ]
    about = AuditEvent.objects.filter(model_version_subjects(adult_model_version))
    assert {"evaluation.record", "job.submit", "job.succeed"} <= set(about.values_list("action", flat=True))
    assert about.filter(object_type="evaluation", object_id=str(evaluation.pk)).count() == 1


def test_champion_challenger_compares_two_trained_versions_on_the_same_rows(
    adult_model_version, adult_version, registered_model, scientist, owner, admin, team
):
    challenger = _train(adult_version, registered_model, scientist, epochs=2, hidden_layers=[32])
    do_set_protected_aliases(team=team, aliases=[], actor=admin)
    do_set_alias(model=registered_model, alias="production", version=adult_model_version, actor=owner)

    job = _evaluate(challenger, adult_version, scientist)

    # No alias named: production, held by another version, is the champion by default.
    assert (job.state, job.spec["champion_alias"], job.spec["champion_version"]) == (
        JobState.SUCCEEDED,
        "production",
        adult_model_version.pk,
    )
    evaluation = Evaluation.objects.get()
    assert (evaluation.model_version, evaluation.champion_version) == (challenger, adult_model_version)
    assert evaluation.champion_results["rows"] == evaluation.results["rows"] == 32561
    f1 = evaluation.comparison["f1"]
    assert f1["candidate"] == evaluation.results["metrics"]["f1"]["value"]
    assert f1["champion"] == evaluation.champion_results["metrics"]["f1"]["value"]
    assert f1["difference"] == pytest.approx(f1["candidate"] - f1["champion"])
    assert f1["ci_low"] <= f1["difference"] <= f1["ci_high"]
    assert f1["rows"] == 32561
    edges = set(LineageEdge.objects.values_list("source_type", "source_id", "target_type", "target_id"))
    assert {
        ("model_version", adult_model_version.pk, "job", job.pk),
        ("model_version", challenger.pk, "job", job.pk),
        ("model_version", adult_model_version.pk, "evaluation", evaluation.pk),
    } <= edges
    # The version holding the alias evaluated against itself is no comparison: none is made.
    again = _evaluate(adult_model_version, adult_version, scientist)
    assert (again.state, again.spec["champion_version"]) == (JobState.SUCCEEDED, None)


# A model from code (MLflow "models from code"): loading it runs this file, which notes the
# process that loaded it; its predictions are a rule on education, or NaN when told so.
SPY_MODEL = """
import os

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

with open({marker!r}, "a") as handle:
    handle.write(f"{{os.getpid()}}\\n")


class Rule(PythonModel):
    def predict(self, context, model_input, params=None):
        if {missing!r}:
            return [np.nan] * len(model_input)
        return np.where(model_input["education-num"] >= 13, " >50K", " <=50K")


mlflow.models.set_model(Rule())
"""


def _code_version(tmp_path: Path, registered_model, scientist, *, missing: bool = False) -> ModelVersion:
    import mlflow.pyfunc

    marker = tmp_path / "loaded-by.txt"
    code = tmp_path / "rule_model.py"
    code.write_text(SPY_MODEL.format(marker=str(marker), missing=missing))
    mlflow.pyfunc.save_model(str(tmp_path / "rule"), python_model=str(code))
    marker.unlink(missing_ok=True)  # save_model ran it here; only later loads count
    version = do_register_model_version_from_artifact(
        model=registered_model, artifact_path=tmp_path / "rule", source="upload", actor=scientist
    )
    assert (version.flavor, version.executes_code) == ("mlflow_model", True)
    return version


def test_a_code_executing_flavor_is_evaluated_only_in_a_child_process(
    adult_version, registered_model, scientist, tmp_path
):
    version = _code_version(tmp_path, registered_model, scientist)
    loaded_before = set(sys.modules)

    job = _evaluate(version, adult_version, scientist, champion_alias=None)

    assert (job.state, job.error) == (JobState.SUCCEEDED, "")
    pids = {int(line) for line in (tmp_path / "loaded-by.txt").read_text().split()}
    # Loaded once, by the serving child: never by this process, which ran the worker's code.
    assert len(pids) == 1
    assert os.getpid() not in pids
    assert not {name for name in set(sys.modules) - loaded_before if name.startswith("rule_model")}
    assert "torch" not in {name.split(".")[0] for name in set(sys.modules) - loaded_before}
    results = Evaluation.objects.get().results
    frame = read_frame(ADULT, "csv")
    expected = ((frame["education-num"] >= 13) == (frame["label"] == POSITIVE)).mean()
    assert results["metrics"]["accuracy"]["value"] == pytest.approx(expected)
    # A pyfunc gives labels only: the probability metrics say why they are absent.
    assert results["metrics"]["roc_auc"] == {
        "value": None,
        "ci_low": None,
        "ci_high": None,
        "reason": "the model gives no probabilities",
    }


def test_nan_predictions_fail_the_job_with_the_engines_message(
    adult_version, registered_model, scientist, tmp_path
):
    version = _code_version(tmp_path, registered_model, scientist, missing=True)

    job = _evaluate(version, adult_version, scientist, champion_alias=None)

    assert (job.state, job.error) == (JobState.FAILED, "predictions: all 32561 predictions are missing (NaN)")
    assert not Evaluation.objects.exists()


def test_single_class_rows_fail_the_job_with_the_engines_message(
    adult_model_version, adult_version, scientist
):
    job = _evaluate(adult_model_version, adult_version, scientist, where={"label": " <=50K"})

    assert (job.state, job.error) == (
        JobState.FAILED,
        "target: only one class (' <=50K') in 24720 labelled rows: classification metrics need two",
    )
    assert not Evaluation.objects.exists()


def test_an_absent_sensitive_attribute_is_refused_at_submission_naming_the_field(
    adult_model_version, adult_version, scientist, client_for
):
    response = client_for(scientist).post(
        "/api/jobs/",
        {
            "kind": "evaluate",
            "model_version": adult_model_version.pk,
            "dataset_version": adult_version.pk,
            "spec": evaluation_spec(sensitive_attributes=["gender"]),
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "spec": [
            f"sensitive_attributes: column 'gender' not in dataset version {adult_version}, "
            "whose columns are 'age', 'workclass', 'fnlwgt', 'education', 'education-num', "
            "'marital-status', 'occupation', 'relationship', 'race', 'sex' ..."
        ]
    }
    assert not Job.objects.filter(kind=JobKind.EVALUATE).exists()


def test_the_jobs_api_submits_an_evaluation_and_refuses_bad_fields(
    adult_model_version, adult_version, scientist, client_for
):
    client = client_for(scientist)

    def post(spec):
        return client.post(
            "/api/jobs/",
            {
                "kind": "evaluate",
                "model_version": adult_model_version.pk,
                "dataset_version": adult_version.pk,
                "spec": spec,
            },
            format="json",
        )

    assert post(evaluation_spec(task="ranking")).json() == {
        "spec": ["task: 'ranking' is not one of regression, classification"]
    }
    assert post(evaluation_spec(champion_alias="staging")).json() == {
        "spec": ["champion_alias: model bike-demand has no alias 'staging'"]
    }
    assert post(evaluation_spec(positive_label=None)).json() == {
        "spec": [
            "positive_label: fairness (selection rates, equalized odds) needs the positive class; "
            "for a multiclass target name one class, evaluated against the rest"
        ]
    }
    response = post(evaluation_spec())
    assert response.status_code == 201
    body = response.json()
    assert (body["kind"], body["state"], body["model_version"]) == (
        "evaluate",
        "queued",
        adult_model_version.pk,
    )
    assert body["spec"]["champion_version"] is None
    assert body["spec"]["resources"] == {"class": "cpu", "gpus": 0}

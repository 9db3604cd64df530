"""Bad job specs and data a job cannot use: a 4xx naming the problem and no job, or a failed job
naming the column and row. (Moved from tests/governance/test_bad_input.py, issue 8.)"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.models import AuditEvent
from runners.execute import execute_job
from runners.models import Job, JobState
from tests.conftest import BIKE_FEATURES


def _upload(client, dataset, name: str, content: bytes):
    return client.post(
        "/api/dataset-versions/",
        {"dataset": dataset.pk, "file": SimpleUploadedFile(name, content)},
        format="multipart",
    )


def _spec(**changes) -> dict:
    spec = {"target": "cnt", "features": ["temp", "hum", "hr"], "epochs": 2, "where": {"yr": 0}}
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (_spec(features=["temp", "rain", "snow"]), "features: column(s) 'rain', 'snow' not in the dataset"),
        (_spec(target="rentals"), "target: column 'rentals' is not in the dataset"),
        (_spec(target=None), "target: required, the name of the column to predict"),
        (_spec(features=["temp", "cnt"]), "features: the target 'cnt' cannot also be a feature"),
        (_spec(features=[]), "features: required, a non-empty list of column names"),
        (_spec(features=["temp", "temp"]), "features: a column is listed twice"),
        (_spec(epochs=0), "epochs: must be between 1 and 1000, got 0"),
        (_spec(epochs=1001), "epochs: must be between 1 and 1000, got 1001"),
        (_spec(epochs=2.5), "epochs: expected an integer, got 2.5"),
        (_spec(epochs="ten"), "epochs: expected a number, got 'ten'"),
        (_spec(epochs=True), "epochs: expected a number, got True"),
        (_spec(learning_rate=0), "learning_rate: must be between 1e-07 and 10.0, got 0"),
        (_spec(epochz=3), "spec: unknown field(s) epochz"),
        (_spec(task="ranking"), "task: one of auto, regression, classification; got 'ranking'"),
        (_spec(categorical=["season"]), "categorical: must be a list of names taken from features"),
        (_spec(hidden_layers=[64, 0]), "hidden_layers: 1 to 8 layer widths, each an integer from 1 to 4096"),
        (_spec(where={"year": 2011}), "where: column 'year' is not in the dataset"),
        (_spec(where={"yr": []}), "where: 'yr' needs a value or a non-empty list of values"),
        (["cnt"], "spec: expected a JSON object"),
    ],
)
def test_bad_training_spec_is_400_naming_it_and_no_job(
    client_for, scientist, dataset_version, registered_model, spec, message
):
    events = AuditEvent.objects.count()

    response = client_for(scientist).post(
        "/api/jobs/",
        {
            "kind": "train",
            "dataset_version": dataset_version.pk,
            "registered_model": registered_model.pk,
            "spec": spec,
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"spec": [message]}
    assert Job.objects.count() == 0
    assert AuditEvent.objects.count() == events


def test_a_field_the_job_api_does_not_read_is_400_naming_it_and_no_job(
    client_for, scientist, dataset_version, registered_model
):
    body = {
        "kind": "train",
        "dataset_version": dataset_version.pk,
        "registered_model": registered_model.pk,
        "spec": _spec(),
    }
    response = client_for(scientist).post("/api/jobs/", body | {"experiment": "bikes"}, format="json")

    assert response.status_code == 400
    known = "dataset_version, kind, model_version, registered_model, spec"
    assert response.json() == {"experiment": [f"unknown field; known: {known}"]}
    assert Job.objects.count() == 0


def test_training_job_without_a_model_is_400(client_for, scientist, dataset_version):
    response = client_for(scientist).post(
        "/api/jobs/", {"kind": "train", "dataset_version": dataset_version.pk, "spec": _spec()}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"registered_model": ["a training job needs the model to register into"]}
    assert Job.objects.count() == 0


def test_unknown_job_kind_is_400(client_for, scientist, dataset_version):
    response = client_for(scientist).post(
        "/api/jobs/", {"kind": "deploy", "dataset_version": dataset_version.pk}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"kind": ['"deploy" is not a valid choice.']}
    assert Job.objects.count() == 0


def test_inference_on_data_lacking_the_model_features_is_400(
    client_for, scientist, dataset, registered_version
):
    client = client_for(scientist)
    partial = _upload(client, dataset, "partial.csv", b"hr,temp,hum\n0,0.24,0.81\n1,0.22,0.8\n").json()
    events = AuditEvent.objects.count()

    response = client.post(
        "/api/jobs/",
        {"kind": "infer", "dataset_version": partial["id"], "model_version": registered_version.pk},
        format="json",
    )

    missing = [f for f in BIKE_FEATURES if f not in ("hr", "temp", "hum")]
    assert response.status_code == 400
    assert response.json() == {
        "spec": [f"dataset version lacks the model's feature column(s) {', '.join(map(repr, missing))}"]
    }
    assert Job.objects.count() == 0
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"epochs": 3},
            "spec: unknown field(s) epochs; "
            "allowed: backend, limits, not_before, output_dataset, resources, start_window, where",
        ),
        ({"where": {"year": 1}}, "where: column 'year' is not in the dataset"),
        ({"output_dataset": 7}, "output_dataset: a dataset name of 1 to 200 characters"),
        ({"output_dataset": "   "}, "output_dataset: a dataset name of 1 to 200 characters"),
    ],
)
def test_bad_inference_spec_is_400(client_for, scientist, dataset_version, registered_version, spec, message):
    response = client_for(scientist).post(
        "/api/jobs/",
        {
            "kind": "infer",
            "dataset_version": dataset_version.pk,
            "model_version": registered_version.pk,
            "spec": spec,
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"spec": [message]}
    assert Job.objects.count() == 0


def test_missing_target_values_fail_the_training_job_naming_column_and_row(
    client_for, scientist, dataset, registered_model, bike_frame, training_spec
):
    frame = bike_frame.copy()
    frame["cnt"] = frame["cnt"].astype("float64")
    # Data rows 9,001 and 9,050 of the file: both in 2012, the rows this job trains on.
    frame.loc[[9000, 9049], "cnt"] = float("nan")
    client = client_for(scientist)
    upload = _upload(client, dataset, "hour-gaps.csv", frame.to_csv(index=False).encode())
    assert upload.status_code == 201
    assert upload.json()["row_count"] == 17379
    spec = training_spec | {"where": {"yr": 1}}

    submitted = client.post(
        "/api/jobs/",
        {
            "kind": "train",
            "dataset_version": upload.json()["id"],
            "registered_model": registered_model.pk,
            "spec": spec,
        },
        format="json",
    )
    state = execute_job(submitted.json()["id"])

    job = Job.objects.get()
    assert state == JobState.FAILED
    assert job.state == JobState.FAILED
    assert job.error == "target column 'cnt' has 2 missing value(s) (first at data row 9001)"
    assert job.output_model_version is None
    assert registered_model.versions.count() == 0
    assert list(
        AuditEvent.objects.filter(object_type="job").order_by("id").values_list("action", "actor_label")
    ) == [("job.submit", "dana"), ("job.start", "system"), ("job.fail", "system")]
    assert AuditEvent.objects.get(action="job.fail").after["error"] == job.error


def test_inference_with_a_model_of_another_flavor_is_400_and_no_job(
    client_for, scientist, dataset_version, registered_model, tmp_path
):
    """A bare state dict holds weights without the model's code: it cannot predict, so it is
    refused at submission naming its flavor, not failed later inside the worker (issue 17: every
    flavor that can predict runs)."""
    import torch

    from governance.actions.model_versions import do_register_model_version_from_artifact

    weights = tmp_path / "weights.pt"
    torch.save({"layer.weight": torch.zeros(2, 2)}, weights)
    version = do_register_model_version_from_artifact(
        model=registered_model, artifact_path=weights, source="upload", actor=scientist
    )
    assert version.flavor == "pytorch_state_dict"
    events = AuditEvent.objects.count()

    response = client_for(scientist).post(
        "/api/jobs/",
        {"kind": "infer", "dataset_version": dataset_version.pk, "model_version": version.pk},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "model_version": [
            f"{version}: a pytorch_state_dict model cannot predict: a bare PyTorch state dict holds "
            "weights without the model's code; register an MLflow model directory (MLmodel) or a "
            "Steward tabular model"
        ]
    }
    assert Job.objects.count() == 0
    assert AuditEvent.objects.count() == events

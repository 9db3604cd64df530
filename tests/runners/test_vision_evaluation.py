"""Issue 15's evaluation of image and multiclass models end to end: the vision template's CNN
(issue 17; scikit-learn's 8x8 digits, trained by a real code run in its sandbox and registered as
an MLflow pyfunc) and Steward's built-in MLP on the same digits, evaluated by evaluation jobs
submitted through the jobs API and run by the worker's plain function, the predictions coming from
a serving child. The figures are checked against scikit-learn's on the model's own predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from django.test import Client
from django.urls import reverse
from sklearn.calibration import calibration_curve
from sklearn.datasets import load_digits
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.preprocessing import label_binarize

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.models import DatasetVersion, Evaluation, ModelVersion
from runners.execute import execute_job
from runners.models import Job, JobKind, JobState
from tests.conftest import run_job
from tests.runners.test_model_inputs import log_of, trained_vision_model

PIXELS = [f"p{i}" for i in range(64)]
IMAGE = {"prefix": "p", "height": 8, "width": 8}
# Small resamples and no importance (64 pixels): the same code as the defaults, in test time.
FAST = {"bootstrap_resamples": 50, "importance_repeats": 0}


def _top_class_ece(truth: np.ndarray, proba: np.ndarray) -> float:
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == truth).astype(int)
    fraction, mean = calibration_curve(correct, confidence, n_bins=10, strategy="uniform")
    counts = np.histogram(confidence, bins=np.linspace(0, 1, 11))[0]
    counts = counts[counts > 0]
    return float(np.sum(counts / counts.sum() * np.abs(fraction - mean)))


def scikit_learns(truth: np.ndarray, predicted: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Every multiclass metric as scikit-learn computes it (digits 0..9, probabilities rows x 10)."""
    return {
        "accuracy": accuracy_score(truth, predicted),
        "precision": precision_score(truth, predicted, average="macro", zero_division=0),
        "recall": recall_score(truth, predicted, average="macro", zero_division=0),
        "f1": f1_score(truth, predicted, average="macro", zero_division=0),
        "precision_weighted": precision_score(truth, predicted, average="weighted", zero_division=0),
        "recall_weighted": recall_score(truth, predicted, average="weighted", zero_division=0),
        "f1_weighted": f1_score(truth, predicted, average="weighted", zero_division=0),
        "roc_auc": roc_auc_score(truth, proba, multi_class="ovr", average="macro"),
        "pr_auc": average_precision_score(label_binarize(truth, classes=range(10)), proba, average="macro"),
        "log_loss": log_loss(truth, proba, labels=range(10)),
        "brier": brier_score_loss(truth, proba, labels=range(10)),
        "calibration_error": _top_class_ece(truth, proba),
    }


def _submit(client, version: ModelVersion, data: DatasetVersion, spec: dict):
    return client.post(
        "/api/jobs/",
        {"kind": "evaluate", "model_version": version.pk, "dataset_version": data.pk, "spec": spec},
        format="json",
    )


@pytest.mark.django_db(transaction=True)
def test_the_vision_templates_cnn_is_evaluated_with_multiclass_metrics_and_image_perturbations(
    team, scientist, live_server, settings, client_for
):
    settings.STEWARD_API_URL = live_server.url
    digits, version = trained_vision_model(team, scientist)
    client = client_for(scientist)
    spec = {"task": "classification", "target": "label", "image": IMAGE, **FAST}

    # A layout the data does not have is refused at submission, naming the field.
    refused = _submit(client, version, digits, {**spec, "image": {**IMAGE, "prefix": "px"}})
    assert refused.status_code == 400
    assert refused.json()["spec"][0].startswith(
        f"image: columns 'px0', 'px1', 'px2', 'px3', 'px4', 'px5', 'px6', 'px7', 'px8', 'px9' ... "
        f"not in dataset version {digits}"
    )
    refused = _submit(client, version, digits, {**spec, "image": {**IMAGE, "width": 9}})
    assert refused.json() == {
        "spec": [
            "image: columns 'p64', 'p65', 'p66', 'p67', 'p68', 'p69', 'p70', "
            f"'p71' not in dataset version {digits}, whose columns are 'p0', "
            "'p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', 'p8', 'p9' ..."
        ]
    }
    assert _submit(client, version, digits, {**spec, "image": {**IMAGE, "height": 0}}).json() == {
        "spec": ["image: height: give a whole number of pixels from 1 to 4096"]
    }

    response = _submit(client, version, digits, spec)
    assert response.status_code == 201, response.json()
    job_id = response.json()["id"]
    assert response.json()["spec"]["image"] == {**IMAGE, "shift_pixels": 1, "rotation_degrees": 15}
    execute_job(job_id)
    job = Job.objects.get(pk=job_id)
    assert (job.state, job.error) == (JobState.SUCCEEDED, ""), log_of(job)

    evaluation = Evaluation.objects.get(job_id=job_id)
    results = evaluation.results
    assert (evaluation.model_version, evaluation.dataset_version) == (version, digits)
    assert results["rows"] == 1797
    # The same model's predictions here (its pyfunc's predict_proba: each digit's softmax).
    import mlflow.pyfunc

    frame = pd.read_csv(digits.path)
    classifier = mlflow.pyfunc.load_model(str(version.path)).unwrap_python_model()
    proba = classifier.predict_proba(frame[PIXELS].astype("float64")).to_numpy(np.float64)
    truth, predicted = frame["label"].to_numpy(), proba.argmax(axis=1)
    for name, value in scikit_learns(truth, predicted, proba).items():
        metric = results["metrics"][name]
        assert metric["value"] == pytest.approx(value, rel=1e-5, abs=1e-7), name
        assert metric["ci_low"] <= metric["value"] <= metric["ci_high"], name
    assert results["metrics"]["accuracy"]["value"] > 0.9
    assert results["confusion_matrix"]["labels"] == [str(d) for d in range(10)]
    assert results["confusion_matrix"]["matrix"] == confusion_matrix(truth, predicted).tolist()
    # Robustness: the image perturbations, each scored by macro F1 against the clean one; no
    # tabular ones (every feature is a pixel).
    robustness = {entry["perturbation"]: entry for entry in results["robustness"]}
    assert list(robustness) == ["image_noise", "image_shift", "image_rotation"]
    for entry in robustness.values():
        assert (entry["metric"], entry["columns"], entry["error"]) == ("f1", 64, None)
        assert entry["clean"] == pytest.approx(results["metrics"]["f1"]["value"])
        assert entry["drop"] == pytest.approx(entry["clean"] - entry["perturbed"])
    # A CNN tolerates a little noise better than a one-pixel shift of an 8x8 digit.
    assert robustness["image_noise"]["drop"] < robustness["image_shift"]["drop"]

    browser = Client()
    browser.force_login(scientist)
    page = browser.get(reverse("evaluation_detail", args=[evaluation.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    for shown in ("f1_weighted", "image_shift", "image_rotation", 'id="robustness"', 'id="calibration"'):
        assert shown in html


@pytest.mark.django_db(transaction=True)
def test_the_built_in_mlp_gives_each_class_probability_to_a_multiclass_evaluation(
    team, scientist, registered_model, tmp_path, client_for
):
    from runners import inference

    loaded = load_digits()
    frame = pd.DataFrame(loaded.data, columns=PIXELS).assign(label=loaded.target)
    path = tmp_path / "digits.csv"
    frame.to_csv(path, index=False)
    dataset = do_create_dataset(team=team, name="digits", actor=scientist)
    digits = do_register_dataset_version(
        dataset=dataset,
        file_path=path,
        filename="digits.csv",
        source=DatasetVersion.Source.UPLOAD,
        actor=scientist,
    )
    training = {"target": "label", "features": PIXELS, "task": "classification", "epochs": 3, "seed": 1}
    trained = run_job(
        kind=JobKind.TRAIN,
        dataset_version=digits,
        registered_model=registered_model,
        spec=training,
        actor=scientist,
    ).output_model_version

    response = _submit(
        client_for(scientist), trained, digits, {"task": "classification", "target": "label", **FAST}
    )
    assert response.status_code == 201, response.json()
    execute_job(response.json()["id"])
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.state, job.error) == (JobState.SUCCEEDED, "")

    results = Evaluation.objects.get(job_id=job.pk).results
    model = inference.load_model(trained.path.read_bytes())
    classes, proba = inference.predict_class_proba(frame[PIXELS], model)
    assert classes == [str(d) for d in range(10)]
    predicted = inference.predict(frame[PIXELS], model).astype(int).to_numpy()
    for name, value in scikit_learns(frame["label"].to_numpy(), predicted, proba).items():
        assert results["metrics"][name]["value"] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    # Without an image layout the pixels are perturbed as numbers.
    assert [entry["perturbation"] for entry in results["robustness"]] == ["gaussian_noise", "missing_values"]

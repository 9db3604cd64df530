"""The evaluation engine (issue 15) on a multiclass target and on images: scikit-learn's 8x8
handwritten digits (``load_digits``: 1,797 images, 10 classes, shipped with scikit-learn), with
each metric against scikit-learn's and fairness against Fairlearn's. Plain functions, no database.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_ratio, equalized_odds_difference
from sklearn.calibration import calibration_curve
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
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

from runners.evaluation import EvaluationError, EvaluationSpec, Predictions, evaluate, sklearn_predictor
from runners.evaluation.inputs import label_rows
from runners.evaluation.metrics import bootstrap_weights, metric_values

PIXELS = [f"p{i}" for i in range(64)]
QUIET = {"robustness": False, "importance_repeats": 0, "bootstrap_resamples": 100}
IMAGE = {"prefix": "p", "height": 8, "width": 8}


@pytest.fixture(scope="module")
def digits() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): the digits' pixel columns p0..p63 (0..16) and ``label``, split in halves."""
    loaded = load_digits()
    frame = pd.DataFrame(loaded.data, columns=PIXELS).assign(label=loaded.target)
    return frame.iloc[::2].reset_index(drop=True), frame.iloc[1::2].reset_index(drop=True)


@pytest.fixture(scope="module")
def logistic(digits):
    return LogisticRegression(max_iter=500).fit(digits[0][PIXELS], digits[0]["label"])


def _spec(**overrides) -> EvaluationSpec:
    return EvaluationSpec(**{"task": "classification", "target": "label", **QUIET, **overrides})


def _top_class_ece(truth: np.ndarray, proba: np.ndarray) -> float:
    """The expected calibration error of the top class, from scikit-learn's calibration_curve."""
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == truth).astype(int)
    fraction, mean = calibration_curve(correct, confidence, n_bins=10, strategy="uniform")
    counts = np.histogram(confidence, bins=np.linspace(0, 1, 11))[0]
    counts = counts[counts > 0]
    return float(np.sum(counts / counts.sum() * np.abs(fraction - mean)))


def test_multiclass_metrics_equal_scikit_learns_on_the_digits(digits, logistic):
    test = digits[1]
    result = evaluate(test, sklearn_predictor(logistic), _spec())

    truth, features = test["label"].to_numpy(), test[PIXELS]
    predicted, proba = logistic.predict(features), logistic.predict_proba(features)
    expected = {
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
    assert set(result.metrics) == set(expected)
    for name, value in expected.items():
        metric = result.metrics[name]
        assert metric["value"] == pytest.approx(value, rel=1e-9), name
        assert metric["reason"] is None
        assert metric["ci_low"] <= metric["value"] <= metric["ci_high"], name
        assert metric["ci_low"] < metric["ci_high"], name
    assert 0.9 < result.metrics["accuracy"]["value"] < 1
    assert result.confusion_matrix["labels"] == [str(d) for d in range(10)]
    assert result.confusion_matrix["matrix"] == confusion_matrix(truth, predicted).tolist()
    # The top class's calibration curve: one point per non-empty bin, every row counted.
    calibration = result.curves["calibration"]
    assert sum(calibration["rows"]) == len(test)
    assert set(result.curves) == {"calibration"}


def test_each_multiclass_bootstrap_resample_equals_scikit_learn_with_those_weights(digits, logistic):
    test = digits[1]
    spec = _spec()
    rows, _ = label_rows(test["label"], sklearn_predictor(logistic)(test[PIXELS]), spec)
    truth, proba = test["label"].to_numpy(), logistic.predict_proba(test[PIXELS])
    predicted = logistic.predict(test[PIXELS])
    weights = next(bootstrap_weights(rows.size, 3, seed=5))
    values = metric_values(rows, weights)
    for resample, counts in enumerate(weights):
        assert values["f1_weighted"][resample] == pytest.approx(
            f1_score(truth, predicted, average="weighted", sample_weight=counts)
        )
        assert values["roc_auc"][resample] == pytest.approx(
            roc_auc_score(truth, proba, multi_class="ovr", sample_weight=counts)
        )
        assert values["log_loss"][resample] == pytest.approx(log_loss(truth, proba, sample_weight=counts))
        assert values["brier"][resample] == pytest.approx(
            brier_score_loss(truth, proba, labels=range(10), sample_weight=counts)
        )


def test_a_multiclass_model_without_probabilities_gets_label_metrics_and_the_reason(digits, logistic):
    def labels_only(frame: pd.DataFrame) -> Predictions:
        return Predictions(labels=logistic.predict(frame))

    result = evaluate(digits[1], labels_only, _spec())

    predicted = logistic.predict(digits[1][PIXELS])
    assert result.metrics["f1"]["value"] == pytest.approx(
        f1_score(digits[1]["label"], predicted, average="macro")
    )
    for name in ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_error"):
        assert result.metrics[name] == {
            "value": None,
            "ci_low": None,
            "ci_high": None,
            "reason": "the model gives no probabilities",
        }, name
    assert result.curves == {}


def test_class_probabilities_that_cannot_be_read_are_reported_not_raised(digits, logistic):
    test = digits[1]
    proba = logistic.predict_proba(test[PIXELS])

    def answer(matrix: np.ndarray, classes: tuple[str, ...]):
        return lambda frame: Predictions(logistic.predict(frame), matrix, classes)

    # A model that knows only nine digits: the tenth, in the rows, has no probability.
    result = evaluate(
        test, answer(proba[:, :9] / proba[:, :9].sum(1, keepdims=True), tuple("012345678")), _spec()
    )
    assert result.metrics["roc_auc"]["reason"] == (
        "the model gives no probability for class '9' of the evaluated rows "
        "(its classes: '0', '1', '2', '3', '4', '5', '6', '7', '8')"
    )
    assert result.metrics["accuracy"]["value"] == pytest.approx(
        accuracy_score(test["label"], logistic.predict(test[PIXELS]))
    )
    # Scores that are not probabilities (rows summing to 0.5).
    result = evaluate(test, answer(proba * 0.5, tuple("0123456789")), _spec())
    assert result.metrics["log_loss"]["reason"].startswith(
        f"the model's class probabilities do not sum to 1 on {len(test)} rows"
    )
    # A matrix without as many columns as classes is the predictor's error.
    with pytest.raises(EvaluationError) as caught:
        evaluate(test, answer(proba, tuple("012")), _spec())
    assert (caught.value.field, caught.value.message) == (
        "predictions",
        f"({len(test)}, 10) probabilities for {len(test)} rows of 3 classes; give one per row and class",
    )


def test_multiclass_fairness_is_one_class_against_the_rest_or_refused(digits, logistic):
    test = digits[1].assign(stroke=np.where(digits[1]["p36"] > 8, "heavy", "light"))
    with pytest.raises(EvaluationError) as caught:
        _spec(sensitive_attributes=["stroke"])
    assert caught.value.field == "positive_label"
    assert "for a multiclass target name one class, evaluated against the rest" in caught.value.message

    result = evaluate(
        test,
        sklearn_predictor(logistic, "3"),
        _spec(positive_label="3", sensitive_attributes=["stroke"], features=PIXELS),
    )

    actual = (test["label"] == 3).astype(int)
    guessed = (logistic.predict(test[PIXELS]) == 3).astype(int)
    fairness = result.fairness["stroke"]
    assert fairness["demographic_parity_ratio"] == pytest.approx(
        demographic_parity_ratio(actual, guessed, sensitive_features=test["stroke"])
    )
    assert fairness["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(actual, guessed, sensitive_features=test["stroke"])
    )
    proba = logistic.predict_proba(test[PIXELS])[:, 3]
    assert result.metrics["roc_auc"]["value"] == pytest.approx(roc_auc_score(actual, proba))


class Recorder:
    """The model, noting every frame it is asked about."""

    def __init__(self, model):
        self.model = model
        self.frames: list[pd.DataFrame] = []

    def __call__(self, frame: pd.DataFrame) -> Predictions:
        self.frames.append(frame.copy())
        return sklearn_predictor(self.model)(frame[PIXELS])


def test_image_perturbations_are_noise_a_shift_and_a_rotation_of_the_pixels(digits, logistic):
    test = digits[1].assign(pen=np.linspace(0, 1, len(digits[1])))
    recorder = Recorder(logistic)
    spec = _spec(robustness=True, missing_share=0, image={**IMAGE, "rotation_degrees": 90})

    result = evaluate(test, recorder, spec)

    entries = {entry["perturbation"]: entry for entry in result.robustness}
    # The tabular noise touches the one numeric column that is not a pixel.
    assert list(entries) == ["gaussian_noise", "image_noise", "image_shift", "image_rotation"]
    assert entries["gaussian_noise"]["columns"] == 1
    assert [entries[name]["columns"] for name in ("image_noise", "image_shift", "image_rotation")] == [64] * 3
    assert (entries["image_shift"]["size"], entries["image_rotation"]["size"]) == (1.0, 90.0)
    clean = test[PIXELS].to_numpy().reshape(-1, 8, 8)
    noisy, shifted, turned = (frame[PIXELS].to_numpy().reshape(-1, 8, 8) for frame in recorder.frames[2:5])
    assert (recorder.frames[1][PIXELS].to_numpy() == test[PIXELS].to_numpy()).all()  # gaussian_noise
    # Noise: 0.1 of the intensity range (0..16), clipped to it.
    assert noisy.min() >= 0
    assert noisy.max() <= 16
    assert np.std((noisy - clean)[(clean >= 6) & (clean <= 10)]) == pytest.approx(1.6, rel=0.05)
    # Shift: each image is its clean self moved one pixel up, down, left or right, 0 brought in.
    moves = [
        np.pad(clean, ((0, 0), (0, 1), (0, 0)))[:, 1:, :],
        np.pad(clean, ((0, 0), (1, 0), (0, 0)))[:, :-1, :],
        np.pad(clean, ((0, 0), (0, 0), (0, 1)))[:, :, 1:],
        np.pad(clean, ((0, 0), (0, 0), (1, 0)))[:, :, :-1],
    ]
    matched = np.stack([(shifted == move).all(axis=(1, 2)) for move in moves])
    assert matched.any(axis=0).all()
    assert (matched.sum(axis=1) > len(test) // 8).all()  # every direction drawn
    # Rotation by 90 degrees: exactly a quarter turn one way or the other.
    quarter = np.stack([(turned == np.rot90(clean, k, axes=(1, 2))).all(axis=(1, 2)) for k in (1, -1)])
    assert quarter.any(axis=0).all()
    assert quarter.sum(axis=1).min() > len(test) // 4  # both ways drawn
    # Drops: clean - perturbed macro F1, each worse than clean for the logistic regression.
    for name in ("image_shift", "image_rotation"):
        entry = entries[name]
        perturbed = f1_score(
            test["label"],
            logistic.predict(recorder.frames[list(entries).index(name) + 1][PIXELS]),
            average="macro",
        )
        assert entry["perturbed"] == pytest.approx(perturbed)
        assert entry["drop"] == pytest.approx(entry["clean"] - perturbed)
        assert entry["drop"] > 0.05


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ({"prefix": "p", "height": 8}, "width: give a whole number of pixels from 1 to 4096"),
        ({"prefix": "p", "columns": PIXELS, "height": 8, "width": 8}, "give either columns"),
        (
            {"columns": PIXELS[:60], "height": 8, "width": 8},
            "columns: 60 columns for a 8x8 image of 64 pixels",
        ),
        ({"prefix": "p", "height": 8, "width": 8, "depth": 3}, "unknown key 'depth'"),
        ({"prefix": "p", "height": 8, "width": 8, "shift_pixels": 8}, "shift_pixels: give a whole number"),
        (
            {"prefix": "p", "height": 8, "width": 8, "rotation_degrees": 400},
            "rotation_degrees: give a number",
        ),
        ("p0..p63", "give an object"),
        ({"prefix": "p", "height": 4096, "width": 4096}, "16,777,216 pixels: at most 65,536 pixel columns"),
    ],
)
def test_a_bad_image_layout_is_refused_naming_the_field(image, message):
    with pytest.raises(EvaluationError) as caught:
        EvaluationSpec.from_dict({"task": "classification", "target": "label", "image": image})
    assert caught.value.field == "image"
    assert message in caught.value.message


def test_image_columns_absent_or_not_features_are_named(digits, logistic):
    recorder = Recorder(logistic)
    with pytest.raises(EvaluationError) as caught:
        evaluate(digits[1], recorder, _spec(image={"prefix": "px", "height": 8, "width": 8}))
    assert (caught.value.field, caught.value.message[:40]) == (
        "image",
        "column 'px0', 'px1', 'px2', 'px3', 'px4'",
    )
    with pytest.raises(EvaluationError) as caught:
        evaluate(digits[1], recorder, _spec(image=IMAGE, features=PIXELS[:32]))
    assert caught.value.field == "image"
    assert caught.value.message.startswith("pixel column 'p32', 'p33'")
    spec = EvaluationSpec.from_dict({"task": "classification", "target": "label", "image": IMAGE})
    assert spec.image_columns() == PIXELS
    assert EvaluationSpec.from_dict(spec.to_dict()) == spec


def test_an_mlflow_sklearn_model_gives_each_class_probability_named_by_the_class(digits, logistic, tmp_path):
    import mlflow.sklearn

    from runners.serving import predictors

    mlflow.sklearn.save_model(logistic, str(tmp_path / "model"), serialization_format="cloudpickle")
    loaded = predictors.load(tmp_path / "model", flavor="mlflow_model", sha256="", name="digits v1")
    test = digits[1][PIXELS]

    each = loaded.predict_class_proba(test)

    assert list(each.columns) == [str(d) for d in range(10)]
    np.testing.assert_allclose(each.to_numpy(), logistic.predict_proba(test))
    np.testing.assert_allclose(loaded.predict_proba(test, "7"), logistic.predict_proba(test)[:, 7])
    assert loaded.predict_proba(test, "11") is None

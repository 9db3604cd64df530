"""The evaluation engine (issue 15) against the reference libraries on the real adult and bike data:
scikit-learn for every metric and permutation importance, Fairlearn for fairness. Plain functions,
no database."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.calibration import calibration_curve
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    roc_curve,
    root_mean_squared_error,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from runners.evaluation import (
    EvaluationError,
    EvaluationSpec,
    Predictions,
    evaluate,
    evaluate_pair,
    sklearn_predictor,
)
from runners.evaluation.inputs import label_rows
from runners.evaluation.metrics import bootstrap_weights, metric_values
from tests.conftest import ADULT, BIKE_HOURLY

POSITIVE = " >50K"  # the adult data keeps its leading spaces
NUMERIC = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
BIKE_NUMERIC = ["temp", "atemp", "hum", "windspeed", "hr", "season", "workingday", "weathersit"]
QUIET = {"robustness": False, "importance_repeats": 0, "bootstrap_resamples": 50}


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): the first 20,000 rows and the next 8,000, ``?`` read as missing."""
    frame = pd.read_csv(ADULT, na_values=" ?")
    return frame.iloc[:20000], frame.iloc[20000:28000].reset_index(drop=True)


@pytest.fixture(scope="module")
def categorical(adult) -> list[str]:
    return [column for column in adult[0].columns if column not in [*NUMERIC, "label"]]


@pytest.fixture(scope="module")
def logistic(adult, categorical):
    """One-hot + scaled logistic regression: cannot take a missing numeric value."""
    train = adult[0]
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), categorical), (StandardScaler(), NUMERIC)
        ),
        LogisticRegression(max_iter=500),
    )
    return model.fit(train.drop(columns="label"), train["label"])


@pytest.fixture(scope="module")
def boosted(adult, categorical):
    """Gradient-boosted trees, which take missing values natively."""
    train = adult[0]
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    model = make_pipeline(
        make_column_transformer((encoder, categorical), remainder="passthrough"),
        HistGradientBoostingClassifier(max_iter=100, random_state=0),
    )
    return model.fit(train.drop(columns="label"), train["label"])


@pytest.fixture(scope="module")
def bike() -> tuple[pd.DataFrame, pd.DataFrame, LinearRegression]:
    """(train, test, linear regression of ``cnt``): 2011 against 2012, the data's real drift."""
    frame = pd.read_csv(BIKE_HOURLY)[[*BIKE_NUMERIC, "cnt"]]
    hourly = pd.read_csv(BIKE_HOURLY)
    train, test = frame[hourly["yr"] == 0], frame[hourly["yr"] == 1].reset_index(drop=True)
    return train, test, LinearRegression().fit(train[BIKE_NUMERIC], train["cnt"])


def _spec(**overrides) -> EvaluationSpec:
    values = {"task": "classification", "target": "label", "positive_label": POSITIVE, **QUIET}
    return EvaluationSpec(**{**values, **overrides})


def _truth_and_scores(model, test):
    features = test.drop(columns="label")
    actual = (test["label"] == POSITIVE).astype(int).to_numpy()
    guessed = (model.predict(features) == POSITIVE).astype(int)
    proba = model.predict_proba(features)[:, list(model.classes_).index(POSITIVE)]
    return actual, guessed, proba


def test_classification_metrics_equal_scikit_learns_on_adult(adult, logistic):
    test = adult[1]
    result = evaluate(test, sklearn_predictor(logistic, POSITIVE), _spec())
    actual, guessed, proba = _truth_and_scores(logistic, test)
    expected = {
        "accuracy": accuracy_score(actual, guessed),
        "precision": precision_score(actual, guessed),
        "recall": recall_score(actual, guessed),
        "f1": f1_score(actual, guessed),
        "roc_auc": roc_auc_score(actual, proba),
        "pr_auc": average_precision_score(actual, proba),
        "log_loss": log_loss(actual, proba),
        "brier": brier_score_loss(actual, proba),
    }
    # Expected calibration error over calibration_curve's 10 uniform bins, weighted by rows.
    fraction, mean_proba = calibration_curve(actual, proba, n_bins=10)
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], proba), minlength=10)
    expected["calibration_error"] = np.sum(counts[counts > 0] * np.abs(fraction - mean_proba)) / len(proba)

    assert result.rows == 8000
    assert result.dropped == {
        "sampled_out": 0,
        "target_missing": 0,
        "prediction_missing": 0,
    }
    assert result.primary_metric == "f1"
    for name, value in expected.items():
        assert result.metrics[name]["value"] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    labels = sorted(test["label"].unique())
    assert result.confusion_matrix == {
        "labels": labels,
        "matrix": confusion_matrix(
            test["label"], logistic.predict(test.drop(columns="label")), labels=labels
        ).tolist(),
        "reason": None,
    }
    fpr, tpr, _ = roc_curve(actual, proba)
    roc = result.curves["roc"]
    assert len(roc["fpr"]) == 200
    assert len(fpr) > 200
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (
        fpr[0],
        tpr[0],
        fpr[-1],
        tpr[-1],
    )
    assert len(result.curves["pr"]["recall"]) == 200
    assert result.curves["calibration"]["rows"] == counts[counts > 0].tolist()
    assert (
        json.loads(json.dumps(result.to_dict(), allow_nan=False))["metrics"]["f1"]["value"] == expected["f1"]
    )


def test_fairness_equals_fairlearns_on_adult_for_sex_and_race(adult, logistic):
    test = adult[1]
    result = evaluate(
        test, sklearn_predictor(logistic, POSITIVE), _spec(sensitive_attributes=["sex", "race"])
    )
    actual, guessed, _ = _truth_and_scores(logistic, test)
    for attribute in ("sex", "race"):
        groups = test[attribute].to_numpy()
        report = result.fairness[attribute]
        by_group = MetricFrame(
            metrics={"sr": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
            y_true=actual,
            y_pred=guessed,
            sensitive_features=groups,
        ).by_group
        assert {row["group"] for row in report["groups"]} == set(by_group.index)
        for row in report["groups"]:
            assert row["rows"] == int((groups == row["group"]).sum())
            assert row["selection_rate"] == pytest.approx(by_group.loc[row["group"], "sr"])
            assert row["true_positive_rate"] == pytest.approx(by_group.loc[row["group"], "tpr"])
            assert row["false_positive_rate"] == pytest.approx(by_group.loc[row["group"], "fpr"])
        kwargs = {"sensitive_features": groups}
        ratio = demographic_parity_ratio(actual, guessed, **kwargs)
        assert report["demographic_parity_difference"] == pytest.approx(
            demographic_parity_difference(actual, guessed, **kwargs)
        )
        assert report["demographic_parity_ratio"] == pytest.approx(ratio)
        assert report["equalized_odds_difference"] == pytest.approx(
            equalized_odds_difference(actual, guessed, **kwargs)
        )
        assert report["equal_opportunity_difference"] == pytest.approx(
            equal_opportunity_difference(actual, guessed, **kwargs)
        )
        assert report["four_fifths_rule_holds"] is bool(ratio >= 0.8)
    # On this census data the model selects women far less often: the rule fails, as it should.
    assert result.fairness["sex"]["four_fifths_rule_holds"] is False


def test_regression_metrics_and_fairness_equal_the_references_on_bike(bike):
    _train, test, model = bike
    spec = EvaluationSpec(task="regression", target="cnt", sensitive_attributes=["season"], **QUIET)
    result = evaluate(test, sklearn_predictor(model), spec)
    predicted = model.predict(test[BIKE_NUMERIC])
    assert result.primary_metric == "rmse"
    assert result.rows == len(test)
    assert result.metrics["rmse"]["value"] == pytest.approx(
        root_mean_squared_error(test["cnt"], predicted), rel=1e-9
    )
    assert result.metrics["mae"]["value"] == pytest.approx(
        mean_absolute_error(test["cnt"], predicted), rel=1e-9
    )
    assert result.metrics["r2"]["value"] == pytest.approx(r2_score(test["cnt"], predicted), rel=1e-9)
    residuals = result.curves["residuals"]
    assert sum(residuals["counts"]) == len(test)
    assert residuals["quantiles"]["p50"] == pytest.approx(np.median(test["cnt"] - predicted))
    assert result.confusion_matrix is None
    by_season = MetricFrame(
        metrics=root_mean_squared_error,
        y_true=test["cnt"],
        y_pred=predicted,
        sensitive_features=test["season"],
    )
    assert result.fairness["season"]["rmse_difference"] == pytest.approx(by_season.difference())
    assert result.fairness["season"]["rmse_ratio"] == pytest.approx(by_season.ratio())


def test_each_bootstrap_resample_equals_scikit_learn_with_those_counts_as_weights(adult, logistic):
    test = adult[1]
    spec = _spec()
    predictions = sklearn_predictor(logistic, POSITIVE)(test.drop(columns="label"))
    rows, _ = label_rows(test["label"], predictions, spec)
    actual, guessed, proba = _truth_and_scores(logistic, test)
    weights = next(bootstrap_weights(rows.size, 3, seed=7))
    assert weights.shape == (3, 8000)
    assert (weights.sum(axis=1) == 8000).all()
    values = metric_values(rows, weights)
    for resample, counts in enumerate(weights):
        assert values["f1"][resample] == pytest.approx(f1_score(actual, guessed, sample_weight=counts))
        assert values["roc_auc"][resample] == pytest.approx(
            roc_auc_score(actual, proba, sample_weight=counts)
        )
        assert values["pr_auc"][resample] == pytest.approx(
            average_precision_score(actual, proba, sample_weight=counts)
        )
        assert values["log_loss"][resample] == pytest.approx(log_loss(actual, proba, sample_weight=counts))


def test_bootstrap_intervals_hold_the_estimate_and_repeat_with_the_seed(adult, logistic):
    predict, test = sklearn_predictor(logistic, POSITIVE), adult[1]
    first = evaluate(test, predict, _spec(seed=3))
    again = evaluate(test, predict, _spec(seed=3))
    other = evaluate(test, predict, _spec(seed=4))
    for name, metric in first.metrics.items():
        assert metric["ci_low"] <= metric["value"] <= metric["ci_high"], name
        assert metric["ci_low"] < metric["ci_high"], name
    assert first.metrics == again.metrics
    assert first.metrics["f1"]["ci_low"] != other.metrics["f1"]["ci_low"]


def test_multiclass_gives_macro_averages_and_one_vs_rest_probability_metrics(bike):
    frame = pd.read_csv(BIKE_HOURLY)
    columns = ["temp", "hum", "mnth"]
    model = LogisticRegression(max_iter=300).fit(frame[columns], frame["season"])
    spec = EvaluationSpec(task="classification", target="season", features=columns, **QUIET)
    result = evaluate(frame[[*columns, "season"]], sklearn_predictor(model), spec)
    predicted = model.predict(frame[columns])
    for name, reference in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        expected = reference(frame["season"], predicted, average="macro", zero_division=0)
        assert result.metrics[name]["value"] == pytest.approx(expected), name
    assert result.metrics["accuracy"]["value"] == pytest.approx(accuracy_score(frame["season"], predicted))
    # scikit-learn's predict_proba gives each season's probability: one-vs-rest macro ROC AUC.
    expected_auc = roc_auc_score(frame["season"], model.predict_proba(frame[columns]), multi_class="ovr")
    assert result.metrics["roc_auc"]["value"] == pytest.approx(expected_auc)
    assert result.confusion_matrix["labels"] == ["1", "2", "3", "4"]


def test_slices_come_worst_first_and_small_ones_are_marked(adult, logistic):
    spec = _spec(slice_columns=["race", "age"], min_slice_rows=100)
    result = evaluate(adult[1], sklearn_predictor(logistic, POSITIVE), spec)
    items = result.slices["items"]
    computed = [item for item in items if not item["too_small"]]
    scores = [item["metrics"]["f1"] for item in computed]
    assert scores == sorted(scores)
    assert len(computed) >= 5
    small = [item for item in items if item["too_small"]]
    assert small
    assert all(item["rows"] < 100 and item["metrics"] is None for item in small)
    assert items[-len(small) :] == small
    ages = [item["value"] for item in items if item["column"] == "age"]
    assert len(ages) == 4  # quartile bins of a numeric column
    assert sum(item["rows"] for item in items if item["column"] == "race") == 8000
    assert result.slices["left_out"] == 0


def test_each_slice_has_the_percentile_bootstrap_interval_of_scikit_learns_values(adult, logistic):
    """A slice's interval: the same seeded resampling within its rows, each resample's value
    scikit-learn's with the resample's counts as weights, then the 2.5th and 97.5th percentiles."""
    test = adult[1]
    spec = _spec(slice_columns=["sex"], bootstrap_resamples=40, seed=3)
    result = evaluate(test, sklearn_predictor(logistic, POSITIVE), spec)
    actual, guessed, proba = _truth_and_scores(logistic, test)

    for item in result.slices["items"]:
        index = np.flatnonzero(test["sex"].astype(str).to_numpy() == item["value"])
        assert item["rows"] == len(index)
        f1s, aucs = [], []
        for weights in bootstrap_weights(len(index), 40, seed=3):
            for weight in weights:
                f1s.append(f1_score(actual[index], guessed[index], sample_weight=weight))
                aucs.append(roc_auc_score(actual[index], proba[index], sample_weight=weight))
        assert item["metrics"]["f1"] == pytest.approx(f1_score(actual[index], guessed[index]))
        assert item["intervals"]["f1"] == pytest.approx(list(np.percentile(f1s, [2.5, 97.5])))
        assert item["intervals"]["roc_auc"] == pytest.approx(list(np.percentile(aucs, [2.5, 97.5])))
        low, high = item["intervals"]["f1"]
        assert low < item["metrics"]["f1"] < high


def test_robustness_drops_grow_with_the_noise_and_a_model_without_missing_values_is_told(
    adult, boosted, logistic
):
    test = adult[1]
    drops = []
    for scale in (0.1, 1.0):
        spec = _spec(robustness=True, noise_scale=scale)
        result = evaluate(test, sklearn_predictor(boosted, POSITIVE), spec)
        by_name = {entry["perturbation"]: entry for entry in result.robustness}
        assert set(by_name) == {"gaussian_noise", "missing_values", "category_swap"}
        noise = by_name["gaussian_noise"]
        assert noise["clean"] == result.metrics["f1"]["value"]
        assert noise["drop"] == pytest.approx(noise["clean"] - noise["perturbed"])
        assert by_name["missing_values"]["drop"] > 0
        assert by_name["category_swap"]["error"] is None
        drops.append(noise["drop"])
    assert 0 < drops[0] < drops[1]
    result = evaluate(test, sklearn_predictor(logistic, POSITIVE), _spec(robustness=True))
    missing = next(entry for entry in result.robustness if entry["perturbation"] == "missing_values")
    assert missing["drop"] is None
    assert "Input X contains NaN" in missing["error"]


def test_permutation_importance_ranks_the_feature_the_target_was_derived_from_first(bike):
    frame = pd.read_csv(BIKE_HOURLY)[["temp", "hum", "windspeed"]].iloc[:3000]
    noise = np.random.default_rng(0).normal(0, 5, len(frame))
    frame["demand"] = 400 * frame["hum"] + 20 * frame["temp"] + noise  # built from humidity mostly
    features = ["temp", "hum", "windspeed"]
    model = LinearRegression().fit(frame[features], frame["demand"])
    spec = EvaluationSpec(
        task="regression",
        target="demand",
        robustness=False,
        bootstrap_resamples=10,
        importance_repeats=4,
        seed=5,
    )
    result = evaluate(frame, sklearn_predictor(model), spec)
    assert [entry["feature"] for entry in result.importance] == ["hum", "temp", "windspeed"]
    reference = permutation_importance(
        model,
        frame[features],
        frame["demand"],
        scoring="neg_root_mean_squared_error",
        n_repeats=4,
        random_state=5,
    )
    for entry in result.importance:
        position = features.index(entry["feature"])
        assert entry["mean"] == pytest.approx(reference.importances_mean[position])
        assert entry["std"] == pytest.approx(reference.importances_std[position])


def test_champion_challenger_says_the_better_model_is_better(adult, boosted, categorical):
    train, test = adult
    weak = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["sex"])), LogisticRegression()
    ).fit(train.drop(columns="label"), train["label"])
    spec = _spec()
    candidate, champion, differences = evaluate_pair(
        test, sklearn_predictor(boosted, POSITIVE), sklearn_predictor(weak, POSITIVE), spec
    )
    assert candidate.metrics["roc_auc"]["value"] > champion.metrics["roc_auc"]["value"]
    for name in ("roc_auc", "log_loss", "accuracy"):
        entry = differences[name]
        assert entry["difference"] == pytest.approx(entry["candidate"] - entry["champion"])
        assert entry["ci_low"] <= entry["difference"] <= entry["ci_high"]
        assert (entry["is_better"], entry["is_worse"]) == (True, False), name
    assert differences["log_loss"]["higher_is_better"] is False
    assert differences["log_loss"]["difference"] < 0
    _, _, reversed_differences = evaluate_pair(
        test, sklearn_predictor(weak, POSITIVE), sklearn_predictor(boosted, POSITIVE), spec
    )
    assert reversed_differences["roc_auc"]["is_worse"] is True
    assert reversed_differences["log_loss"]["is_worse"] is True
    json.dumps(
        evaluate_pair(test, sklearn_predictor(weak, POSITIVE), sklearn_predictor(weak), spec).to_dict()
    )


def test_the_spec_round_trips_through_json_and_refuses_bad_values():
    spec = _spec(sensitive_attributes=["sex"], slice_columns=["race"], seed=9)
    assert EvaluationSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.to_dict()["sensitive_attributes"] == ["sex"]
    refusals = [
        ({"task": "ranking", "target": "y"}, "task"),
        ({"task": "regression", "target": "y", "positive_label": "1"}, "positive_label"),
        ({"task": "classification", "target": "y", "sensitive_attributes": ["sex"]}, "positive_label"),
        ({"task": "classification", "target": "y", "bootstrap_resamples": -1}, "bootstrap_resamples"),
        ({"task": "classification", "target": "y", "confidence": 1.5}, "confidence"),
        ({"task": "classification", "target": "y", "slice_columns": ["y"]}, "slice_columns"),
        ({"task": "regression", "target": "y", "primary_metric": "f1"}, "primary_metric"),
        ({"task": "regression", "target": "y", "colour": "blue"}, "colour"),
        ({"target": "y"}, "task"),
    ]
    for data, field in refusals:
        with pytest.raises(EvaluationError) as caught:
            EvaluationSpec.from_dict(data)
        assert caught.value.field == field, data
    assert (
        EvaluationSpec.from_dict(
            {"task": "classification", "target": "y", "positive_label": 1}
        ).positive_label
        == "1"
    )


def _constant(labels, proba=None):
    return lambda frame: Predictions(labels=np.asarray(labels, dtype=object), proba=proba)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda frame: frame.drop(columns="label"), "target", "column 'label' not in the frame"),
        (lambda frame: frame.iloc[:0], "frame", "the frame has no rows"),
        (
            lambda frame: frame.assign(label=" <=50K"),
            "target",
            "only one class (' <=50K') in 8000 labelled rows",
        ),
        (lambda frame: frame.assign(label=None), "target", "every row's 'label' is missing"),
    ],
)
def test_bad_frames_raise_a_precise_error(adult, logistic, change, field, message):
    with pytest.raises(EvaluationError) as caught:
        evaluate(change(adult[1]), sklearn_predictor(logistic, POSITIVE), _spec())
    assert caught.value.field == field
    assert message in caught.value.message


def test_a_sensitive_attribute_absent_is_named(adult, logistic):
    with pytest.raises(EvaluationError) as caught:
        evaluate(
            adult[1], sklearn_predictor(logistic, POSITIVE), _spec(sensitive_attributes=["sex", "gender"])
        )
    assert caught.value.field == "sensitive_attributes"
    assert caught.value.message.startswith("column 'gender' not in the frame")


def test_a_positive_label_without_its_leading_space_gets_a_hint(adult, logistic):
    with pytest.raises(EvaluationError) as caught:
        evaluate(adult[1], sklearn_predictor(logistic, ">50K"), _spec(positive_label=">50K"))
    assert caught.value.field == "positive_label"
    assert caught.value.message.endswith("did you mean ' >50K'?")


def test_missing_targets_and_predictions_are_dropped_and_counted(adult, logistic):
    test = adult[1].copy()
    test.loc[:9, "label"] = None
    model = sklearn_predictor(logistic, POSITIVE)

    def predict(frame: pd.DataFrame) -> Predictions:
        found = model(frame)
        labels, proba = found.labels.astype(object), found.proba.copy()
        labels[:5] = None
        proba[5:12] = np.nan
        return Predictions(labels, proba)

    result = evaluate(test, predict, _spec())
    assert result.dropped == {"sampled_out": 0, "target_missing": 10, "prediction_missing": 12}
    assert result.rows == 8000 - 22
    kept = test.iloc[22:]
    actual = (kept["label"] == POSITIVE).astype(int)
    assert result.metrics["f1"]["value"] == pytest.approx(
        f1_score(actual, (logistic.predict(kept.drop(columns="label")) == POSITIVE).astype(int))
    )
    with pytest.raises(EvaluationError) as caught:
        evaluate(test, _constant([None] * 7990), _spec())
    assert (caught.value.field, caught.value.message) == (
        "predictions",
        "all 7990 predictions are missing (NaN)",
    )


def test_a_model_without_probabilities_gets_label_metrics_and_the_reason(adult):
    test = adult[1]
    labels = np.where(test["age"] > 40, POSITIVE, " <=50K")
    result = evaluate(test, _constant(labels), _spec(sensitive_attributes=["sex"]))
    actual = (test["label"] == POSITIVE).astype(int)
    assert result.metrics["recall"]["value"] == pytest.approx(recall_score(actual, labels == POSITIVE))
    for name in ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_error"):
        assert result.metrics[name]["value"] is None
        assert result.metrics[name]["reason"] == "the model gives no probabilities"
    assert "roc" not in result.curves
    assert result.fairness["sex"]["demographic_parity_ratio"] is not None


@pytest.mark.parametrize(
    ("predict", "field", "message"),
    [
        (_constant([POSITIVE] * 3), "predictions", "(3,) labels for 8000 rows; give one per row"),
        (
            _constant([POSITIVE] * 8000, np.full(8000, 1.5)),
            "predictions",
            "8000 probabilities outside [0, 1]",
        ),
        (lambda frame: 1 / 0, "predictor", "the model failed: ZeroDivisionError: division by zero"),
        (lambda frame: frame, "predictor", "returned DataFrame, not Predictions"),
    ],
)
def test_bad_predictions_raise_a_precise_error(adult, predict, field, message):
    with pytest.raises(EvaluationError) as caught:
        evaluate(adult[1], predict, _spec())
    assert (caught.value.field, caught.value.message) == (field, message)


def test_an_empty_slice_and_an_undefined_metric_are_reported_not_raised(adult):
    test = adult[1].assign(shift=pd.Categorical(["day"] * 8000, categories=["day", "night"]))
    # Predicting nobody positive: precision and F1 have no value; the result says why.
    result = evaluate(test, _constant([" <=50K"] * 8000), _spec(slice_columns=["shift"]))
    assert result.metrics["precision"] == {
        "value": None,
        "ci_low": None,
        "ci_high": None,
        "reason": "no row is predicted positive",
    }
    night = next(item for item in result.slices["items"] if item["value"] == "night")
    assert night == {"column": "shift", "value": "night", "rows": 0, "too_small": True, "metrics": None}
    json.dumps(result.to_dict(), allow_nan=False)

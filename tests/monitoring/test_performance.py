"""Performance metrics of labelled rows and their drift against a baseline (no database)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    roc_auc_score,
    root_mean_squared_error,
)

from monitoring.engine import performance as perf


def test_regression_metrics_are_mae_and_rmse():
    truth = pd.Series([3.0, 5.0, 2.0, 7.0])
    predicted = pd.Series([2.0, 5.0, 4.0, 7.0])

    assert perf.regression_metrics(truth, predicted) == {"mae": 0.75, "rmse": math.sqrt(5 / 4)}


def test_classification_metrics_equal_scikit_learns():
    rng = np.random.default_rng(4)
    truth = pd.Series(rng.choice(["low", "mid", "high"], size=500, p=[0.6, 0.3, 0.1]))
    predicted = truth.where(rng.random(500) < 0.7, pd.Series(rng.choice(["low", "mid", "high"], size=500)))

    metrics = perf.classification_metrics(truth, predicted)

    classes = sorted(set(truth))
    one_vs_rest = [roc_auc_score(truth == label, predicted == label) for label in classes]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, predicted), abs=1e-12)
    assert metrics["f1"] == pytest.approx(f1_score(truth, predicted, average="macro"), abs=1e-12)
    assert metrics["roc_auc"] == pytest.approx(np.mean(one_vs_rest), abs=1e-12)


def test_binary_roc_auc_of_hard_labels_is_balanced_accuracy():
    truth = pd.Series([1, 1, 1, 0, 0, 0, 0, 0])
    predicted = pd.Series([1, 1, 0, 0, 0, 0, 1, 1])

    metrics = perf.classification_metrics(truth, predicted)

    # Class 1: TP 2, FP 2, FN 1, TN 3; class 0: TP 3, FP 1, FN 2, TN 2. Both: (1 + TPR - FPR) / 2.
    assert metrics == {
        "accuracy": 0.625,
        "f1": pytest.approx((4 / 7 + 6 / 9) / 2, abs=1e-12),
        "roc_auc": pytest.approx((1 + 2 / 3 - 2 / 5) / 2, abs=1e-12),
    }
    assert pytest.approx((1 + 2 / 3 - 2 / 5) / 2) == (1 + 3 / 5 - 1 / 3) / 2


def test_labelled_keeps_rows_with_a_label_and_a_finite_prediction():
    truth = pd.Series([1.0, np.nan, 3.0, 4.0, 5.0])
    predicted = pd.Series([1.0, 2.0, np.inf, None, 5.5])

    kept_truth, kept_predicted = perf.labelled(truth, predicted)

    assert (list(kept_truth), list(kept_predicted)) == ([1.0, 5.0], [1.0, 5.5])


def test_sklearn_agrees_on_regression():
    rng = np.random.default_rng(1)
    truth, predicted = pd.Series(rng.normal(size=1000)), pd.Series(rng.normal(size=1000))

    metrics = perf.regression_metrics(truth, predicted)

    assert metrics["mae"] == pytest.approx(mean_absolute_error(truth, predicted), abs=1e-12)
    assert metrics["rmse"] == pytest.approx(root_mean_squared_error(truth, predicted), abs=1e-12)


@pytest.mark.parametrize(
    ("metric", "current", "baseline", "degraded"),
    [
        ("mae", 110.0, 100.0, False),  # exactly at the tolerance: not worse by more
        ("mae", 110.1, 100.0, True),
        ("rmse", 90.0, 100.0, False),  # better
        ("accuracy", 0.81, 0.9, False),
        ("accuracy", 0.80, 0.9, True),
        ("roc_auc", 0.95, 0.9, False),
    ],
)
def test_a_metric_drifts_when_worse_than_its_baseline_by_more_than_the_tolerance(
    metric, current, baseline, degraded
):
    assert perf.is_degraded(metric, current, baseline, 0.1) is degraded


def test_compare_reports_each_metric_with_a_baseline():
    compared = perf.compare(
        {"mae": 60.0, "rmse": 80.0, "r2": 0.5},
        {"mae": (40.0, "validation"), "rmse": (math.nan, "validation")},
        0.1,
    )

    assert compared == {
        "mae": {
            "current": 60.0,
            "baseline": 40.0,
            "baseline_source": "validation",
            "change": 0.5,
            "is_degraded": True,
        }
    }
    with pytest.raises(ValueError, match=r"tolerance must be in \[0, 1\), got 1.0"):
        perf.compare({}, {}, 1.0)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="no labelled rows"):
        perf.regression_metrics(pd.Series([], dtype=float), pd.Series([], dtype=float))
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        perf.compute_metrics("ranking", pd.Series([1]), pd.Series([1]))

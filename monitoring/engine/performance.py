"""Model performance on labelled rows, and its drift against a baseline. No Django imports.

Regression: MAE and RMSE in the target's units. Classification: accuracy, macro-averaged F1 (the
unweighted mean of each class's F1, so a rare class counts as much as a common one), and ROC AUC.
Steward's predictions are class labels, not scores, so ROC AUC is that of the hard labels: per
class (one-vs-rest) the ROC curve through the single operating point (FPR, TPR) has area
``(1 + TPR - FPR) / 2`` (Fawcett 2006, "An introduction to ROC analysis", section 5), averaged over
the classes; for two classes it equals balanced accuracy. scikit-learn's ``roc_auc_score`` gives
the same value when handed the 0/1 indicator of each predicted class.

A metric drifted when it is worse than its baseline by more than ``tolerance`` relatively: an
error metric above ``baseline * (1 + tolerance)``, a score below ``baseline * (1 - tolerance)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

ERROR_METRICS = frozenset({"mae", "rmse"})
SCORE_METRICS = frozenset({"accuracy", "f1", "roc_auc"})
REGRESSION_METRICS = ("mae", "rmse")
CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc")


def labelled(y_true: pd.Series, y_pred: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The rows where both the label and the prediction are present (not null/NaN/inf)."""
    mask = y_true.notna() & y_pred.notna()
    for series in (y_true, y_pred):
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            mask &= np.isfinite(series.astype("float64"))
    return y_true[mask], y_pred[mask]


def regression_metrics(y_true: pd.Series, y_pred: pd.Series) -> dict[str, float]:
    """``{"mae", "rmse"}`` of numeric labels and predictions of equal length (at least one row).

    Raises ValueError on empty input or non-numeric values.
    """
    if len(y_true) == 0:
        raise ValueError("no labelled rows")
    error = pd.to_numeric(y_pred, errors="raise").to_numpy(np.float64) - pd.to_numeric(
        y_true, errors="raise"
    ).to_numpy(np.float64)
    return {"mae": float(np.abs(error).mean()), "rmse": float(math.sqrt((error**2).mean()))}


def classification_metrics(y_true: pd.Series, y_pred: pd.Series) -> dict[str, float]:
    """``{"accuracy", "f1", "roc_auc"}`` of class labels (compared as strings, as training does).

    Classes are those seen in either series. Raises ValueError on empty input.
    """
    if len(y_true) == 0:
        raise ValueError("no labelled rows")
    truth = y_true.astype(str).to_numpy()
    predicted = y_pred.astype(str).to_numpy()
    classes = np.union1d(truth, predicted)
    f1s, aucs = [], []
    for label in classes:
        actual, guessed = truth == label, predicted == label
        tp = float(np.sum(actual & guessed))
        fp = float(np.sum(~actual & guessed))
        fn = float(np.sum(actual & ~guessed))
        tn = float(np.sum(~actual & ~guessed))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
        if tp + fn and fp + tn:  # AUC needs both positives and negatives of this class
            aucs.append((1 + tp / (tp + fn) - fp / (fp + tn)) / 2)
    return {
        "accuracy": float(np.mean(truth == predicted)),
        "f1": float(np.mean(f1s)),
        "roc_auc": float(np.mean(aucs)) if aucs else math.nan,
    }


def compute_metrics(task: str, y_true: pd.Series, y_pred: pd.Series) -> dict[str, float]:
    """Regression or classification metrics (``task`` as in a model signature)."""
    if task == "regression":
        return regression_metrics(y_true, y_pred)
    if task == "classification":
        return classification_metrics(y_true, y_pred)
    raise ValueError(f"unknown task {task!r}; expected regression or classification")


def is_degraded(metric: str, current: float, baseline: float, tolerance: float) -> bool:
    """Whether ``current`` is worse than ``baseline`` by more than ``tolerance`` (relative)."""
    if metric in ERROR_METRICS:
        return current > baseline * (1 + tolerance)
    if metric in SCORE_METRICS:
        return current < baseline * (1 - tolerance)
    raise ValueError(f"unknown metric {metric!r}")


def compare(
    current: Mapping[str, float],
    baselines: Mapping[str, tuple[float, str]],
    tolerance: float,
) -> dict[str, dict]:
    """Per metric of ``current`` that has a finite baseline: the values and the verdict.

    ``baselines`` maps a metric to ``(value, source)``. Returns ``{metric: {"current", "baseline",
    "baseline_source", "change", "is_degraded"}}`` where ``change`` is ``current / baseline - 1``
    (None when the baseline is 0). Metrics without a usable baseline are left out.
    """
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    out = {}
    for metric, value in current.items():
        baseline = baselines.get(metric)
        if baseline is None or not math.isfinite(value) or not math.isfinite(baseline[0]):
            continue
        base, source = baseline
        out[metric] = {
            "current": value,
            "baseline": base,
            "baseline_source": source,
            "change": value / base - 1 if base else None,
            "is_degraded": is_degraded(metric, value, base, tolerance),
        }
    return out

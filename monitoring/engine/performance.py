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


def class_text(values: pd.Series) -> np.ndarray:
    """Class labels as text (an object array), an integral number as its integer: a target column
    with missing cells reads as floats (1.0), late labels and predictions are 1, and all are class
    "1" (``str`` alone made them two classes: a labelled window scored accuracy 0)."""
    if pd.api.types.is_float_dtype(values.dtype):
        numbers = values.to_numpy(np.float64)
        if np.isfinite(numbers).all() and (numbers == np.round(numbers)).all():
            return numbers.astype(np.int64).astype(str).astype(object)
    if values.dtype == object:
        return np.array([_one_class_text(value) for value in values.tolist()], dtype=object)
    return values.astype(str).to_numpy(dtype=object)


def _one_class_text(value: object) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


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
    truth = class_text(y_true)
    predicted = class_text(y_pred)
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


# --- Significance of a metric change (issue 11): a bootstrap confidence interval ---------------

# Tests a monitor may ask for: "bootstrap" (the default of new monitors) or the flat "tolerance".
PERFORMANCE_TESTS = ("bootstrap", "tolerance")
DEFAULT_RESAMPLES = 1000
DEFAULT_MAX_ROWS = 20_000  # regression rows resampled (a seeded sample beyond)


def _confusion(truth: np.ndarray, predicted: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Counts of (true class, predicted class), shape (classes, classes)."""
    k = len(classes)
    t, p = np.searchsorted(classes, truth), np.searchsorted(classes, predicted)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.float64)


def _from_confusions(metric: str, counts: np.ndarray) -> np.ndarray:
    """``metric`` of each confusion matrix in ``counts`` (shape (B, k, k)), as
    ``classification_metrics`` computes it from rows (NaN ROC AUC where no class has both)."""
    n = counts.sum(axis=(1, 2))
    tp = np.diagonal(counts, axis1=1, axis2=2)
    if metric == "accuracy":
        return tp.sum(axis=1) / n
    fp = counts.sum(axis=1) - tp  # column sums: predicted as the class
    fn = counts.sum(axis=2) - tp  # row sums: truly the class
    if metric == "f1":
        denominator = 2 * tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 1.0)
        return f1.mean(axis=1)
    if metric == "roc_auc":
        tn = n[:, None] - tp - fp - fn
        usable = (tp + fn > 0) & (fp + tn > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = (1 + tp / (tp + fn) - fp / (fp + tn)) / 2
        auc = np.where(usable, auc, 0.0)
        used = usable.sum(axis=1)
        return np.where(used > 0, auc.sum(axis=1) / np.maximum(used, 1), np.nan)
    raise ValueError(f"unknown classification metric {metric!r}")


class _Side:
    """One side's labelled rows, ready to be resampled: a confusion matrix (classification:
    resampling rows is a multinomial draw over its cells, whatever the row count) or per-row
    errors (regression: at most ``max_rows`` of them, a seeded sample beyond)."""

    def __init__(self, task: str, truth: pd.Series, predicted: pd.Series, classes, max_rows: int, rng):
        self.task, self.rows = task, len(truth)
        if task == "classification":
            self.counts = _confusion(class_text(truth), class_text(predicted), classes)
        else:
            error = pd.to_numeric(predicted, errors="raise").to_numpy(np.float64) - pd.to_numeric(
                truth, errors="raise"
            ).to_numpy(np.float64)
            if len(error) > max_rows:
                error = rng.choice(error, size=max_rows, replace=False)
            self.error = error

    def resampled(
        self, metric: str, resamples: int, rng: np.random.Generator, size: int | None = None
    ) -> np.ndarray:
        """``metric`` on ``resamples`` bootstrap resamples of the rows (of ``size`` rows each:
        default as many as there are; regression: at most the rows kept)."""
        if self.task == "classification":
            total = int(self.counts.sum())
            cells = rng.multinomial(size or total, self.counts.ravel() / total, size=resamples)
            k = self.counts.shape[0]
            return _from_confusions(metric, cells.reshape(resamples, k, k).astype(np.float64))
        out = np.empty(resamples)
        rows = min(size or len(self.error), len(self.error))
        chunk = max(1, 2_000_000 // max(1, rows))  # bounded memory per step
        for start in range(0, resamples, chunk):
            step = min(chunk, resamples - start)
            drawn = self.error[rng.integers(0, len(self.error), size=(step, rows))]
            out[start : start + step] = (
                np.abs(drawn).mean(axis=1) if metric == "mae" else np.sqrt((drawn**2).mean(axis=1))
            )
        return out


def bootstrap_compare(
    task: str,
    current: tuple[pd.Series, pd.Series],
    baselines: Mapping[str, tuple[float, str]],
    *,
    reference: tuple[pd.Series, pd.Series] | None = None,
    baseline_rows: Mapping[str, int] | None = None,
    alpha: float = 0.05,
    min_effect: float = 0.0,
    resamples: int = DEFAULT_RESAMPLES,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
) -> dict[str, dict]:
    """Per metric of ``task`` with a finite baseline: the metric change and its bootstrap
    confidence interval, and whether it is a significant worsening.

    ``current`` and ``reference`` are (labels, predictions) of labelled rows. With ``reference``
    both sides are resampled (the difference of two estimates). Without it the baseline is the
    value of ``baselines`` (e.g. the validation metric training recorded); when ``baseline_rows``
    says on how many rows it was measured, its own sampling error is approximated by resampling
    the current rows at that size (the current rows' spread standing in for the validation
    rows'), else the baseline is taken as exact and only the current rows' error counts (a
    slightly liberal test when the baseline came from few rows). The interval is the percentile interval
    ``[q(alpha), q(1 - alpha)]`` of ``current - baseline`` over ``resamples`` resamples (seeded),
    a ``1 - 2 alpha`` two-sided interval: a metric is degraded when the whole interval lies on the
    bad side of ``min_effect * |baseline|`` (above it for an error metric, below minus it for a
    score), a one-sided test at level ``alpha``. Returns ``compare``'s keys plus ``difference``,
    ``ci_low``, ``ci_high``, ``ci_level`` and ``test`` ("bootstrap").
    """
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if min_effect < 0 or not math.isfinite(min_effect):
        raise ValueError(f"min_effect must be a finite number >= 0, got {min_effect}")
    if resamples < 10:
        raise ValueError(f"resamples must be at least 10, got {resamples}")
    rng = np.random.default_rng(seed)
    truth, predicted = current
    if len(truth) == 0:
        raise ValueError("no labelled rows")
    classes = None
    if task == "classification":
        seen = [truth, predicted, *(reference or ())]
        classes = np.unique(np.concatenate([class_text(series) for series in seen]))
    now = _Side(task, truth, predicted, classes, max_rows, rng)
    before = (
        _Side(task, reference[0], reference[1], classes, max_rows, rng)
        if reference is not None and len(reference[0])
        else None
    )
    values = compute_metrics(task, truth, predicted)
    out: dict[str, dict] = {}
    for metric, value in values.items():
        baseline = baselines.get(metric)
        if baseline is None or not math.isfinite(value) or not math.isfinite(baseline[0]):
            continue
        base, source = baseline
        differences = now.resampled(metric, resamples, rng)
        if before is not None:
            differences = differences - before.resampled(metric, resamples, rng)
        elif (baseline_rows or {}).get(metric):
            # The baseline's noise: a resample of baseline_rows rows around the current value.
            noise = now.resampled(metric, resamples, rng, size=int((baseline_rows or {})[metric])) - value
            differences = differences - (base + noise)
        else:
            differences = differences - base
        differences = differences[np.isfinite(differences)]
        if len(differences) < 10:
            continue
        low, high = (float(q) for q in np.quantile(differences, [alpha, 1 - alpha]))
        margin = min_effect * abs(base)
        degraded = low > margin if metric in ERROR_METRICS else high < -margin
        out[metric] = {
            "current": value,
            "baseline": base,
            "baseline_source": source,
            "change": value / base - 1 if base else None,
            "difference": value - base,
            "ci_low": low,
            "ci_high": high,
            "ci_level": 1 - 2 * alpha,
            "is_degraded": bool(degraded),
            "test": "bootstrap",
        }
    return out


# --- Estimated performance without labels (issue 11): NannyML's CBPE idea ---------------------


def estimate_classification(
    predicted: pd.Series, confidence: pd.Series, classes: list[str] | None = None
) -> dict[str, float]:
    """Accuracy (and, for two classes, macro F1) expected from the model's confidence in the class
    it predicted: with calibrated confidences, a row predicted ``c`` with confidence ``p`` is right
    with probability ``p``, so the expected accuracy is the mean confidence, and the expected
    confusion matrix (for two classes: ``p`` to TP of ``c``, ``1 - p`` to FP of ``c`` and FN of
    the other class) gives the expected F1 (the ratio of expectations, as CBPE computes it).

    Rows without a finite confidence in [0, 1] are left out. ``classes`` (as text) tells a
    binary model whose window happens to predict one class only. Returns ``{"accuracy",
    "accuracy_sd", "rows"}`` (``accuracy_sd``: the standard deviation of the realized accuracy
    around the estimate from the rows' own randomness, ``sqrt(sum p (1 - p)) / n``) and ``"f1"``
    for two classes. Raises ValueError when no row is usable.
    """
    p = pd.to_numeric(confidence, errors="coerce").to_numpy(np.float64)
    usable = np.isfinite(p) & (p >= 0) & (p <= 1) & predicted.notna().to_numpy()
    p, labels = p[usable], class_text(predicted[usable])
    if len(p) == 0:
        raise ValueError("no rows with a confidence in [0, 1]")
    out = {
        "accuracy": float(p.mean()),
        "accuracy_sd": float(math.sqrt(float((p * (1 - p)).sum())) / len(p)),
        "rows": float(len(p)),
    }
    names = sorted(set(classes or ()) | set(labels))
    if len(names) == 2:
        f1s = []
        for name in names:
            mine = labels == name
            tp, fp = float(p[mine].sum()), float((1 - p[mine]).sum())
            fn = float((1 - p[~mine]).sum())  # rows given to the other class, wrongly
            f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
        out["f1"] = float(np.mean(f1s))
    return out

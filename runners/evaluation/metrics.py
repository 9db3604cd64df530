"""Metric values for one set of rows under many row weightings at once, the bootstrap's weights,
and the curves. No Django, no torch.

Every metric is computed from a weight matrix ``W`` of shape (resamples, rows): a bootstrap
resample is the count of times it drew each row, and the point estimate is one row of ones. So
the point estimate and the intervals come from the same code, each resample is a few matrix
products (no Python loop per resample), and a paired comparison applies the same ``W`` to two
models. With unit weights every value equals scikit-learn's function of the same name (the tests
check it): ``roc_auc_score`` (trapezoids over distinct thresholds), ``average_precision_score``
(PR AUC as sum of (R_k - R_k-1) * P_k, not the optimistic trapezoid), ``log_loss`` (probabilities
clipped to [eps, 1 - eps]), ``brier_score_loss``, ``r2_score``; the calibration error is the
expected calibration error over ``calibration_curve``'s 10 uniform bins (Naeini et al. 2015):
the row-weighted mean of |fraction positive - mean probability| per bin.

Multiclass (no positive class) with each class's probability: ``roc_auc`` and ``pr_auc`` are the
unweighted means over the model's classes of the one-vs-rest values (``roc_auc_score(...,
multi_class="ovr", average="macro")``, ``average_precision_score`` of the binarised truth,
``average="macro"``), undefined when a class has no row or every row; ``log_loss`` is
``log_loss(..., labels=classes)``; ``brier`` is ``brier_score_loss(..., labels=classes)`` (the
mean over rows of the summed squared differences to the one-hot truth, not halved); the
calibration error is that of the top class: the confidence is the highest probability and a row
counts as positive when that class is the truth (Guo et al. 2017), over the same 10 bins.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.metrics import precision_recall_curve, roc_curve

from runners.evaluation.spec import LABEL_METRICS, LOWER_IS_BETTER, PROBABILITY_METRICS, WEIGHTED_METRICS

CALIBRATION_BINS = 10
MAX_CURVE_POINTS = 200
RESIDUAL_BINS = 30
# Bootstrap weights are built this many cells at a time (8 bytes each): ~32 MB whatever the size.
CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class Rows:
    """Labelled rows ready for metrics.

    Regression: ``truth`` and ``predicted`` are float arrays (rows,). Classification: they are
    indices into ``classes`` (the class labels as text); ``positive`` is the positive class's index
    (binary evaluation: that class against the rest) or None (multiclass, macro averages);
    ``proba`` the positive class's probability, shape (rows,); or, multiclass, each class's,
    shape (rows, len(classes)), columns in ``classes`` order; or None with ``unavailable`` saying
    why.
    """

    task: str
    truth: np.ndarray
    predicted: np.ndarray
    classes: tuple[str, ...] = ()
    positive: int | None = None
    proba: np.ndarray | None = None
    unavailable: str | None = None

    @property
    def size(self) -> int:
        return int(self.truth.shape[0])

    def take(self, index: np.ndarray) -> Rows:
        """The rows at ``index`` (a boolean mask or positions)."""
        return replace(
            self,
            truth=self.truth[index],
            predicted=self.predicted[index],
            proba=None if self.proba is None else self.proba[index],
        )

    def metric_names(self) -> tuple[str, ...]:
        if self.task == "regression":
            return ("rmse", "mae", "r2")
        names: tuple[str, ...] = LABEL_METRICS
        if self.positive is None:
            names += WEIGHTED_METRICS
        return names + PROBABILITY_METRICS


def metric_values(rows: Rows, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of ``rows`` under each row of ``weights`` (shape (k, rows)), as arrays (k,).

    NaN where a metric is undefined for that weighting (no positive row for recall, one class for
    ROC AUC, a constant target for R²) or unavailable (no probabilities: all NaN).
    """
    weights = np.asarray(weights, dtype=np.float64)
    total = weights.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if rows.task == "regression":
            return _regression(rows, weights, total)
        values = _binary(rows, weights, total) if rows.positive is not None else _macro(rows, weights)
        for name in PROBABILITY_METRICS:
            values[name] = np.full(weights.shape[0], np.nan)
        if rows.proba is not None and rows.positive is not None:
            values.update(_probability(rows, weights, total))
        elif rows.proba is not None:
            values.update(_multiclass_probability(rows, weights, total))
        return values


def _regression(rows: Rows, weights: np.ndarray, total: np.ndarray) -> dict[str, np.ndarray]:
    error = rows.truth - rows.predicted
    # Centred on the mean first so the sum-of-squares difference below loses no precision.
    centred = rows.truth - rows.truth.mean() if rows.size else rows.truth
    mean = weights @ centred / total
    total_squares = weights @ centred**2 - total * mean**2
    residual_squares = weights @ error**2
    r2 = np.where(total_squares > 1e-12 * np.maximum(total, 1), 1 - residual_squares / total_squares, np.nan)
    return {
        "rmse": np.sqrt(residual_squares / total),
        "mae": weights @ np.abs(error) / total,
        "r2": r2,
    }


def _binary(rows: Rows, weights: np.ndarray, total: np.ndarray) -> dict[str, np.ndarray]:
    actual = rows.truth == rows.positive
    guessed = rows.predicted == rows.positive
    cells = np.stack([actual & guessed, ~actual & guessed, actual & ~guessed], axis=1).astype(np.float64)
    tp, fp, fn = (weights @ cells).T
    return {
        "accuracy": weights @ (actual == guessed).astype(np.float64) / total,
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "f1": 2 * tp / (2 * tp + fp + fn),
    }


def _macro(rows: Rows, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Macro averages as scikit-learn's ``average="macro"`` with ``zero_division=0``: over the
    classes present (as truth or prediction) under each weighting."""
    k = len(rows.classes)
    pair = rows.truth * k + rows.predicted
    onehot = sparse.csr_matrix((np.ones(rows.size), (np.arange(rows.size), pair)), shape=(rows.size, k * k))
    counts = np.asarray((onehot.T @ weights.T).T).reshape(-1, k, k)
    tp = np.diagonal(counts, axis1=1, axis2=2)
    predicted = counts.sum(axis=1)
    actual = counts.sum(axis=2)
    present = (predicted + actual) > 0
    precision = np.where(predicted > 0, tp / predicted, 0.0)
    recall = np.where(actual > 0, tp / actual, 0.0)
    f1 = np.where(predicted + actual > 0, 2 * tp / (predicted + actual), 0.0)
    classes_present = present.sum(axis=1)
    # average="weighted": each class by its rows (the truth's count), so absent classes weigh 0.
    support = actual / actual.sum(axis=1, keepdims=True)
    return {
        "accuracy": tp.sum(axis=1) / counts.sum(axis=(1, 2)),
        "precision": (precision * present).sum(axis=1) / classes_present,
        "recall": (recall * present).sum(axis=1) / classes_present,
        "f1": (f1 * present).sum(axis=1) / classes_present,
        "precision_weighted": (precision * support).sum(axis=1),
        "recall_weighted": (recall * support).sum(axis=1),
        "f1_weighted": (f1 * support).sum(axis=1),
    }


def _ranking(scores: np.ndarray, actual: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision of ``scores`` (rows,) for the 0/1 ``actual`` (rows,) under
    each weighting (k, rows); NaN where undefined (no positive row, or for ROC no negative)."""
    # Cumulative weighted positives and negatives down the scores, read at the last row of each
    # run of equal scores (scikit-learn's distinct thresholds).
    order = np.argsort(-scores, kind="mergesort")
    ranked = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked)), scores.shape[0] - 1]
    ranked_weights = weights[:, order]
    tps = np.cumsum(ranked_weights * actual[order], axis=1)[:, ends]
    fps = np.cumsum(ranked_weights * (1 - actual[order]), axis=1)[:, ends]
    positives, negatives = tps[:, -1:], fps[:, -1:]
    tpr = np.hstack([np.zeros_like(positives), tps]) / positives
    fpr = np.hstack([np.zeros_like(negatives), fps]) / negatives
    roc_auc = np.trapezoid(tpr, fpr, axis=1)
    precision = np.where(tps + fps > 0, tps / (tps + fps), 0.0)
    recall_steps = np.diff(np.hstack([np.zeros_like(positives), tps]), axis=1) / positives
    pr_auc = (recall_steps * precision).sum(axis=1)
    both_classes = (positives[:, 0] > 0) & (negatives[:, 0] > 0)
    return np.where(both_classes, roc_auc, np.nan), np.where(positives[:, 0] > 0, pr_auc, np.nan)


def _calibration_error(confidence: np.ndarray, actual: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Expected calibration error of ``confidence`` (rows,) against the 0/1 ``actual`` (rows,)
    over ``CALIBRATION_BINS`` uniform bins, under each weighting (k, rows)."""
    size = confidence.shape[0]
    bins = np.searchsorted(np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)[1:-1], confidence)
    in_bin = sparse.csr_matrix((np.ones(size), (np.arange(size), bins)), shape=(size, CALIBRATION_BINS))
    bin_proba = np.asarray((in_bin.multiply(confidence[:, None]).T @ weights.T).T)
    bin_actual = np.asarray((in_bin.multiply(actual[:, None]).T @ weights.T).T)
    total: np.ndarray = weights.sum(axis=1)
    return np.abs(bin_actual - bin_proba).sum(axis=1) / total


def _multiclass_probability(rows: Rows, weights: np.ndarray, total: np.ndarray) -> dict[str, np.ndarray]:
    assert rows.proba is not None
    assert rows.proba.ndim == 2
    proba = rows.proba
    onehot = np.zeros_like(proba)
    onehot[np.arange(rows.size), rows.truth] = 1.0
    # One-vs-rest per class; the macro mean is NaN when any class's value is (as scikit-learn's).
    ranked = [_ranking(proba[:, c], onehot[:, c], weights) for c in range(proba.shape[1])]
    eps = np.finfo(np.float64).eps
    chosen = np.clip(proba, eps, 1 - eps)[np.arange(rows.size), rows.truth]
    top = proba.argmax(axis=1)
    return {
        "roc_auc": np.mean([auc for auc, _ in ranked], axis=0),
        "pr_auc": np.mean([ap for _, ap in ranked], axis=0),
        "log_loss": weights @ -np.log(chosen) / total,
        "brier": weights @ ((proba - onehot) ** 2).sum(axis=1) / total,
        "calibration_error": _calibration_error(
            proba[np.arange(rows.size), top], (top == rows.truth).astype(np.float64), weights
        ),
    }


def _probability(rows: Rows, weights: np.ndarray, total: np.ndarray) -> dict[str, np.ndarray]:
    assert rows.proba is not None
    proba = rows.proba
    actual = (rows.truth == rows.positive).astype(np.float64)
    roc_auc, pr_auc = _ranking(proba, actual, weights)
    eps = np.finfo(np.float64).eps
    clipped = np.clip(proba, eps, 1 - eps)
    losses = -(actual * np.log(clipped) + (1 - actual) * np.log(1 - clipped))
    return {
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "log_loss": weights @ losses / total,
        "brier": weights @ (proba - actual) ** 2 / total,
        "calibration_error": _calibration_error(proba, actual, weights),
    }


def bootstrap_weights(rows: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Seeded bootstrap resamples of ``rows`` rows as count weights, in chunks of shape (k, rows)
    that hold at most ``CHUNK_CELLS`` cells; ``resamples`` rows in all. The same seed and sizes
    give the same resamples (NumPy's PCG64 stream)."""
    generator = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK_CELLS // max(rows, 1))
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        draws = generator.integers(0, rows, size=(k, rows)) + (np.arange(k) * rows)[:, None]
        yield np.bincount(draws.ravel(), minlength=k * rows).reshape(k, rows).astype(np.float64)
        done += k


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """The percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13) of the finite samples;
    (None, None) when no resample gave a value."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def metric_estimates(rows: Rows, resamples: int, seed: int, confidence: float) -> dict[str, dict[str, Any]]:
    """Every metric of ``rows`` with its percentile bootstrap interval over ``resamples`` seeded
    resamples: ``{name: {"value", "ci_low", "ci_high", "reason"}}``; ``value`` None (with the
    ``reason``, ``undefined_reason``) when the metric has none on these rows, and no interval
    then. The whole evaluation's metrics and each slice's come from here."""
    point = metric_values(rows, np.ones((1, rows.size)))
    names = rows.metric_names()
    samples: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for weights in bootstrap_weights(rows.size, resamples, seed):
        for name, values in metric_values(rows, weights).items():
            samples[name].append(values)
    out = {}
    for name in names:
        value = finite_or_none(point[name][0])
        low, high = (None, None)
        if value is not None and samples[name]:
            low, high = percentile_interval(np.concatenate(samples[name]), confidence)
        out[name] = {
            "value": value,
            "ci_low": low,
            "ci_high": high,
            "reason": None if value is not None else undefined_reason(name, rows),
        }
    return out


def undefined_reason(name: str, rows: Rows) -> str:
    """Why ``name`` has no value on ``rows`` (the point estimate was NaN)."""
    if name in PROBABILITY_METRICS:
        if rows.unavailable:
            return rows.unavailable
        if rows.positive is None and name in ("roc_auc", "pr_auc"):
            return "one-vs-rest needs rows of every class the model gives a probability for"
        if name in ("roc_auc",):
            return "needs rows of both the positive class and the rest"
        if name == "pr_auc":
            return "no row of the positive class"
    reasons = {
        "precision": "no row is predicted positive",
        "recall": "no row of the positive class",
        "f1": "no row of the positive class and none predicted positive",
        "r2": "the target is constant on these rows",
    }
    return reasons.get(name, "no rows")


def is_better(name: str, value: float, other: float) -> bool:
    """Whether ``value`` of metric ``name`` is better than ``other``."""
    return value < other if name in LOWER_IS_BETTER else value > other


def thin(count: int, limit: int = MAX_CURVE_POINTS) -> np.ndarray:
    """At most ``limit`` evenly spread positions out of ``count``, the first and last kept."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, limit)).astype(int))


def finite_or_none(value: Any) -> float | None:
    """A float for JSON, None for NaN or infinity."""
    value = float(value)
    return value if math.isfinite(value) else None


def curves(rows: Rows) -> dict[str, Any]:
    """Curves of the point estimate, each at most ``MAX_CURVE_POINTS`` points.

    Classification with probabilities: ``roc`` (fpr, tpr, threshold; scikit-learn's
    ``roc_curve``), ``pr`` (recall, precision, threshold; ``precision_recall_curve``),
    ``calibration`` (per non-empty uniform bin: mean probability, fraction positive, rows);
    multiclass, only ``calibration``, of the top class's probability against being right.
    Regression: ``residuals``, a histogram of truth - prediction (bin edges in the target's units)
    and its 5/25/50/75/95th percentiles.
    """
    if rows.task == "regression":
        residuals = rows.truth - rows.predicted
        counts, edges = np.histogram(residuals, bins=RESIDUAL_BINS)
        quantiles = np.percentile(residuals, [5, 25, 50, 75, 95])
        return {
            "residuals": {
                "edges": [float(edge) for edge in edges],
                "counts": [int(count) for count in counts],
                "quantiles": {
                    f"p{q}": float(value) for q, value in zip((5, 25, 50, 75, 95), quantiles, strict=True)
                },
                "mean": float(residuals.mean()),
                "std": float(residuals.std()),
            }
        }
    if rows.proba is None:
        return {}
    if rows.positive is None:
        # Multiclass: the top class's calibration (its probability against being right).
        top = rows.proba.argmax(axis=1)
        confidence = rows.proba[np.arange(rows.size), top]
        return {"calibration": _calibration_curve(confidence, (top == rows.truth).astype(np.float64))}
    actual = (rows.truth == rows.positive).astype(int)
    out: dict[str, Any] = {}
    if 0 < actual.sum() < rows.size:
        fpr, tpr, roc_thresholds = roc_curve(actual, rows.proba)
        keep = thin(fpr.size)
        out["roc"] = {
            "fpr": fpr[keep].tolist(),
            "tpr": tpr[keep].tolist(),
            "threshold": [finite_or_none(value) for value in roc_thresholds[keep]],
        }
        precision, recall, pr_thresholds = precision_recall_curve(actual, rows.proba)
        keep = thin(precision.size)
        # precision_recall_curve's last point (recall 0, precision 1) has no threshold.
        thresholds = np.r_[pr_thresholds, np.nan]
        out["pr"] = {
            "recall": recall[keep].tolist(),
            "precision": precision[keep].tolist(),
            "threshold": [finite_or_none(value) for value in thresholds[keep]],
        }
    out["calibration"] = _calibration_curve(rows.proba, actual.astype(np.float64))
    return out


def _calibration_curve(proba: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    bins = np.searchsorted(np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)[1:-1], proba)
    count = np.bincount(bins, minlength=CALIBRATION_BINS)
    proba_sum = np.bincount(bins, weights=proba, minlength=CALIBRATION_BINS)
    actual_sum = np.bincount(bins, weights=actual, minlength=CALIBRATION_BINS)
    filled = count > 0
    return {
        "mean_probability": (proba_sum[filled] / count[filled]).tolist(),
        "fraction_positive": (actual_sum[filled] / count[filled]).tolist(),
        "rows": count[filled].tolist(),
    }

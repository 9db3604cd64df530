"""``evaluate`` and ``evaluate_pair``: a model version on a dataset version, and a candidate against
the champion on the same rows (issue 15). No Django, no torch."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from runners.evaluation.fairness import fairness, group_labels
from runners.evaluation.inputs import as_text, call_predictor, check_frame, check_target, label_rows
from runners.evaluation.metrics import (
    Rows,
    bootstrap_weights,
    curves,
    finite_or_none,
    metric_estimates,
    metric_values,
    percentile_interval,
)
from runners.evaluation.probes import importance, robustness
from runners.evaluation.slices import slices
from runners.evaluation.spec import LOWER_IS_BETTER, EvaluationError, EvaluationSpec, Predict, Predictions

MAX_CONFUSION_CLASSES = 50


@dataclass(frozen=True)
class EvaluationResult:
    """One model on one frame. ``to_dict()`` is plain JSON (no NaN: None, with the reason).

    - ``rows``: rows evaluated; ``dropped``: ``{"sampled_out", "target_missing",
      "prediction_missing"}`` counts (``rows`` + their sum = the frame's rows).
    - ``metrics``: ``{name: {"value", "ci_low", "ci_high", "reason"}}``; regression ``rmse``,
      ``mae`` (target units), ``r2``; classification ``accuracy``, ``precision``, ``recall``, ``f1``
      (of the positive class; macro averages without one, plus ``precision_weighted``,
      ``recall_weighted``, ``f1_weighted``), ``roc_auc``, ``pr_auc``, ``log_loss`` (nats),
      ``brier``, ``calibration_error`` (multiclass: one-vs-rest macro, of the top class; see
      ``metrics``). Intervals: percentile bootstrap at the spec's
      confidence over ``bootstrap_resamples`` seeded resamples.
    - ``curves``: see ``metrics.curves``; ``confusion_matrix``: ``{"labels", "matrix"}``, rows the
      true class, columns the predicted (scikit-learn's ``confusion_matrix`` order), classification.
    - ``slices``: ``{"items", "left_out"}`` worst first (``slices.slices``).
    - ``fairness``: ``{attribute: ...}`` (``fairness.fairness``).
    - ``robustness``: ``[{perturbation, size, columns, metric, clean, perturbed, drop, ...}]``.
    - ``importance``: ``[{feature, mean, std}]`` most important first; ``importance_error`` when
      the model failed on shuffled rows.
    """

    task: str
    primary_metric: str
    positive_label: str | None
    rows: int
    dropped: dict[str, int]
    metrics: dict[str, dict[str, Any]]
    curves: dict[str, Any] = field(default_factory=dict)
    confusion_matrix: dict[str, Any] | None = None
    slices: dict[str, Any] = field(default_factory=dict)
    fairness: dict[str, Any] = field(default_factory=dict)
    robustness: list[dict[str, Any]] = field(default_factory=list)
    importance: list[dict[str, Any]] = field(default_factory=list)
    importance_error: str | None = None

    @property
    def primary(self) -> float | None:
        """The primary metric's value."""
        value: float | None = self.metrics[self.primary_metric]["value"]
        return value

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


class Comparison(NamedTuple):
    """``evaluate_pair``'s answer; unpacks as ``candidate, champion, differences``.

    ``differences``: ``{metric: {"candidate", "champion", "difference", "ci_low", "ci_high",
    "higher_is_better", "is_worse", "is_better", "rows"}}`` where difference = candidate - champion
    on the rows both models predicted, and its interval comes from the paired bootstrap (the same
    resamples score both). ``is_worse``: the whole interval lies on the worse side of 0
    (direction-aware: a higher RMSE is worse, a lower F1 is worse); ``is_better`` likewise.
    """

    candidate: EvaluationResult
    champion: EvaluationResult
    differences: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.to_dict(),
            "champion": self.champion.to_dict(),
            "differences": _plain(self.differences),
        }


@dataclass(frozen=True)
class _Evaluated:
    result: EvaluationResult
    truth: pd.Series
    predictions: Predictions
    kept: np.ndarray


def evaluate(frame: pd.DataFrame, predict: Predict, spec: EvaluationSpec) -> EvaluationResult:
    """Evaluate ``predict`` (the predictor protocol of ``spec.Predictions``) on ``frame``.

    Raises ``EvaluationError(field, message)`` for what cannot be evaluated: an empty frame, an
    absent target/feature/sensitive/slice column, a single class, a missing positive class, a
    model that fails, predictions of the wrong shape, every prediction missing. Missing targets and
    predictions are dropped and counted in ``dropped``.
    """
    return _evaluate(frame, predict, spec).result


def evaluate_pair(
    frame: pd.DataFrame, predict_candidate: Predict, predict_champion: Predict, spec: EvaluationSpec
) -> Comparison:
    """Evaluate a candidate and the champion (the version holding the target alias) on the same
    rows, and the difference of every metric with a paired bootstrap interval (see
    ``Comparison``). Raises ``EvaluationError`` as ``evaluate`` does, for either model."""
    candidate = _evaluate(frame, predict_candidate, spec)
    champion = _evaluate(frame, predict_champion, spec)
    both = candidate.kept & champion.kept
    truth = candidate.truth[both]
    pair = [
        label_rows(truth, _subset(evaluated.predictions, both), spec)[0]
        for evaluated in (candidate, champion)
    ]
    point = [metric_values(rows, np.ones((1, rows.size))) for rows in pair]
    names = pair[0].metric_names()
    samples: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for weights in bootstrap_weights(int(both.sum()), spec.bootstrap_resamples, spec.seed):
        values = [metric_values(rows, weights) for rows in pair]
        for name in names:
            samples[name].append(values[0][name] - values[1][name])
    differences = {}
    for name in names:
        difference = finite_or_none(point[0][name][0] - point[1][name][0])
        low, high = _interval(samples[name], spec) if difference is not None else (None, None)
        higher_is_better = name not in LOWER_IS_BETTER
        worse_side = (high is not None and high < 0) if higher_is_better else (low is not None and low > 0)
        better_side = (low is not None and low > 0) if higher_is_better else (high is not None and high < 0)
        differences[name] = {
            "candidate": finite_or_none(point[0][name][0]),
            "champion": finite_or_none(point[1][name][0]),
            "difference": difference,
            "ci_low": low,
            "ci_high": high,
            "higher_is_better": higher_is_better,
            "is_worse": worse_side,
            "is_better": better_side,
            "rows": int(both.sum()),
        }
    return Comparison(candidate.result, champion.result, differences)


def _evaluate(frame: pd.DataFrame, predict: Predict, spec: EvaluationSpec) -> _Evaluated:
    features = check_frame(frame, spec)
    dropped = {"sampled_out": 0, "target_missing": 0, "prediction_missing": 0}
    if len(frame) > spec.max_rows:
        dropped["sampled_out"] = len(frame) - spec.max_rows
        frame = frame.sample(n=spec.max_rows, random_state=spec.seed).sort_index()
    target = frame[spec.target]
    labelled = target.notna().to_numpy()
    if pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target):
        labelled &= np.isfinite(target.to_numpy(np.float64))
    dropped["target_missing"] = int((~labelled).sum())
    frame = frame[labelled].reset_index(drop=True)
    truth = frame[spec.target]
    check_target(truth, spec)
    predictions = call_predictor(predict, frame[features])
    rows, kept = label_rows(truth, predictions, spec)
    dropped["prediction_missing"] = int((~kept).sum())
    evaluated = frame[kept].reset_index(drop=True)

    metrics = _metrics(rows, spec)
    primary = metrics[spec.metric]["value"]
    if primary is None and spec.metric == "roc_auc":
        raise EvaluationError("primary_metric", f"roc_auc has no value: {metrics['roc_auc']['reason']}")
    result = EvaluationResult(
        task=spec.task,
        primary_metric=spec.metric,
        positive_label=spec.positive_label,
        rows=rows.size,
        dropped=dropped,
        metrics=metrics,
        curves=curves(rows),
        confusion_matrix=_confusion_matrix(rows) if spec.task == "classification" else None,
        slices=slices(evaluated, rows, spec) if spec.slice_columns else {"items": [], "left_out": 0},
        fairness={
            attribute: fairness(rows, group_labels(evaluated[attribute]))
            for attribute in spec.sensitive_attributes
        },
        robustness=(
            robustness(predict, evaluated[features], evaluated[spec.target], spec, primary)
            if spec.robustness
            else []
        ),
        **_importance(predict, evaluated[features], evaluated[spec.target], spec),
    )
    return _Evaluated(result, truth, predictions, kept)


def _metrics(rows: Rows, spec: EvaluationSpec) -> dict[str, dict[str, Any]]:
    return metric_estimates(rows, spec.bootstrap_resamples, spec.seed, spec.confidence)


def _interval(chunks: list[np.ndarray], spec: EvaluationSpec) -> tuple[float | None, float | None]:
    if not chunks:
        return None, None
    return percentile_interval(np.concatenate(chunks), spec.confidence)


def _importance(
    predict: Predict, features: pd.DataFrame, truth: pd.Series, spec: EvaluationSpec
) -> dict[str, Any]:
    if spec.importance_repeats == 0:
        return {"importance": [], "importance_error": None}
    try:
        return {"importance": importance(predict, features, truth, spec), "importance_error": None}
    except EvaluationError as exc:
        return {"importance": [], "importance_error": exc.message}


def _confusion_matrix(rows: Rows) -> dict[str, Any]:
    k = len(rows.classes)
    if k > MAX_CONFUSION_CLASSES:
        return {"labels": None, "matrix": None, "reason": f"{k} classes, more than {MAX_CONFUSION_CLASSES}"}
    counts = np.bincount(rows.truth * k + rows.predicted, minlength=k * k).reshape(k, k)
    return {"labels": list(rows.classes), "matrix": counts.tolist(), "reason": None}


def _subset(predictions: Predictions, mask: np.ndarray) -> Predictions:
    return Predictions(
        labels=np.asarray(predictions.labels)[mask],
        proba=None if predictions.proba is None else predictions.proba[mask],
        classes=predictions.classes,
    )


def sklearn_predictor(model: Any, positive_label: str | None = None) -> Predict:
    """The predictor protocol over a fitted scikit-learn estimator or pipeline: ``predict`` for the
    labels and, for a classifier that has ``predict_proba``, the column of ``positive_label`` when
    it knows that class, or without ``positive_label`` every class's (``classes_``)."""

    def predict(frame: pd.DataFrame) -> Predictions:
        labels = np.asarray(model.predict(frame))
        if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
            return Predictions(labels=labels)
        classes = as_text(np.asarray(model.classes_))
        if positive_label is None:
            return Predictions(labels, np.asarray(model.predict_proba(frame)), tuple(classes))
        column = np.flatnonzero(classes == positive_label)
        proba = np.asarray(model.predict_proba(frame))[:, column[0]] if column.size else None
        return Predictions(labels=labels, proba=proba)

    return predict


def _plain(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities to None, NumPy scalars to Python, tuples to lists."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

"""Robustness and permutation importance (issue 15): the model asked again on changed features.
No Django, no torch.

Robustness, each perturbation drawn once from the spec's seed, on the feature columns it fits:
- ``gaussian_noise``: numeric columns + N(0, (noise_scale * column std)²);
- ``missing_values``: a ``missing_share`` of each column's values set missing;
- ``category_swap``: a ``swap_share`` of each categorical column's values set to its most frequent.
Reported as the primary metric clean and perturbed and their ``drop``, signed so that a positive
drop is a worse model (clean - perturbed for scores, perturbed - clean for errors). A model that
cannot predict on the perturbed rows (many cannot take a missing value) gets that perturbation's
error instead of numbers.

Permutation importance is scikit-learn's ``permutation_importance`` (Breiman 2001; its shuffling
and seeds), scored by the primary metric: a feature's importance is how much worse the metric gets
with that column shuffled, in the metric's units, mean and std over ``importance_repeats``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from runners.evaluation.inputs import call_predictor, label_rows
from runners.evaluation.metrics import finite_or_none, metric_values
from runners.evaluation.spec import LOWER_IS_BETTER, EvaluationError, EvaluationSpec, Predict


def primary_score(
    predict: Predict, features: pd.DataFrame, truth: pd.Series, spec: EvaluationSpec
) -> tuple[float, int]:
    """The primary metric of ``predict`` on ``features`` (NaN when undefined) and the number of
    rows it left without a prediction. Raises ``EvaluationError`` as ``call_predictor`` does."""
    rows, kept = label_rows(truth, call_predictor(predict, features), spec)
    value = metric_values(rows, np.ones((1, rows.size)))[spec.metric][0]
    return float(value), int((~kept).sum())


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _perturbations(
    features: pd.DataFrame, spec: EvaluationSpec
) -> Iterator[tuple[str, float, list[str], pd.DataFrame]]:
    generator = np.random.default_rng(spec.seed)
    rows = len(features)
    numeric = [column for column in features.columns if _is_numeric(features[column])]
    categorical = [column for column in features.columns if column not in numeric]
    if spec.noise_scale > 0 and numeric:
        noisy = features.copy()
        for column in numeric:
            values = features[column].astype("float64")
            scale = spec.noise_scale * float(np.nan_to_num(values.std()))
            noisy[column] = values + generator.normal(0.0, 1.0, rows) * scale
        yield "gaussian_noise", spec.noise_scale, numeric, noisy
    if spec.missing_share > 0:
        holed = features.copy()
        for column in features.columns:
            holed[column] = features[column].mask(generator.random(rows) < spec.missing_share)
        yield "missing_values", spec.missing_share, list(features.columns), holed
    if spec.swap_share > 0 and categorical:
        swapped = features.copy()
        for column in categorical:
            modes = features[column].mode(dropna=True)
            if not modes.empty:
                swapped[column] = features[column].mask(
                    generator.random(rows) < spec.swap_share, modes.iloc[0]
                )
        yield "category_swap", spec.swap_share, categorical, swapped


def robustness(
    predict: Predict, features: pd.DataFrame, truth: pd.Series, spec: EvaluationSpec, clean: float | None
) -> list[dict[str, Any]]:
    """One entry per perturbation that fits the features: ``{perturbation, size, columns, metric,
    clean, perturbed, drop, missing_predictions, error}`` (``clean`` is the evaluation's value)."""
    results = []
    for name, size, columns, perturbed in _perturbations(features, spec):
        entry: dict[str, Any] = {
            "perturbation": name,
            "size": size,
            "columns": len(columns),
            "metric": spec.metric,
            "clean": clean,
            "perturbed": None,
            "drop": None,
            "missing_predictions": None,
            "error": None,
        }
        try:
            value, missing = primary_score(predict, perturbed, truth, spec)
        except EvaluationError as exc:
            entry["error"] = exc.message
        else:
            entry["perturbed"] = finite_or_none(value)
            entry["missing_predictions"] = missing
            if clean is not None and entry["perturbed"] is not None:
                change = value - clean
                entry["drop"] = change if spec.metric in LOWER_IS_BETTER else -change
        results.append(entry)
    return results


class _FixedModel:
    """A trained model as scikit-learn's ``permutation_importance`` wants it: it checks for a
    ``fit`` method it never calls, since it only scores."""

    def __init__(self, predict: Predict):
        self.predict = predict

    def fit(self, features: pd.DataFrame, truth: pd.Series) -> _FixedModel:
        return self


def importance(
    predict: Predict, features: pd.DataFrame, truth: pd.Series, spec: EvaluationSpec
) -> list[dict[str, Any]]:
    """``[{feature, mean, std}]``, most important first; ``importance_max_rows`` rows at most
    (a seeded sample). Raises ``EvaluationError`` when the model fails on shuffled rows."""
    if len(features) > spec.importance_max_rows:
        chosen = np.sort(
            np.random.default_rng(spec.seed).choice(len(features), spec.importance_max_rows, replace=False)
        )
        features, truth = features.iloc[chosen], truth.iloc[chosen]
    features, truth = features.reset_index(drop=True), truth.reset_index(drop=True)
    sign = -1.0 if spec.metric in LOWER_IS_BETTER else 1.0

    def score(model: _FixedModel, shuffled: pd.DataFrame, labels: pd.Series) -> float:
        return sign * primary_score(model.predict, shuffled, labels, spec)[0]

    found = permutation_importance(
        _FixedModel(predict),
        features,
        truth,
        scoring=score,
        n_repeats=spec.importance_repeats,
        random_state=spec.seed,
    )
    order = sorted(
        range(features.shape[1]), key=lambda i: -np.nan_to_num(found.importances_mean[i], nan=-np.inf)
    )
    return [
        {
            "feature": str(features.columns[i]),
            "mean": finite_or_none(found.importances_mean[i]),
            "std": finite_or_none(found.importances_std[i]),
        }
        for i in order
    ]

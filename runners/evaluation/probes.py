"""Robustness and permutation importance (issue 15): the model asked again on changed features.
No Django, no torch.

Robustness, each perturbation drawn once from the spec's seed, on the feature columns it fits:
- ``gaussian_noise``: numeric columns + N(0, (noise_scale * column std)²);
- ``missing_values``: a ``missing_share`` of each column's values set missing;
- ``category_swap``: a ``swap_share`` of each categorical column's values set to its most frequent;
- with the spec's ``image`` (pixel columns on a grid; the tabular perturbations leave those
  columns alone): ``image_noise``, every pixel + N(0, (noise_scale * intensity range)²), the range
  being the pixels' min to max over the evaluated rows, clipped to it; ``image_shift``, each image
  moved ``shift_pixels`` up, down, left or right (one direction per image, drawn), the uncovered
  pixels set to the minimum intensity (the background); ``image_rotation``, each image turned
  ``rotation_degrees`` one way or the other (drawn) about its centre, nearest pixel, the corners
  brought in set to the background.
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
    pixels = spec.image_columns()
    tabular = [column for column in features.columns if column not in set(pixels)]
    numeric = [column for column in tabular if _is_numeric(features[column])]
    categorical = [column for column in tabular if column not in numeric]
    if spec.noise_scale > 0 and numeric:
        noisy = features.copy()
        for column in numeric:
            values = features[column].astype("float64")
            scale = spec.noise_scale * float(np.nan_to_num(values.std()))
            noisy[column] = values + generator.normal(0.0, 1.0, rows) * scale
        yield "gaussian_noise", spec.noise_scale, numeric, noisy
    if spec.missing_share > 0 and tabular:
        holed = features.copy()
        for column in tabular:
            holed[column] = features[column].mask(generator.random(rows) < spec.missing_share)
        yield "missing_values", spec.missing_share, tabular, holed
    if spec.swap_share > 0 and categorical:
        swapped = features.copy()
        for column in categorical:
            modes = features[column].mode(dropna=True)
            if not modes.empty:
                swapped[column] = features[column].mask(
                    generator.random(rows) < spec.swap_share, modes.iloc[0]
                )
        yield "category_swap", spec.swap_share, categorical, swapped
    if spec.image is not None:
        yield from _image_perturbations(features, spec, pixels, generator)


def _image_perturbations(
    features: pd.DataFrame, spec: EvaluationSpec, pixels: list[str], generator: np.random.Generator
) -> Iterator[tuple[str, float, list[str], pd.DataFrame]]:
    assert spec.image is not None
    height, width = spec.image["height"], spec.image["width"]
    try:
        images = features[pixels].to_numpy(np.float64).reshape(-1, height, width)
    except (TypeError, ValueError) as exc:
        raise EvaluationError("image", f"the pixel columns are not all numbers: {exc}") from exc
    finite = images[np.isfinite(images)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)

    def frame_of(changed: np.ndarray) -> pd.DataFrame:
        out = features.copy()
        out[pixels] = changed.reshape(len(features), -1)
        return out

    if spec.noise_scale > 0:
        noise = generator.normal(0.0, spec.noise_scale * (high - low), images.shape)
        yield "image_noise", spec.noise_scale, pixels, frame_of(np.clip(images + noise, low, high))
    shift = spec.image["shift_pixels"]
    if shift > 0:
        yield "image_shift", float(shift), pixels, frame_of(_shifted(images, shift, low, generator))
    degrees = spec.image["rotation_degrees"]
    if degrees > 0:
        yield "image_rotation", float(degrees), pixels, frame_of(_rotated(images, degrees, low, generator))


def _shifted(images: np.ndarray, shift: int, background: float, generator: np.random.Generator) -> np.ndarray:
    """Each image of ``images`` (n, height, width) moved ``shift`` pixels in a drawn direction."""
    direction = generator.integers(0, 4, images.shape[0])
    out = np.full_like(images, background)
    out[direction == 0, :-shift, :] = images[direction == 0, shift:, :]  # up
    out[direction == 1, shift:, :] = images[direction == 1, :-shift, :]  # down
    out[direction == 2, :, :-shift] = images[direction == 2, :, shift:]  # left
    out[direction == 3, :, shift:] = images[direction == 3, :, :-shift]  # right
    return out


def _rotated(
    images: np.ndarray, degrees: float, background: float, generator: np.random.Generator
) -> np.ndarray:
    """Each image of ``images`` (n, height, width) turned ``degrees`` clockwise or counter-clockwise
    (drawn) about its centre: each output pixel takes the nearest source pixel."""
    _, height, width = images.shape
    sign = np.where(generator.random(images.shape[0]) < 0.5, -1.0, 1.0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    out = np.full_like(images, background)
    for turn in (-1.0, 1.0):
        chosen = sign == turn
        angle = np.deg2rad(turn * degrees)
        source_y = np.rint(cy + (y - cy) * np.cos(angle) - (x - cx) * np.sin(angle)).astype(int)
        source_x = np.rint(cx + (y - cy) * np.sin(angle) + (x - cx) * np.cos(angle)).astype(int)
        inside = (source_y >= 0) & (source_y < height) & (source_x >= 0) & (source_x < width)
        turned = out[chosen]
        turned[:, inside] = images[chosen][:, source_y[inside], source_x[inside]]
        out[chosen] = turned
    return out


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

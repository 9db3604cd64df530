"""What an evaluation asks for (``EvaluationSpec``), what a model answers (``Predictions``) and the
one error the engine raises (``EvaluationError``). No Django, no torch."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

TASKS = ("regression", "classification")
REGRESSION_METRICS = ("rmse", "mae", "r2")
# Label-based metrics need only the predicted class; the rest need the positive class's probability.
LABEL_METRICS = ("accuracy", "precision", "recall", "f1")
# Multiclass only (no positive_label): scikit-learn's average="weighted" (by each class's rows).
WEIGHTED_METRICS = ("precision_weighted", "recall_weighted", "f1_weighted")
PROBABILITY_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_error")
CLASSIFICATION_METRICS = LABEL_METRICS + WEIGHTED_METRICS + PROBABILITY_METRICS
# The image layout's bounds (pixels per side) and its keys.
MAX_IMAGE_SIDE = 4096
# One column per pixel: past this a frame is not a table any more (and the names alone cost).
MAX_IMAGE_PIXELS = 65_536
IMAGE_FIELDS = frozenset({"columns", "prefix", "height", "width", "shift_pixels", "rotation_degrees"})
# Direction of each metric: the comparison and the slice order read it (lower RMSE is better).
# Bounds on the work one spec asks for: each bootstrap resample and importance repeat re-scores
# every row, and each slice bin is a slice; past these a job only burns its time limit.
MAX_BOOTSTRAP_RESAMPLES = 10_000
MAX_IMPORTANCE_REPEATS = 100
MAX_SLICE_BINS = 100
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss", "brier", "calibration_error"})


class EvaluationError(ValueError):
    """The spec, the frame or the predictions cannot be evaluated; ``field`` names what is at fault
    (a spec field, ``"frame"``, ``"predictions"`` or ``"predictor"``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Predictions:
    """A model's answer for every row of the frame it was given, in the frame's order.

    ``labels``: shape (rows,), the predicted class (classification) or value (regression); a
    missing prediction is NaN/None. ``proba``: shape (rows,), the probability of the spec's
    ``positive_label``; or, with ``classes`` (the model's classes as text), shape
    (rows, len(classes)), each class's probability (a multiclass evaluation's); or None when the
    model gives no probabilities (ROC AUC, PR AUC, log loss, Brier score and calibration are then
    reported as not available, with that reason).
    """

    labels: np.ndarray
    proba: np.ndarray | None = None
    classes: tuple[str, ...] | None = None


# The predictor protocol: the frame's feature columns in, one prediction per row out.
Predict = Callable[[pd.DataFrame], Predictions]


@dataclass(frozen=True)
class EvaluationSpec:
    """How to evaluate one model version on one dataset version (issue 15).

    - ``task``: ``"regression"`` or ``"classification"``; ``target``: the label column.
    - ``positive_label``: the class the gate cares about (compared as text, e.g. ``" >50K"`` in the
      adult data, which keeps its leading spaces). Given, classification is binary, that class
      against the rest (one-vs-rest on a multiclass target). None: multiclass, macro- and
      weighted-averaged precision/recall/F1, and, when the model gives each class's probability,
      one-vs-rest macro ROC AUC and PR AUC, multiclass log loss and Brier score, and the
      calibration error of the top class's probability. Fairness needs it: selection rates are of
      one class, so a multiclass target's fairness is that of ``positive_label`` against the rest.
    - ``image``: the feature columns that are one grayscale image per row, row-major:
      ``{"columns": [...]}`` or ``{"prefix": "p"}`` (columns ``p0`` .. ``p{height*width-1}``),
      ``height``, ``width`` (pixels), optional ``shift_pixels`` (default 1) and
      ``rotation_degrees`` (default 15; 0: no rotation). Robustness then perturbs those columns as
      images (noise scaled by the intensity range, a shift, a rotation) instead of as numbers.
    - ``features``: the columns the predictor is given (default: every column but the target).
    - ``sensitive_attributes``: columns to report fairness across; ``slice_columns``: columns to
      report metrics per value of (numeric ones with more than ``slice_bins`` values are cut into
      that many quantile bins); slices under ``min_slice_rows`` rows are marked too small, at most
      ``max_slices`` are reported, worst first.
    - ``bootstrap_resamples`` / ``confidence`` / ``seed``: the percentile bootstrap intervals.
    - ``robustness``: run the perturbations; ``noise_scale`` (Gaussian noise's std in units of each
      numeric column's std), ``missing_share`` and ``swap_share`` (share of values set missing, or
      swapped to the column's most frequent category).
    - ``importance_repeats`` (0: none) and ``importance_max_rows``: permutation importance.
    - ``max_rows``: a larger frame is sampled down to this many rows (seeded) before anything runs.
    - ``primary_metric``: what slices sort by and robustness and importance measure; default
      ``rmse`` (regression) or ``f1`` (classification: it needs only labels, so every model has
      it, and it is what the gate's decision threshold produces; ROC AUC can be chosen instead).
    """

    task: str
    target: str
    positive_label: str | None = None
    features: tuple[str, ...] | None = None
    sensitive_attributes: tuple[str, ...] = ()
    slice_columns: tuple[str, ...] = ()
    slice_bins: int = 4
    min_slice_rows: int = 30
    max_slices: int = 50
    bootstrap_resamples: int = 200
    confidence: float = 0.95
    seed: int = 0
    robustness: bool = True
    noise_scale: float = 0.1
    missing_share: float = 0.1
    swap_share: float = 0.1
    importance_repeats: int = 5
    importance_max_rows: int = 5_000
    max_rows: int = 200_000
    primary_metric: str | None = None
    image: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise EvaluationError("task", f"{self.task!r} is not one of {', '.join(TASKS)}")
        if not isinstance(self.target, str) or not self.target:
            raise EvaluationError("target", "name the label column")
        if self.positive_label is not None and self.task == "regression":
            raise EvaluationError("positive_label", "a regression has no positive label")
        if self.positive_label is not None and not isinstance(self.positive_label, str):
            raise EvaluationError("positive_label", "give the positive class as text")
        if self.sensitive_attributes and self.task == "classification" and self.positive_label is None:
            raise EvaluationError(
                "positive_label",
                "fairness (selection rates, equalized odds) needs the positive class; for a "
                "multiclass target name one class, evaluated against the rest",
            )
        for name in ("features", "sensitive_attributes", "slice_columns"):
            value = getattr(self, name)
            if value is None:
                if name != "features":  # JSON null: none asked for (features: every column)
                    object.__setattr__(self, name, ())
                continue
            # A list (JSON) or tuple only: a number is not iterable, and a string or an object
            # would be read as its characters or keys.
            if not isinstance(value, list | tuple) or not all(isinstance(column, str) for column in value):
                raise EvaluationError(name, "give a list of column names")
            if len(set(value)) != len(value):
                # A repeated column is evaluated again for each repeat (a fairness frame, a slice
                # set): work without information.
                raise EvaluationError(name, "a column appears more than once")
            object.__setattr__(self, name, tuple(value))
            if self.target in value:
                raise EvaluationError(name, f"the target {self.target!r} cannot be one of them")
        if self.features is not None and not self.features:
            raise EvaluationError("features", "give at least one feature, or leave it out for all")
        self._check_int("slice_bins", 2, MAX_SLICE_BINS)
        self._check_int("min_slice_rows", 1)
        self._check_int("max_slices", 1)
        self._check_int("bootstrap_resamples", 0, MAX_BOOTSTRAP_RESAMPLES)
        self._check_int("seed", 0)
        self._check_int("importance_repeats", 0, MAX_IMPORTANCE_REPEATS)
        self._check_int("importance_max_rows", 10)
        self._check_int("max_rows", 10)
        if not isinstance(self.robustness, bool):
            raise EvaluationError("robustness", "give true or false")
        self._check_share("confidence", low_open=True)
        self._check_share("missing_share", low_open=False)
        self._check_share("swap_share", low_open=False)
        if not _is_number(self.noise_scale) or not 0 <= self.noise_scale <= 10:
            raise EvaluationError("noise_scale", "give a number of standard deviations from 0 to 10")
        allowed = REGRESSION_METRICS if self.task == "regression" else ("f1", "accuracy", "roc_auc")
        if self.primary_metric is None:
            object.__setattr__(self, "primary_metric", "rmse" if self.task == "regression" else "f1")
        elif self.primary_metric not in allowed:
            raise EvaluationError("primary_metric", f"for {self.task} choose one of {', '.join(allowed)}")
        if self.image is not None:
            object.__setattr__(self, "image", _check_image(self.image, self.target))

    def _check_int(self, name: str, minimum: int, maximum: int | None = None) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise EvaluationError(name, f"give a whole number of at least {minimum}, not {value!r:.40}")
        if maximum is not None and value > maximum:
            raise EvaluationError(name, f"give a whole number of at most {maximum:,}, not {value:,}"[:160])

    def _check_share(self, name: str, *, low_open: bool) -> None:
        value = getattr(self, name)
        if not _is_number(value) or not (0 < value < 1 if low_open else 0 <= value < 1):
            raise EvaluationError(name, f"give a share {'between 0 and 1' if low_open else 'from 0 to 1'}")

    def image_columns(self) -> list[str]:
        """The image's pixel columns, row-major ([] without ``image``)."""
        if self.image is None:
            return []
        if "columns" in self.image:
            return list(self.image["columns"])
        return [f"{self.image['prefix']}{i}" for i in range(self.image["height"] * self.image["width"])]

    @property
    def metric(self) -> str:
        """The primary metric's name (``primary_metric`` after defaults)."""
        assert self.primary_metric is not None  # set in __post_init__
        return self.primary_metric

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: lists for the column tuples; ``from_dict(to_dict())`` gives an equal spec."""
        out: dict[str, Any] = {}
        for spec_field in fields(self):
            value = getattr(self, spec_field.name)
            out[spec_field.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationSpec:
        """Parse a spec from JSON; unknown keys and bad values raise ``EvaluationError``."""
        if not isinstance(data, Mapping):
            raise EvaluationError("spec", "give an object")
        known = {spec_field.name for spec_field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EvaluationError(unknown[0], f"unknown field; the fields are {', '.join(sorted(known))}")
        for required in ("task", "target"):
            if required not in data:
                raise EvaluationError(required, "required")
        values = dict(data)
        # JSON has no distinction the gate cares about between a class 1 and a class "1".
        if isinstance(values.get("positive_label"), int) and not isinstance(values["positive_label"], bool):
            values["positive_label"] = str(values["positive_label"])
        return cls(**values)


def _check_image(image: Any, target: str) -> dict[str, Any]:
    """``image`` normalised (defaults filled in); raises ``EvaluationError("image", ...)``."""
    if not isinstance(image, Mapping):
        raise EvaluationError("image", 'give an object: {"prefix" or "columns", "height", "width"}')
    unknown = sorted(set(image) - IMAGE_FIELDS)
    if unknown:
        raise EvaluationError(
            "image", f"unknown key {unknown[0]!r:.40}; the keys are {', '.join(sorted(IMAGE_FIELDS))}"
        )
    out = {"shift_pixels": 1, "rotation_degrees": 15, **image}
    for side in ("height", "width"):
        value = out.get(side)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_IMAGE_SIDE:
            raise EvaluationError(
                "image", f"{side}: give a whole number of pixels from 1 to {MAX_IMAGE_SIDE}"
            )
    pixels = out["height"] * out["width"]
    if pixels > MAX_IMAGE_PIXELS:
        raise EvaluationError("image", f"{pixels:,} pixels: at most {MAX_IMAGE_PIXELS:,} pixel columns")
    if ("columns" in out) == ("prefix" in out):
        raise EvaluationError("image", "give either columns (the pixel columns, row-major) or prefix")
    if "columns" in out:
        columns = out["columns"]
        if isinstance(columns, str) or not isinstance(columns, list | tuple):
            raise EvaluationError("image", "columns: give a list of column names")
        if not all(isinstance(column, str) for column in columns):
            raise EvaluationError("image", "columns: give a list of column names")
        if len(columns) != pixels:
            raise EvaluationError(
                "image",
                f"columns: {len(columns)} columns for a {out['height']}x{out['width']} image "
                f"of {pixels} pixels",
            )
        if len(set(columns)) != len(columns):
            raise EvaluationError("image", "columns: a column is named twice")
        if target in columns:
            raise EvaluationError("image", f"columns: the target {target!r} cannot be a pixel")
        out["columns"] = list(columns)
    elif not isinstance(out["prefix"], str) or not out["prefix"]:
        raise EvaluationError(
            "image", 'prefix: give the pixel columns\' common prefix, e.g. "p" for p0, p1, ...'
        )
    shift = out["shift_pixels"]
    if (
        isinstance(shift, bool)
        or not isinstance(shift, int)
        or not 0 <= shift < max(out["height"], out["width"])
    ):
        raise EvaluationError(
            "image", "shift_pixels: give a whole number of pixels, 0 or more, under the image's side"
        )
    rotation = out["rotation_degrees"]
    if not _is_number(rotation) or not 0 <= rotation <= 180:
        raise EvaluationError("image", "rotation_degrees: give a number of degrees from 0 to 180")
    return out


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float (JSON allows 10**400)
        return False

"""From a frame and a model's predictions to the labelled rows metrics are computed on, refusing
what cannot be evaluated with an ``EvaluationError`` that names the field and the count.

Choices (issue 15's bad inputs): rows whose target is missing are dropped before the model is
asked and counted; rows whose prediction is missing (a NaN or None label, or a NaN probability) are
dropped and counted, and the metrics are those of the rest; every prediction missing is an error.
No Django, no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from runners.evaluation.metrics import Rows
from runners.evaluation.spec import EvaluationError, EvaluationSpec, Predict, Predictions

MAX_LISTED = 10
MAX_DETAIL = 300
# Fairness compares groups of people (sex, race, an age band): an attribute with more distinct
# values is an identifier or a measurement, whose per-group table (one entry per value, kept in
# the results) only costs time and, past a few thousand, more JSON than a record may hold.
MAX_FAIRNESS_GROUPS = 100


def as_text(values: pd.Series | np.ndarray) -> np.ndarray:
    """Class labels as text (object array, None where missing), so a class 1 read from CSV and a
    model's 1.0 are the same class."""
    series = pd.Series(values)
    text = series.astype(str)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        numbers = series.astype("float64")
        finite = numbers[np.isfinite(numbers)]
        if (finite == np.round(finite)).all():
            text = numbers.fillna(0).astype("int64").astype(str)
    return text.astype(object).where(series.notna(), None).to_numpy(dtype=object)


def _listed(values: Any) -> str:
    values = [repr(value) for value in list(values)[:MAX_LISTED]]
    return ", ".join(values) + (" ..." if len(values) == MAX_LISTED else "")


def check_frame(frame: Any, spec: EvaluationSpec) -> list[str]:
    """The feature columns; raises ``EvaluationError`` for an empty frame, an absent column or a
    sensitive attribute with more than ``MAX_FAIRNESS_GROUPS`` distinct values."""
    if not isinstance(frame, pd.DataFrame):
        raise EvaluationError("frame", f"give a pandas DataFrame, not {type(frame).__name__}")
    if frame.empty:
        raise EvaluationError("frame", "the frame has no rows")
    absent = absent_columns(spec, frame.columns)
    if absent is not None:
        field, names = absent
        raise EvaluationError(
            field,
            f"column {_listed(names)} not in the frame, whose columns are {_listed(frame.columns)}",
        )
    for column in spec.sensitive_attributes:
        groups = frame[column].nunique(dropna=False)
        if groups > MAX_FAIRNESS_GROUPS:
            raise EvaluationError(
                "sensitive_attributes",
                f"column {column!r} has {groups:,} distinct values; fairness compares at most "
                f"{MAX_FAIRNESS_GROUPS} groups (a category such as sex or race): bin it into a new "
                "column, or report it with slice_columns",
            )
    features = (
        list(spec.features) if spec.features is not None else [c for c in frame.columns if c != spec.target]
    )
    check_image_features(spec, features)
    return features


def absent_columns(spec: EvaluationSpec, columns: Any) -> tuple[str, list[str]] | None:
    """The first spec field (``target``, ``features``, ``sensitive_attributes``, ``slice_columns``,
    ``image``) naming columns not among ``columns``, with those columns; None when all are there.
    One rule for the frame (``check_frame``) and for a dataset version's schema at submission."""
    present = set(columns)
    named = {
        "target": (spec.target,),
        "features": spec.features or (),
        "sensitive_attributes": spec.sensitive_attributes,
        "slice_columns": spec.slice_columns,
        "image": spec.image_columns(),
    }
    for field, wanted in named.items():
        absent = [column for column in wanted if column not in present]
        if absent:
            return field, absent
    return None


def check_image_features(spec: EvaluationSpec, features: list[str]) -> None:
    """Every pixel column of the spec's ``image`` is a feature; raises ``EvaluationError("image")``."""
    outside = [column for column in spec.image_columns() if column not in set(features)]
    if outside:
        raise EvaluationError("image", f"pixel column {_listed(outside)} is not among the features")


def check_target(truth: pd.Series, spec: EvaluationSpec) -> None:
    """Refuse a target the task cannot use: no labelled row, a non-numeric regression target, a
    single class, a positive label that is not a class."""
    if truth.empty:
        raise EvaluationError("target", f"every row's {spec.target!r} is missing")
    if spec.task == "regression":
        if not pd.api.types.is_numeric_dtype(truth) or pd.api.types.is_bool_dtype(truth):
            raise EvaluationError("target", f"a regression needs a numeric target; {spec.target!r} is not")
        return
    classes = pd.unique(as_text(truth))
    if len(classes) < 2:
        raise EvaluationError(
            "target",
            f"only one class ({classes[0]!r}) in {len(truth)} labelled rows: classification metrics need two",
        )
    if spec.positive_label is not None and spec.positive_label not in classes:
        near = [label for label in classes if str(label).strip() == spec.positive_label.strip()]
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise EvaluationError(
            "positive_label",
            f"{spec.positive_label!r} is not a class of {spec.target!r} ({_listed(classes)}){hint}",
        )


def call_predictor(predict: Predict, features: pd.DataFrame) -> Predictions:
    """The model's predictions for ``features``, checked for shape and probability range.

    A model that raises is reported as ``EvaluationError("predictor", ...)`` with its error: the
    gate records why it could not evaluate rather than failing its job.
    """
    try:
        predictions = predict(features)
    except Exception as exc:  # the model is user code: any failure is the model's, reported
        # Bounded: a library's error can run to paragraphs, and this lands in a JSON report.
        detail = str(exc) if len(str(exc)) <= MAX_DETAIL else str(exc)[:MAX_DETAIL] + " ..."
        raise EvaluationError("predictor", f"the model failed: {type(exc).__name__}: {detail}") from exc
    if not isinstance(predictions, Predictions):
        raise EvaluationError("predictor", f"returned {type(predictions).__name__}, not Predictions")
    rows = len(features)
    labels = np.asarray(predictions.labels)
    if labels.ndim != 1 or labels.shape[0] != rows:
        raise EvaluationError("predictions", f"{labels.shape} labels for {rows} rows; give one per row")
    proba = predictions.proba
    classes = None if predictions.classes is None else tuple(as_text(np.asarray(predictions.classes)))
    if proba is not None:
        try:
            proba = np.asarray(proba, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise EvaluationError("predictions", f"probabilities are not numbers: {exc}") from exc
        if classes is None and (proba.ndim != 1 or proba.shape[0] != rows):
            raise EvaluationError(
                "predictions",
                f"{proba.shape} probabilities for {rows} rows; give the positive class's, one per row",
            )
        if classes is not None and proba.shape != (rows, len(classes)):
            raise EvaluationError(
                "predictions",
                f"{proba.shape} probabilities for {rows} rows of {len(classes)} classes; "
                "give one per row and class",
            )
        if classes is not None and len(set(classes)) != len(classes):
            raise EvaluationError("predictions", f"a class is named twice among {_listed(classes)}")
        outside = int(np.sum((proba < 0) | (proba > 1)))
        if outside:
            raise EvaluationError("predictions", f"{outside} probabilities outside [0, 1]")
    return Predictions(labels=labels, proba=proba, classes=classes)


def label_rows(truth: pd.Series, predictions: Predictions, spec: EvaluationSpec) -> tuple[Rows, np.ndarray]:
    """The labelled rows and the mask (shape (rows,)) of those with a prediction.

    Raises ``EvaluationError("predictions", ...)`` when every prediction is missing, or when a
    regression's predictions are not numbers.
    """
    if spec.task == "regression":
        try:
            predicted = pd.to_numeric(pd.Series(predictions.labels), errors="raise").to_numpy(np.float64)
        except (TypeError, ValueError) as exc:
            raise EvaluationError("predictions", f"regression predictions must be numbers: {exc}") from exc
        kept = np.isfinite(predicted)
        _refuse_all_missing(kept)
        rows = Rows("regression", truth.to_numpy(np.float64)[kept], predicted[kept])
        return rows, kept
    predicted_text = as_text(predictions.labels)
    kept = pd.notna(predicted_text)
    proba = predictions.proba
    if proba is not None:
        kept &= np.isfinite(proba) if proba.ndim == 1 else np.isfinite(proba).all(axis=1)
    _refuse_all_missing(kept)
    truth_text = as_text(truth)[kept]
    # The positive class stays a class even when its rows all lost their prediction; the
    # model's classes stay classes when the rows lack some (one-vs-rest reads every column).
    extra = set() if spec.positive_label is None else {spec.positive_label}
    seen = set(truth_text) | set(predicted_text[kept])
    multiclass_proba = spec.positive_label is None and proba is not None and proba.ndim == 2
    if multiclass_proba and predictions.classes is not None:
        extra |= set(predictions.classes)
    classes = tuple(sorted(seen | extra))
    index = {label: position for position, label in enumerate(classes)}
    positive = None if spec.positive_label is None else index[spec.positive_label]
    unavailable = None
    if proba is None:
        unavailable = "the model gives no probabilities"
    elif positive is not None and proba.ndim == 2:
        proba = _class_column(proba, predictions.classes, spec.positive_label)
        if proba is None:
            unavailable = f"the model gives no probability for the positive class {spec.positive_label!r}"
    elif positive is None and proba.ndim == 1:
        unavailable = "multiclass evaluation: the model gives one class's probability, not each class's"
        proba = None
    elif positive is None:
        proba, unavailable = _class_matrix(proba[kept], predictions.classes, seen, classes)
    if proba is not None and proba.ndim == 1:
        proba = proba[kept]
    rows = Rows(
        "classification",
        np.array([index[label] for label in truth_text], dtype=np.int64),
        np.array([index[label] for label in predicted_text[kept]], dtype=np.int64),
        classes=classes,
        positive=positive,
        proba=None if unavailable else proba,
        unavailable=unavailable,
    )
    return rows, kept


def _class_column(proba: np.ndarray, classes: tuple[str, ...] | None, label: str | None) -> np.ndarray | None:
    """The column of ``label`` in the (rows, classes) ``proba``; None when it has none."""
    positions = [i for i, name in enumerate(classes or ()) if name == label]
    return proba[:, positions[0]] if positions else None


# A row of class probabilities may miss 1 by float rounding (a float32 softmax), not more.
SUM_TOLERANCE = 1e-4


def _class_matrix(
    proba: np.ndarray, model_classes: tuple[str, ...] | None, seen: set[str], classes: tuple[str, ...]
) -> tuple[np.ndarray | None, str | None]:
    """The (rows, len(classes)) probabilities in ``classes`` order, or None and why not: a class
    of the rows (truth or predicted) without a column, or rows that do not sum to 1."""
    assert model_classes is not None  # call_predictor refuses a matrix without its classes
    lacking = sorted(seen - set(model_classes))
    if lacking:
        return None, (
            f"the model gives no probability for class {_listed(lacking)} of the evaluated rows "
            f"(its classes: {_listed(model_classes)})"
        )
    sums = proba.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > SUM_TOLERANCE)
    if off.size:
        return None, (
            f"the model's class probabilities do not sum to 1 on {off.size} rows "
            f"(e.g. {sums[off[0]]:.4g}), so they are not probabilities"
        )
    order = [model_classes.index(label) for label in classes]
    return proba[:, order], None


def _refuse_all_missing(kept: np.ndarray) -> None:
    if not kept.any():
        raise EvaluationError("predictions", f"all {kept.size} predictions are missing (NaN)")

"""A check's labels and estimated performance (issue 11), for ``monitoring.execute._performance``.

- ``join``: the labels of the window's rows: late labels (``PredictionLabel``) joined on the
  ``prediction_id`` column of served rows, or on the monitor's ``label_key`` column of batch
  outputs; where a row has no late label, its own target column (when the rows hold one). Says how
  many rows got a label (the coverage the check page shows).
- ``estimate``: for a classification whose rows carry ``confidence`` (the model's probability of
  the class it predicted, written by batch inference), the accuracy and F1 expected from it
  (``monitoring.engine.performance.estimate_classification``), marked ``estimated: true``.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from governance.models import ModelVersion
from monitoring.actions.labels import labels_for
from monitoring.engine import performance as perf
from monitoring.models import DriftCheck, LabelKind

PREDICTION_ID_COLUMN = "prediction_id"
CONFIDENCE_COLUMN = "confidence"


def key_text(value: Any) -> str | None:
    """A key column's value as labels name it (a whole float is an integer: 7.0 is "7")."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def join(
    check: DriftCheck, current: pd.DataFrame, target: str, label_key: str
) -> tuple[pd.Series | None, dict]:
    """(the label of each row of ``current``, aligned, NaN where none; the coverage), or (None,
    coverage) when the rows can have no label."""
    own = current[target] if target in current.columns else None
    if PREDICTION_ID_COLUMN in current.columns:
        kind, keys, joined_on = (
            LabelKind.PREDICTION_ID,
            current[PREDICTION_ID_COLUMN].astype(str),
            "prediction_id",
        )
    elif label_key and label_key in current.columns:
        kind, keys, joined_on = LabelKind.KEY, current[label_key].map(key_text), label_key
    else:
        kind, keys, joined_on = None, None, ""
    late = 0
    truth = own
    if kind is not None and keys is not None:
        found = labels_for(check.model_version.model_id, kind, [key for key in keys if key is not None])
        joined = keys.map(found)
        late = int(joined.notna().sum())
        if check.model_version.signature.get("task") == "regression":
            joined = pd.to_numeric(joined, errors="coerce")
        truth = joined if own is None else joined.where(joined.notna(), own)
    labelled = 0 if truth is None else int(truth.notna().sum())
    coverage = {
        "rows": len(current),
        "labelled": labelled,
        "share": labelled / len(current) if len(current) else 0.0,
        "late_labels": late,
        "joined_on": joined_on,
    }
    return truth, coverage


def estimate(task: str, current: pd.DataFrame, model_version: ModelVersion) -> dict | None:
    """The estimated performance of a classification from its rows' confidence, or None."""
    if task != "classification" or CONFIDENCE_COLUMN not in current.columns:
        return None
    try:
        found = perf.estimate_classification(current["prediction"], current[CONFIDENCE_COLUMN])
    except ValueError:
        return None
    baseline = model_version.metrics.get("accuracy")
    return {
        "estimated": True,
        "method": "cbpe",
        **found,
        "rows": int(found["rows"]),
        "baseline_accuracy": baseline if isinstance(baseline, int | float) else None,
    }

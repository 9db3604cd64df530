"""Fairness across sensitive attributes, computed by Fairlearn (issue 15): the reference
implementation auditors recognise, so the gate's numbers are Fairlearn's, not a look-alike.

Classification (binary): per group the selection rate (share predicted positive), true and false
positive rates and rows (``MetricFrame``); the demographic parity difference and ratio (between
groups: max - min and min / max of selection rates), the equalized odds difference (the larger of
the TPR and FPR differences, Hardt et al. 2016) and the equal opportunity difference (the TPR
difference), each as Fairlearn's function of that name computes it (the tests check equality).
The four-fifths rule (EEOC, 29 CFR 1607.4(D)) holds when the selection-rate ratio is at least 0.8.
Regression: per group RMSE, MAE and rows, and the RMSE difference and ratio between groups. A
missing attribute value is its own group, ``(missing)``. No Django, no torch.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import mean_absolute_error, root_mean_squared_error

from runners.evaluation.metrics import Rows, finite_or_none

FOUR_FIFTHS = 0.8
MISSING_GROUP = "(missing)"


def group_labels(values: pd.Series) -> np.ndarray:
    """A sensitive or slice column's values as text, a missing value as ``(missing)``."""
    text = values.astype(object).where(values.notna(), MISSING_GROUP).astype(str)
    return text.to_numpy()


def fairness(rows: Rows, groups: np.ndarray) -> dict[str, Any]:
    """Fairness of ``rows`` across ``groups`` (one label per row, shape (rows,)); see the module
    docstring for the quantities. Groups are listed by rows, largest first."""
    # Fairlearn warns (and reports NaN, which we report as None) for a group with no positive or
    # no negative row; the per-group rows say which.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if rows.task == "regression":
            return _regression(rows, groups)
        return _binary(rows, groups)


def _binary(rows: Rows, groups: np.ndarray) -> dict[str, Any]:
    actual = (rows.truth == rows.positive).astype(int)
    guessed = (rows.predicted == rows.positive).astype(int)
    # One MetricFrame, read the way Fairlearn's demographic_parity_* / equalized_odds_difference /
    # equal_opportunity_difference read theirs (between groups; equalized odds the worse of the
    # TPR and FPR differences): calling those four would build four more frames, 80 % of the time.
    frame = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
            "rows": count,
        },
        y_true=actual,
        y_pred=guessed,
        sensitive_features=groups,
    )
    difference, ratio_by_metric = (
        frame.difference(method="between_groups"),
        frame.ratio(method="between_groups"),
    )
    ratio = finite_or_none(ratio_by_metric["selection_rate"])
    return {
        "groups": _groups(frame.by_group),
        "demographic_parity_difference": finite_or_none(difference["selection_rate"]),
        "demographic_parity_ratio": ratio,
        "equalized_odds_difference": finite_or_none(
            max(difference["true_positive_rate"], difference["false_positive_rate"])
        ),
        "equal_opportunity_difference": finite_or_none(difference["true_positive_rate"]),
        "four_fifths_rule_holds": None if ratio is None else ratio >= FOUR_FIFTHS,
    }


def _regression(rows: Rows, groups: np.ndarray) -> dict[str, Any]:
    frame = MetricFrame(
        metrics={"rmse": root_mean_squared_error, "mae": mean_absolute_error, "rows": count},
        y_true=rows.truth,
        y_pred=rows.predicted,
        sensitive_features=groups,
    )
    return {
        "groups": _groups(frame.by_group),
        "rmse_difference": finite_or_none(frame.difference()["rmse"]),
        "rmse_ratio": finite_or_none(frame.ratio()["rmse"]),
    }


def _groups(by_group: pd.DataFrame) -> list[dict[str, Any]]:
    by_group = by_group.sort_values("rows", ascending=False, kind="mergesort")
    return [
        {
            "group": str(name),
            **{
                column: int(value) if column == "rows" else finite_or_none(value)
                for column, value in values.items()
            },
        }
        for name, values in by_group.iterrows()
    ]

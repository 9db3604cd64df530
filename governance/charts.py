"""Chart payloads for Steward's pages (issue 14, "Charts"): one shape for every chart drawn by
``static/steward/charts.js`` from data embedded with ``json_script`` (``templates/includes/chart.html``),
and the table the page shows beside it for screen readers and for readers without JavaScript.

A plain module (no Django): views build the points with their own queries and pass them here, so the
figures in the chart and in its table come from one list and cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

# No chart of Steward's embeds more than this many x positions: the callers bound their queries
# (last N checks, versions, months, most drifted columns) at or below it.
CHART_POINTS_MAX = 200

Kind = Literal["line", "bar"]


@dataclass(frozen=True)
class Series:
    """One drawn series: ``values[i]`` belongs to the chart's ``x[i]``; None (or NaN) is a gap.

    ``is_threshold`` draws it as a dashed line (a limit the values are judged against)."""

    label: str
    values: Sequence[float | None]
    is_threshold: bool = False


def finite(value: Any) -> float | None:
    """``value`` as a float, or None for None, NaN, infinities, booleans and non-numbers (no chart
    draws them, and JSON has no NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def format_number(value: float | None) -> str:
    """A number as the charts' captions write it (``charts.js`` ``formatNumber``): 4 significant
    digits, exponent form below 1e-3 and from 1e5; "—" for no value."""
    if value is None:
        return "—"
    size = abs(value)
    if size != 0 and (size >= 1e5 or size < 1e-3):
        return f"{value:.3e}"
    return f"{float(f'{value:.4g}'):g}"


def chart(
    kind: Kind,
    *,
    x_label: str,
    x: Sequence[float],
    x_labels: Sequence[str],
    series: Sequence[Series],
    y_label: str = "",
    x_time: bool = False,
    table_only: Sequence[Series] = (),
) -> dict[str, Any]:
    """A chart for ``templates/includes/chart.html``.

    ``x`` are the numeric positions (unix seconds when ``x_time``; for a bar chart, anything in
    order), ``x_labels`` the same positions in words (the table's first column, a bar chart's axis).
    ``table_only`` series are listed in the table after the drawn ones, not drawn (the raw figures
    behind a derived one).
    Returns ``{"data": {...}, "table": {"columns": [str], "rows": [[str]]}, "points": int,
    "is_empty": bool}``: ``data`` goes to the page with ``json_script``; ``points`` counts the
    drawn (non-null) values of the non-threshold series, which ``charts.js`` writes back as the
    figure's ``data-points``. Raises ValueError when the lengths disagree or there are more than
    ``CHART_POINTS_MAX`` positions (callers bound their queries).
    """
    if len(x) != len(x_labels) or any(len(s.values) != len(x) for s in [*series, *table_only]):
        raise ValueError("x, x_labels and every series' values must have one entry per position")
    if len(x) > CHART_POINTS_MAX:
        raise ValueError(f"{len(x)} positions; a chart draws at most {CHART_POINTS_MAX}")
    cleaned = [[finite(value) for value in s.values] for s in series]
    listed = cleaned + [[finite(value) for value in s.values] for s in table_only]
    drawn = [values for s, values in zip(series, cleaned, strict=True) if not s.is_threshold]
    points = sum(value is not None for values in drawn for value in values)
    return {
        "data": {
            "kind": kind,
            "x": {"label": x_label, "values": list(x), "labels": list(x_labels), "time": x_time},
            "y": {"label": y_label},
            "series": [
                {"label": s.label, "values": values, "threshold": s.is_threshold}
                for s, values in zip(series, cleaned, strict=True)
            ],
        },
        "table": {
            "columns": [x_label, *(s.label for s in [*series, *table_only])],
            "rows": [
                [label, *(format_number(values[i]) for values in listed)] for i, label in enumerate(x_labels)
            ],
        },
        "points": points,
        "is_empty": points == 0,
    }


def step_table(series: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The step curves of ``runners.queries.metric_series`` (``{key: [{"step", "value"}]}``) as one
    table: a row per step, a column per key in name order, "—" where a key has no point (or NaN)."""
    keys = sorted(series)
    by_key = {key: {point["step"]: finite(point["value"]) for point in series[key]} for key in keys}
    steps = sorted({step for points in by_key.values() for step in points})
    return {
        "columns": ["step", *keys],
        "rows": [[str(step), *(format_number(by_key[key].get(step)) for key in keys)] for step in steps],
    }

"""Issue 14: the chart payload (governance.charts) carries no NaN, counts what it draws, says when
it is empty, and refuses more points than a chart draws."""

from __future__ import annotations

import math

import pytest

from governance.charts import CHART_POINTS_MAX, Series, chart, format_number, step_table


def test_nan_infinities_and_none_are_gaps_in_the_data_and_dashes_in_the_table():
    drawn = chart(
        "line",
        x_label="version",
        x=[1, 2, 3],
        x_labels=["v1", "v2", "v3"],
        series=[
            Series("rmse", [0.5, math.nan, None]),
            Series("limit", [1.0, math.inf, 1.0], is_threshold=True),
        ],
    )
    assert drawn["data"]["series"] == [
        {"label": "rmse", "values": [0.5, None, None], "threshold": False},
        {"label": "limit", "values": [1.0, None, 1.0], "threshold": True},
    ]
    assert drawn["table"] == {
        "columns": ["version", "rmse", "limit"],
        "rows": [["v1", "0.5", "1"], ["v2", "—", "—"], ["v3", "—", "1"]],
    }
    # Thresholds are not data points.
    assert drawn["points"] == 1
    assert drawn["is_empty"] is False


def test_a_chart_of_nothing_or_of_gaps_only_is_empty():
    assert chart("bar", x_label="column", x=[], x_labels=[], series=[Series("score", [])])["is_empty"]
    only_gaps = chart("line", x_label="step", x=[1], x_labels=["1"], series=[Series("loss", [math.nan])])
    assert only_gaps["is_empty"]
    assert only_gaps["points"] == 0


def test_lengths_must_agree_and_points_are_bounded():
    with pytest.raises(ValueError, match="one entry per position"):
        chart("line", x_label="x", x=[1, 2], x_labels=["1", "2"], series=[Series("y", [1.0])])
    n = CHART_POINTS_MAX + 1
    with pytest.raises(ValueError, match=f"at most {CHART_POINTS_MAX}"):
        chart("line", x_label="x", x=list(range(n)), x_labels=[str(i) for i in range(n)], series=[])


def test_numbers_read_as_the_captions_write_them():
    assert [format_number(v) for v in (None, 0.0, 1234.5678, 0.12345, 123456.0, 0.0001234)] == [
        "—",
        "0",
        "1235",
        "0.1235",
        "1.235e+05",
        "1.234e-04",
    ]


def test_step_curves_table_as_one_row_per_step():
    table = step_table(
        {
            "val_loss": [{"step": 2, "value": 0.4}],
            "train_loss": [{"step": 1, "value": 0.9}, {"step": 2, "value": None}],
        }
    )
    assert table == {
        "columns": ["step", "train_loss", "val_loss"],
        "rows": [["1", "0.9", "—"], ["2", "—", "0.4"]],
    }

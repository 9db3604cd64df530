"""Shared by the drift engine tests: sketches of raw values and evidently's own verdicts to compare with."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

from monitoring.engine import Status, build_profile, run_check
from monitoring.engine.sketch import NumericSketch


def sketch(values: np.ndarray) -> NumericSketch:
    return NumericSketch.from_values(np.asarray(values, dtype=float))


def on_grid_of(reference: NumericSketch, values: np.ndarray, chunks: int = 5) -> NumericSketch:
    """A current window counted on the reference's grid, chunk by chunk, as ``run_check`` does."""
    current = NumericSketch.on_edges(reference.edges)
    for part in np.array_split(values, chunks):
        current.add_values(part)
    return current


def evidently_verdicts(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, tuple[str, float, bool]]:
    """Per column: (method, score, drifted) from evidently's DataDriftPreset (its own defaults)."""
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        reference_data=reference, current_data=current
    )
    payload = snapshot.dict()
    metrics = {metric["id"]: metric for metric in payload["metrics"]}
    out = {}
    for test in payload["tests"]:
        metric = metrics.get(test.get("metric_config", {}).get("metric_id"))
        config = (metric or {}).get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            out[config["column"]] = (config["method"], float(metric["value"]), test["status"] == "FAIL")
    return out


def assert_same_verdicts(reference: pd.DataFrame, current: pd.DataFrame, config: dict | None = None) -> dict:
    ours = run_check(build_profile(reference), current, config)
    json.dumps(ours.to_dict())
    theirs = evidently_verdicts(reference, current)
    compared = {}
    for name, (_, _, drifted) in theirs.items():
        result = ours.column(name)
        if result.status == Status.SKIPPED:
            continue
        compared[name] = (result.is_drifted, drifted)
    disagree = {name: pair for name, pair in compared.items() if pair[0] != pair[1]}
    assert disagree == {}
    return {"ours": ours, "theirs": theirs, "compared": compared}

"""Calibration of issue 11's column rules, and what leaving the report off the check's path saves.

Usage: ``.venv/bin/python benchmarks/bench_drift_rules.py [--trials 200]``. No database.

1. False alarms over many no-drift trials: reference and current are disjoint random draws of the
   same real rows (bike 2011 hourly; adult census), so every drift verdict is a false alarm. Per rule:
   - integer codes as categories (bike season, mnth, weekday, weathersit; chi-square, alpha 0.05);
   - high-cardinality top-k + other (adult occupation|country|age|hours, 11,208 values; chi-square
     and Jensen-Shannon on top 50 + other);
   - Benjamini-Hochberg: the share of trials where any of the 12 bike columns (K-S / chi-square at
     0.05) drifts, without and with BH (BH keeps the family-wise rate under the global null <= q).
   Goal: p-value tests within alpha +- 2 points; distance tests far below.
2. The check's critical path on the bike data (2012 against 2011, 12 columns): the engine's verdict
   alone against verdict + evidently report (what a check did before issue 11), same process.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring import drift
from monitoring.engine import build_profile, run_check

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BIKE_COLUMNS = [
    "season",
    "mnth",
    "hr",
    "holiday",
    "weekday",
    "workingday",
    "weathersit",
    "temp",
    "atemp",
    "hum",
    "windspeed",
    "cnt",
]
CODES = ["season", "mnth", "weekday", "weathersit"]
CATEGORICAL = {"season", "mnth", "holiday", "weekday", "workingday", "weathersit"}


def _halves(
    frame: pd.DataFrame, rng: np.random.Generator, current_rows: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = rng.permutation(len(frame))
    reference = frame.iloc[order[: len(frame) - current_rows]]
    return reference, frame.iloc[order[len(frame) - current_rows :]]


def calibrate(trials: int) -> None:
    rng = np.random.default_rng(11)
    bike = pd.read_csv(DATA / "bike-sharing" / "hour.csv")
    bike = bike[bike["yr"] == 0].reset_index(drop=True)
    adult = pd.read_csv(DATA / "adult" / "adult.csv")
    adult["profile"] = (
        adult[["occupation", "native-country", "age", "hours-per-week"]].astype(str).agg("|".join, axis=1)
    )
    methods = {c: "chisquare" if c in CATEGORICAL else "ks" for c in BIKE_COLUMNS}
    codes = dict.fromkeys(CODES, 0)
    top_chi = top_js = 0
    any_plain = any_bh = 0
    for _ in range(trials):
        reference, current = _halves(bike, rng, 3000)
        profile = build_profile(reference)
        plain = run_check(profile, current, {"columns": BIKE_COLUMNS, "methods": methods})
        bh = run_check(
            profile, current, {"columns": BIKE_COLUMNS, "methods": methods, "multiple_testing": "bh"}
        )
        for column in CODES:
            codes[column] += plain.column(column).is_drifted
        any_plain += plain.number_of_drifted_columns > 0
        any_bh += bh.number_of_drifted_columns > 0
        # The adult key needs > 10,000 values in the reference: all rows but a 5,000-row window.
        reference, current = _halves(adult[["profile"]], rng, 5000)
        profile = build_profile(reference)
        top_chi += (
            run_check(profile, current, {"methods": {"profile": "chisquare"}}).column("profile").is_drifted
        )
        top_js += run_check(profile, current).column("profile").is_drifted
    print(f"no-drift trials: {trials} (alpha = 0.05; goal 3-7 % for p-value tests)")
    for column, count in codes.items():
        print(f"  integer codes as categories, {column:<10} chi-square: {count / trials:6.1%}")
    print(f"  high cardinality top 50 + other, chi-square:        {top_chi / trials:6.1%}")
    print(f"  high cardinality top 50 + other, Jensen-Shannon:    {top_js / trials:6.1%}")
    print(f"  any of 12 columns drifts, no control:               {any_plain / trials:6.1%}")
    print(f"  any of 12 columns drifts, Benjamini-Hochberg:       {any_bh / trials:6.1%}")


def critical_path(repeats: int) -> None:
    bike = pd.read_csv(DATA / "bike-sharing" / "hour.csv")
    reference, current = bike[bike["yr"] == 0], bike[bike["yr"] == 1]
    verdict, report = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        run_check(build_profile(reference), current, {"columns": BIKE_COLUMNS})
        verdict.append(time.perf_counter() - start)
        start = time.perf_counter()
        drift.compare(reference, current, BIKE_COLUMNS, max_rows=50_000)
        report.append(time.perf_counter() - start)
    v, r = float(np.median(verdict)), float(np.median(report))
    print(f"bike 2012 vs 2011, 12 columns, median of {repeats}:")
    print(f"  verdict (engine, profile built each time): {v * 1000:8.1f} ms")
    print(f"  before issue 11 (verdict + report inline): {(v + r) * 1000:8.1f} ms")
    print(f"  ratio before / after:                      {(v + r) / v:8.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    calibrate(args.trials)
    critical_path(args.repeats)


if __name__ == "__main__":
    main()

"""Benchmark: the multivariate drift tests (``monitoring.engine.multivariate``) at 100k rows x 25 columns.

Reference and current: ``--rows`` rows (default 100,000) of 20 numeric and 5 categorical columns,
generated deterministically; in the current window two numerics keep their marginals and flip their
correlation (+0.8 -> -0.8). Each test runs on its own, at the default sample (5,000 rows a side) and
at ``--max-rows`` (default 20,000). Prints wall time, the peak of memory allocated while the test ran
(``tracemalloc``, which sees numpy's buffers, on a second run) and the verdict.

    .venv/bin/python benchmarks/bench_multivariate.py
    .venv/bin/python benchmarks/bench_multivariate.py --calibration 100

``--calibration N`` instead counts false alarms over N seeded no-drift trials: two disjoint random
samples of 2,000 rows of the hourly bike data (``instant`` dropped), as the calibration test in
``tests/monitoring/test_multivariate.py`` does for 20. Since a drifted test raises the alert (issue
11), its level is the alert's false-alarm rate: goal alpha (5 %) +- 2 points for the classifier.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
BIKE = ROOT.parent / "shared" / "data" / "bike-sharing" / "hour.csv"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitoring.engine.multivariate import DEFAULT_MAX_ROWS, run_multivariate  # noqa: E402

N_NUMERIC = 20
CATEGORY_SIZES = (3, 5, 8, 12, 20)


def frame(rows: int, rho: float, seed: int) -> pd.DataFrame:
    """``rows`` x 25 columns; ``x0`` and ``x1`` standard normal with correlation ``rho``."""
    rng = np.random.default_rng(seed)
    data = {f"x{i}": rng.normal(size=rows) for i in range(N_NUMERIC)}
    data["x1"] = rho * data["x0"] + np.sqrt(1 - rho**2) * data["x1"]
    for i, size in enumerate(CATEGORY_SIZES):
        data[f"c{i}"] = rng.choice([f"v{j}" for j in range(size)], size=rows)
    return pd.DataFrame(data)


def calibrate(trials: int) -> None:
    """False alarms of both tests over ``trials`` seeded no-drift pairs of bike rows."""
    bike = pd.read_csv(BIKE).drop(columns=["instant"])
    alarms = {"domain_classifier": 0, "pca": 0}
    started = time.perf_counter()
    for trial in range(trials):
        order = np.random.default_rng(trial).permutation(len(bike))
        reference, current = bike.iloc[order[:2000]], bike.iloc[order[2000:4000]]
        for result in run_multivariate(reference, current, seed=trial, time_limit_s=3600):
            alarms[result.test] += result.is_drifted
    for test, count in alarms.items():
        print(f"{test:18} false alarms: {count} of {trials} ({100 * count / trials:.1f} %)")
    print(f"{time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--max-rows", type=int, default=20_000)
    parser.add_argument("--calibration", type=int, default=0, help="no-drift trials on the bike data")
    args = parser.parse_args()
    if args.calibration:
        calibrate(args.calibration)
        return
    reference, current = frame(args.rows, 0.8, seed=1), frame(args.rows, -0.8, seed=2)
    print(f"{args.rows} rows x {reference.shape[1]} columns a side; x0/x1 correlation +0.8 -> -0.8")
    for max_rows in (DEFAULT_MAX_ROWS, args.max_rows):
        for test in ("domain_classifier", "pca"):
            started = time.perf_counter()
            (result,) = run_multivariate(reference, current, [test], max_rows=max_rows, time_limit_s=3600)
            seconds = time.perf_counter() - started
            # Memory on a second run: tracing slows the first's clock.
            tracemalloc.start()
            run_multivariate(reference, current, [test], max_rows=max_rows, time_limit_s=3600)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            top = ", ".join(item["feature"] for item in result.top_features[:2])
            print(
                f"{test:18} sample {max_rows:>6} rows/side: {seconds:7.2f} s, peak {peak / 2**20:7.1f} MiB, "
                f"{result.status} (statistic {result.statistic:.4f}, threshold {result.threshold:.4f}; "
                f"top: {top})"
            )
    print(f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

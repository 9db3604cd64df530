"""Time and peak memory of a drift check by time window and segment (issue 11), engine alone.

Usage: ``.venv/bin/python benchmarks/bench_windows.py [--rows 1000000] [--case NAME]``. No database.

Figures (2 shared cores, 1,000,000 rows, December 2026; seconds / peak RSS):

    plain 1.5 s / 388 MiB            monthly 3.1 s / 393 MiB
    segments 6.3 s / 473 MiB         monthly+segments 8.4 s / 504 MiB
    daily (365) 42 s / 1,260 MiB     rolling 7 days (359) 54 s / 1,229 MiB

(5 s of the segments' time is their reference pass over 500,000 rows). A window costs about
100 ms to judge (25 columns) and about 2.4 MiB while the data is read (binned numeric columns on
the reference's grid); the default ``max_windows`` (100) keeps this check near 650 MiB.

The current data is ``--rows`` rows x (20 numeric + 5 categorical columns of 10 values) with a
timestamp spread over 2025, made lazily in chunks of 200,000 rows (as the product path streams a
file); the reference is 500,000 rows of the same distributions (its profile built once, outside
the timings). Each case runs in a fresh process so its peak RSS (``ru_maxrss``) is its own:

- ``plain``: ``run_check`` alone (the check's own verdict);
- ``monthly``: ``run_groups`` with 12 monthly windows; ``segments``: segments of one categorical
  column (its 10 values; each segment's reference profile is built in the same run, one more pass
  over the 500,000 reference rows); ``monthly+segments``: both in one pass;
- ``daily``: 365 daily windows; ``rolling``: windows of 7 days moving by one day (359 windows).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitoring.engine import build_profile, run_check  # noqa: E402 - after the project root is importable
from monitoring.engine.windows import run_groups  # noqa: E402

CHUNK = 200_000
NUMERIC = [f"x{i}" for i in range(20)]
CATEGORICAL = [f"c{i}" for i in range(5)]
CASES = {
    "plain": None,
    "monthly": {"time_window": {"column": "ts", "every": "month"}},
    "segments": {"segment_by": "c0"},
    "monthly+segments": {"time_window": {"column": "ts", "every": "month"}, "segment_by": "c0"},
    "daily": {"time_window": {"column": "ts", "every": "day", "max_windows": 400}},
    "rolling": {"time_window": {"column": "ts", "every": "day", "rolling": 7, "max_windows": 400}},
}


def chunks(rows: int, seed: int, year: int, shift: float = 0.0) -> Iterator[pd.DataFrame]:
    """``rows`` rows in chunks of ``CHUNK``, numeric columns normal (+``shift`` in the second half
    of the year), categories uniform over 10 values, timestamps uniform over ``year`` (UTC)."""
    start = pd.Timestamp(f"{year}-01-01", tz="UTC").value // 10**9
    for index, first in enumerate(range(0, rows, CHUNK)):
        n = min(CHUNK, rows - first)
        rng = np.random.default_rng([seed, index])
        seconds = rng.integers(start, start + 365 * 86_400, size=n)
        late = seconds >= start + 182 * 86_400
        frame = {name: rng.normal(size=n) + shift * late for name in NUMERIC}
        frame.update({name: rng.choice(list("abcdefghij"), size=n) for name in CATEGORICAL})
        frame["ts"] = pd.to_datetime(seconds, unit="s", utc=True)
        yield pd.DataFrame(frame)


def one_case(name: str, rows: int) -> dict:
    columns = [*NUMERIC, *CATEGORICAL]
    profile = build_profile(frame[columns] for frame in chunks(500_000, 1, 2024))
    config = {"columns": columns}
    start = time.perf_counter()
    current = chunks(rows, 2, 2025, shift=0.2)
    groups = CASES[name]
    if groups is None:
        result = run_check(profile, current, config)
        summary = {"drifted_columns": result.number_of_drifted_columns}
    else:
        reference = (frame[columns] for frame in chunks(500_000, 1, 2024))
        grouped = run_groups(profile, current, config, groups, reference_chunks=reference)
        windows = grouped.windows.windows if grouped.windows else []
        summary = {
            "windows": len(windows),
            "drifted_windows": sum(w.status == "drift" for w in windows),
            "segments": len(grouped.segments.segments) if grouped.segments else 0,
        }
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "case": name,
        "rows": rows,
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak_mib),
        **summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--case", choices=list(CASES))
    args = parser.parse_args()
    if args.case:
        print(json.dumps(one_case(args.case, args.rows)))
        return
    for name in CASES:
        out = subprocess.run(  # noqa: S603 - this script, by its own path
            [sys.executable, __file__, "--rows", str(args.rows), "--case", name],
            check=True,
            capture_output=True,
            text=True,
        )
        print(out.stdout.strip())


if __name__ == "__main__":
    main()

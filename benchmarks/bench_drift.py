"""Benchmark: Steward's drift engine against evidently's DataDriftPreset on the same data.

Reference and current: ``--rows`` rows (default 1,000,000) x 20 numeric + 5 categorical columns,
generated deterministically in chunks; the current window is shifted on a few columns. Each side runs
in its own subprocess so its peak RSS (``ru_maxrss`` from ``os.wait4``) is its own:

- ours: build the reference profile from a stream of chunks, then run the check on a stream of
  chunks (nothing holds the whole data); time spent generating chunks is measured and subtracted;
- evidently: both frames are generated first (not timed), then ``Report([DataDriftPreset()]).run``
  and reading the per-column verdicts are timed.

Prints wall time and peak RSS per side, the ratios (goal: >= 100x faster, <= 1/4 of the peak RSS),
whether the per-column verdicts agree, and our profile-build and check times at 10k, 100k and 1M rows.

    .venv/bin/python benchmarks/bench_drift.py            # the full run (evidently takes minutes)
    .venv/bin/python benchmarks/bench_drift.py --rows 100000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

N_NUMERIC = 20
CATEGORY_SIZES = (3, 5, 8, 12, 20)
GEN_CHUNK_ROWS = 100_000
SCALING_ROWS = (10_000, 100_000, 1_000_000)
# Shifts of the current window. Normed Wasserstein (evidently's default above 1,000 rows) is about
# |mean shift| / std for a location shift: 0.5 and 0.3 drift, 0.03 does not; scale 1.5 drifts.
MEAN_SHIFT = {0: 0.5, 1: 0.3, 2: 0.03}
SCALE_SHIFT = {3: 1.5}
SHIFTED_CATEGORIES = {0: [0.2, 0.3, 0.5], 1: None}  # cat_0: new shares; cat_1: a slight change


def _category_probs(k: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1)
    return weights / weights.sum()


def make_chunk(side: str, index: int, rows: int) -> pd.DataFrame:
    """Chunk ``index`` (``rows`` rows) of the reference or current data; deterministic per argument."""
    rng = np.random.default_rng([0 if side == "reference" else 1, index])
    data: dict[str, np.ndarray] = {}
    for i in range(N_NUMERIC):
        shape = i % 4
        if shape == 0:
            values = rng.normal(10.0 * i, 1.0 + i, rows)
        elif shape == 1:
            values = rng.lognormal(1.0, 0.5, rows)
        elif shape == 2:
            values = rng.gamma(2.0, 3.0, rows)
        else:
            values = rng.uniform(-5.0, 5.0, rows)
        if side == "current":
            std = float(np.std(values))
            values = values + MEAN_SHIFT.get(i, 0.0) * std
            if i in SCALE_SHIFT:
                values = values.mean() + (values - values.mean()) * SCALE_SHIFT[i]
        if i == 5:
            values[rng.random(rows) < 0.01] = np.nan
        data[f"num_{i:02d}"] = values
    for j, k in enumerate(CATEGORY_SIZES):
        probs = _category_probs(k)
        if side == "current" and j in SHIFTED_CATEGORIES:
            shifted = SHIFTED_CATEGORIES[j]
            probs = np.array(shifted) if shifted is not None else np.roll(probs, 1) * 0.02 + probs * 0.98
            probs = probs / probs.sum()
        labels = np.array([f"c{j}_{v:02d}" for v in range(k)], dtype=object)
        data[f"cat_{j}"] = labels[rng.choice(k, size=rows, p=probs)]
    return pd.DataFrame(data)


class TimedChunks:
    """Iterate the chunks of one side, keeping the time spent generating them apart."""

    def __init__(self, side: str, rows: int) -> None:
        self.side, self.rows, self.generate_s = side, rows, 0.0

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for index, start in enumerate(range(0, self.rows, GEN_CHUNK_ROWS)):
            started = time.perf_counter()
            chunk = make_chunk(self.side, index, min(GEN_CHUNK_ROWS, self.rows - start))
            self.generate_s += time.perf_counter() - started
            yield chunk


def full_frame(side: str, rows: int) -> pd.DataFrame:
    return pd.concat(list(TimedChunks(side, rows)), ignore_index=True)


# -- children -------------------------------------------------------------------------------------
def child_ours(rows: int) -> dict:
    from monitoring.engine import build_profile, run_check

    reference, current = TimedChunks("reference", rows), TimedChunks("current", rows)
    started = time.perf_counter()
    profile = build_profile(reference)
    built = time.perf_counter()
    result = run_check(profile, current)
    done = time.perf_counter()
    profile_json = json.dumps(profile.to_dict())
    build_s = built - started - reference.generate_s
    check_s = done - built - current.generate_s
    return {
        "build_s": build_s,
        "check_s": check_s,
        "engine_s": build_s + check_s,
        "generate_s": reference.generate_s + current.generate_s,
        "profile_bytes": len(profile_json),
        "columns": {
            r.column: {"method": r.method, "score": r.score, "drift": r.is_drifted, "status": r.status.value}
            for r in result.columns
        },
    }


def child_evidently(rows: int) -> dict:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference, current = full_frame("reference", rows), full_frame("current", rows)
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        reference_data=reference, current_data=current
    )
    payload = snapshot.dict()
    metrics = {metric["id"]: metric for metric in payload["metrics"]}
    columns = {}
    for test in payload["tests"]:
        metric = metrics.get(test.get("metric_config", {}).get("metric_id"))
        config = (metric or {}).get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            columns[config["column"]] = {
                "method": config["method"],
                "score": float(metric["value"]),
                "drift": test["status"] == "FAIL",
            }
    return {"engine_s": time.perf_counter() - started, "columns": columns}


def run_child(side: str, rows: int) -> dict:
    """Run one side in a fresh interpreter; returns its JSON plus its wall time and peak RSS (bytes)."""
    with tempfile.TemporaryFile(mode="w+") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(  # noqa: S603 - our own script with fixed arguments
            [sys.executable, str(Path(__file__).resolve()), "--child", side, "--rows", str(rows)],
            stdout=out,
            cwd=ROOT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if proc.returncode:
            raise RuntimeError(f"{side} child failed with exit code {proc.returncode}")
        out.seek(0)
        data = json.loads(out.read())
    data["process_s"] = wall
    data["peak_rss"] = usage.ru_maxrss * 1024  # Linux reports KiB
    return data


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per side (default 1,000,000)")
    parser.add_argument("--skip-evidently", action="store_true", help="only time our engine")
    parser.add_argument("--child", choices=("ours", "evidently"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        runner = child_ours if args.child == "ours" else child_evidently
        print(json.dumps(runner(args.rows)))
        return

    rows = args.rows
    print(f"rows per side: {rows:,}; columns: {N_NUMERIC} numeric + {len(CATEGORY_SIZES)} categorical")
    print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    ours = run_child("ours", rows)
    print(
        f"ours:      engine {ours['engine_s']:7.2f} s (profile build {ours['build_s']:.2f} s + check "
        f"{ours['check_s']:.2f} s; data generation {ours['generate_s']:.2f} s not counted), "
        f"peak RSS {_mb(ours['peak_rss'])}, stored profile {ours['profile_bytes'] / 1024:,.0f} KB"
    )
    if not args.skip_evidently:
        theirs = run_child("evidently", rows)
        print(f"evidently: engine {theirs['engine_s']:7.2f} s, peak RSS {_mb(theirs['peak_rss'])}")
        speed = theirs["engine_s"] / ours["engine_s"]
        speed_check = theirs["engine_s"] / ours["check_s"]
        rss = ours["peak_rss"] / theirs["peak_rss"]
        print(
            f"ratios: {speed:,.0f}x faster (build + check; goal >= 100x), {speed_check:,.0f}x faster "
            f"(check alone, profile stored), peak RSS {rss:.3f} of evidently's (goal <= 0.25)"
        )
        agree = 0
        print(f"{'column':8s} {'ours':>34s} {'evidently':>40s}")
        for name, theirs_col in theirs["columns"].items():
            mine = ours["columns"].get(name, {})
            same = mine.get("drift") == theirs_col["drift"]
            agree += same
            print(
                f"{name:8s} {mine.get('method')!s:>13s} {mine.get('score', float('nan')):9.4f} "
                f"{'drift' if mine.get('drift') else 'ok':>5s}   "
                f"{theirs_col['method'][:24]:>24s} {theirs_col['score']:9.4f} "
                f"{'drift' if theirs_col['drift'] else 'ok':>5s}{'' if same else '  DISAGREE'}"
            )
        print(f"verdicts agree on {agree} of {len(theirs['columns'])} columns")
    print("our engine by size (fresh process each):")
    for size in [s for s in SCALING_ROWS if s <= rows]:
        run = ours if size == rows else run_child("ours", size)
        print(
            f"  {size:>9,} rows: profile build {run['build_s']:.3f} s, check {run['check_s']:.3f} s, "
            f"peak RSS {_mb(run['peak_rss'])}"
        )


if __name__ == "__main__":
    main()

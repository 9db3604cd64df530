"""Calibration: false alarms of the performance-drift bootstrap test, and the CBPE estimate's error.

No-drift trials on real data (``../shared/data``): a model is fitted once (scikit-learn, so the
script needs no database or torch) on a fixed training split; each trial shuffles the held-out rows
and splits them into a reference half (the "validation" rows) and a current window of ``--window``
rows, all from the same distribution. A false alarm is a metric flagged as degraded:

- ``two-sample``: ``bootstrap_compare`` with the reference rows resampled too;
- ``one-sample``: the reference metric taken as an exact baseline;
- ``one-sample sized``: the reference metric as baseline with its row count (what a check does
  with the validation metric and ``validation_rows`` training recorded);
- ``cbpe``: on the adult data, ``estimate_classification`` of the window's accuracy from the
  model's confidence, against the accuracy realized on its labels.

At ``--alpha`` 0.05 the goal is a false-alarm rate within alpha +- 2 points (issue 11).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_performance_calibration.py --trials 200
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitoring.engine import performance as perf  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def adult() -> tuple[pd.Series, pd.Series, pd.Series]:
    """Held-out (labels, predictions, top-class confidence) of a logistic regression on adult."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.read_csv(DATA / "adult" / "adult.csv", skipinitialspace=True)
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    numeric = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    categorical = ["workclass", "marital-status", "occupation", "relationship", "sex"]
    train, held = frame.iloc[:10_000], frame.iloc[10_000:].reset_index(drop=True)
    scale, onehot = (
        StandardScaler().fit(train[numeric]),
        OneHotEncoder(handle_unknown="ignore").fit(train[categorical]),
    )

    def x(rows: pd.DataFrame) -> np.ndarray:
        return np.hstack([scale.transform(rows[numeric]), onehot.transform(rows[categorical]).toarray()])

    model = LogisticRegression(max_iter=1000).fit(x(train), train["label"])
    proba = model.predict_proba(x(held))
    predicted = pd.Series(model.classes_[proba.argmax(1)])
    return held["label"], predicted, pd.Series(proba.max(1))


def bike() -> tuple[pd.Series, pd.Series]:
    """Held-out (labels, predictions) of a gradient-boosted regression of the bike demand."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    frame = pd.read_csv(DATA / "bike-sharing" / "hour.csv").sample(frac=1.0, random_state=0)
    features = ["season", "mnth", "hr", "holiday", "weekday", "workingday", "weathersit", "temp", "hum"]
    train, held = frame.iloc[:6000], frame.iloc[6000:].reset_index(drop=True)
    model = HistGradientBoostingRegressor(max_iter=100, random_state=0).fit(train[features], train["cnt"])
    return held["cnt"], pd.Series(model.predict(held[features]))


def trials(task: str, truth: pd.Series, predicted: pd.Series, args: argparse.Namespace) -> dict:
    """False-alarm rate per metric and mode over ``args.trials`` no-drift splits."""
    rng = np.random.default_rng(args.seed)
    alarms: dict[str, list[int]] = {}
    for trial in range(args.trials):
        order = rng.permutation(len(truth))
        half = len(order) // 2
        ref, cur = order[: args.reference or half], order[half:][: args.window]
        reference = (truth.iloc[ref].reset_index(drop=True), predicted.iloc[ref].reset_index(drop=True))
        current = (truth.iloc[cur].reset_index(drop=True), predicted.iloc[cur].reset_index(drop=True))
        baselines = {k: (v, "reference") for k, v in perf.compute_metrics(task, *reference).items()}
        sized = {metric: len(ref) for metric in baselines}
        modes = (
            ("two-sample", {"reference": reference}),
            ("one-sample", {}),
            ("one-sample sized", {"baseline_rows": sized}),
        )
        for mode, kwargs in modes:
            found = perf.bootstrap_compare(
                task, current, baselines, alpha=args.alpha, resamples=args.resamples, seed=trial, **kwargs
            )
            for metric, values in found.items():
                alarms.setdefault(f"{mode} {metric}", []).append(int(values["is_degraded"]))
    return {name: float(np.mean(flags)) for name, flags in alarms.items()}


def cbpe(truth: pd.Series, predicted: pd.Series, confidence: pd.Series, args: argparse.Namespace) -> dict:
    """Error of the estimated accuracy against the realized one over the trials' windows."""
    rng = np.random.default_rng(args.seed)
    errors, inside = [], []
    for _ in range(args.trials):
        cur = rng.permutation(len(truth))[: args.window]
        estimate = perf.estimate_classification(predicted.iloc[cur], confidence.iloc[cur])
        realized = float((truth.iloc[cur].to_numpy() == predicted.iloc[cur].to_numpy()).mean())
        errors.append(estimate["accuracy"] - realized)
        inside.append(abs(estimate["accuracy"] - realized) <= 2 * estimate["accuracy_sd"])
    return {
        "mean error": float(np.mean(errors)),
        "mean |error|": float(np.mean(np.abs(errors))),
        "within 2 sd": float(np.mean(inside)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--window", type=int, default=2000, help="current rows per trial")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--resamples", type=int, default=perf.DEFAULT_RESAMPLES)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--reference", type=int, default=0, help="reference rows per trial (default: half the held-out rows)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    truth, predicted, confidence = adult()
    print(f"adult (classification), {args.trials} no-drift trials, window {args.window}, alpha {args.alpha}:")
    for name, rate in sorted(trials("classification", truth, predicted, args).items()):
        print(f"  {name:<24} false alarms {rate:6.1%}")
    for name, value in cbpe(truth, predicted, confidence, args).items():
        print(f"  cbpe accuracy {name:<12} {value:.4f}")
    truth, predicted = bike()
    print(f"bike (regression), {args.trials} no-drift trials, window {args.window}, alpha {args.alpha}:")
    for name, rate in sorted(trials("regression", truth, predicted, args).items()):
        print(f"  {name:<24} false alarms {rate:6.1%}")
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

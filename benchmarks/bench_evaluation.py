"""Benchmark: the evaluation engine (issue 15) on the adult census data, rows evaluated per second.

Trains a one-hot logistic regression and gradient-boosted trees on the first half of the 32,561
rows (not timed), then times ``evaluate`` on the other half with sex and race as sensitive
attributes and three slice columns, in two configurations per model:

- ``metrics``: metrics with 200 bootstrap resamples, curves, slices, fairness (no extra predicts);
- ``full``: the same plus robustness (3 perturbations) and permutation importance (5 repeats over
  5,000 rows: 70 more predicts), where the model's own predict time dominates.

Prints wall seconds (best of ``--rounds``) and rows/s; the model's predict time on the same rows is
printed beside them, so the engine's own cost reads as the difference.

    .venv/bin/python benchmarks/bench_evaluation.py [--rounds 3] [--resamples 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sklearn.compose import make_column_transformer  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler  # noqa: E402

from runners.evaluation import EvaluationSpec, evaluate, sklearn_predictor  # noqa: E402

ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.csv"
if not ADULT.exists():
    ADULT = ROOT / "demo_data" / "adult" / "adult.csv"
NUMERIC = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
POSITIVE = " >50K"


def _models(train: pd.DataFrame) -> dict[str, object]:
    categorical = [column for column in train.columns if column not in [*NUMERIC, "label"]]
    features, label = train.drop(columns="label"), train["label"]
    logistic = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), categorical), (StandardScaler(), NUMERIC)
        ),
        LogisticRegression(max_iter=500),
    )
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    boosted = make_pipeline(
        make_column_transformer((encoder, categorical), remainder="passthrough"),
        HistGradientBoostingClassifier(max_iter=100, random_state=0),
    )
    return {"logistic": logistic.fit(features, label), "boosted": boosted.fit(features, label)}


def _best(rounds: int, run) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=200)
    args = parser.parse_args()
    frame = pd.read_csv(ADULT, na_values=" ?")
    half = len(frame) // 2
    train, test = frame.iloc[:half], frame.iloc[half:].reset_index(drop=True)
    common = {
        "task": "classification",
        "target": "label",
        "positive_label": POSITIVE,
        "sensitive_attributes": ("sex", "race"),
        "slice_columns": ("age", "education", "workclass"),
        "bootstrap_resamples": args.resamples,
    }
    configurations = {
        "metrics": EvaluationSpec(**common, robustness=False, importance_repeats=0),
        "full": EvaluationSpec(**common),
    }
    print(f"adult: {len(test)} rows evaluated, {args.resamples} bootstrap resamples, best of {args.rounds}")
    for name, model in _models(train).items():
        predict = sklearn_predictor(model, POSITIVE)
        features = test.drop(columns="label")
        predict_seconds = _best(args.rounds, lambda predict=predict, features=features: predict(features))
        print(
            f"{name:9s} predict alone    {predict_seconds:7.3f} s {len(test) / predict_seconds:12,.0f} rows/s"
        )
        for label, spec in configurations.items():
            seconds = _best(args.rounds, lambda predict=predict, spec=spec: evaluate(test, predict, spec))
            print(f"{name:9s} evaluate {label:7s} {seconds:7.3f} s  {len(test) / seconds:12,.0f} rows/s")


if __name__ == "__main__":
    main()

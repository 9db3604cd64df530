"""Text and embedding drift (issue 11): time, memory and false alarms of the MMD test.

    .venv/bin/python benchmarks/bench_embedding_drift.py [--trials 100] [--rows 300]

(a) Time and peak memory (this process's RSS growth) of ``monitoring.engine.embedding.
    compare_column`` on 20,000 x 384-dimension embeddings a side (Gaussian, the current side's
    first 20 dimensions shifted by 0.1), sampled to the default 1,000 rows a side, and on 20,000
    SpamAssassin e-mails against themselves resampled (text: hashed TF-IDF + SVD first).
(b) Calibration: ``--trials`` no-drift comparisons each, with alpha 0.05: two disjoint random
    samples of ``--rows`` ham e-mails (text), and two samples of the same 384-dimension Gaussian
    (embedding). The false-alarm rate should be within alpha +- 2 points (issue 11).

The engine only (no API, no worker): the product path adds what any drift check adds, which
``bench_drift_api.py`` measures.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitoring.engine.embedding import compare_column  # noqa: E402

SPAM = ROOT / "demo_data" / "spam-assassin" / "spam-assassin.csv"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, kind: str, reference: pd.Series, current: pd.Series) -> None:
    before = _peak_mib()
    started = time.perf_counter()
    outcome = compare_column(kind, reference, current)
    seconds = time.perf_counter() - started
    print(
        f"{label}: {seconds:.2f} s, peak RSS +{_peak_mib() - before:.0f} MiB, {outcome.status} "
        f"(p = {outcome.p_value}, AUC {outcome.classifier_auc:.3f}, {outcome.reference_rows} rows a side)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--rows", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shift = np.r_[np.full(20, 0.1), np.zeros(364)]
    reference = pd.Series(list(rng.normal(size=(20_000, 384))))
    current = pd.Series(list(rng.normal(size=(20_000, 384)) + shift))
    timed("embedding 20,000 x 384 a side, shifted", "embedding", reference, current)
    mails = pd.read_csv(SPAM)["text"]
    texts = mails.sample(n=20_000, replace=True, random_state=1).reset_index(drop=True)
    timed("text 20,000 e-mails a side, no drift", "text", texts, texts.sample(frac=1, random_state=2))

    ham = pd.read_csv(SPAM).query("label == 'ham'")["text"].reset_index(drop=True)
    alarms = {"text": 0, "embedding": 0}
    started = time.perf_counter()
    for trial in range(args.trials):
        order = np.random.default_rng(100 + trial).permutation(len(ham))
        first, second = ham.iloc[order[: args.rows]], ham.iloc[order[args.rows : 2 * args.rows]]
        alarms["text"] += compare_column("text", first, second, seed=trial).status == "drift"
        noise = np.random.default_rng(1000 + trial)
        a = pd.Series(list(noise.normal(size=(args.rows, 384))))
        b = pd.Series(list(noise.normal(size=(args.rows, 384))))
        alarms["embedding"] += compare_column("embedding", a, b, seed=trial).status == "drift"
    took = time.perf_counter() - started
    for kind, count in alarms.items():
        print(
            f"false alarms, {kind}: {count} of {args.trials} ({100 * count / args.trials:.1f} %, alpha 5 %)"
        )
    print(f"calibration took {took:.0f} s")


if __name__ == "__main__":
    main()

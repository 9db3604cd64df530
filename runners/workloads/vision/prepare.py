"""A data preparation run: scikit-learn's bundled digits written as output dataset ``digits``
(CSV: p0..p63, label), which a training run then takes as its input ``train``."""

from __future__ import annotations

import sys

import pandas as pd
from digits import LABEL, PIXELS
from sklearn.datasets import load_digits

from runners import workload_env


def main() -> int:
    digits = load_digits()  # ships inside scikit-learn's wheel: nothing is downloaded
    frame = pd.DataFrame(digits.data.astype("int64"), columns=PIXELS)
    frame[LABEL] = digits.target.astype("int64")
    path = workload_env.output_dataset("digits")
    frame.to_csv(path, index=False)
    print(f"wrote {len(frame)} images of {frame[LABEL].nunique()} digits to {path.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

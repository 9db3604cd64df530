"""Multivariate drift: changes the per-column tests cannot see, such as a flipped correlation (issue 11).

Two tests compare the reference rows with the current rows as a whole:

- ``domain_classifier``: a gradient-boosted tree classifier (scikit-learn's
  ``HistGradientBoostingClassifier``) learns on half of the rows (stratified) to tell reference rows
  from current rows; its ROC AUC on the other half is 0.5 when the two cannot be told apart. The
  threshold is the ``1 - alpha`` quantile of a permutation test: the held-out labels are shuffled
  ``permutations`` times (seeded) and the AUC recomputed. Under no drift a held-out row's score
  does not depend on its label (the model saw none of them), so shuffling them draws from the
  AUC's null distribution without refitting; the p-value is ``(1 + #{null AUC >= AUC}) / (1 + B)``.
  (Cross-validation was tried and dropped: its folds' AUCs are correlated, which this null ignores.)
  The features that drive the AUC are those whose permutation (all of a column's encoded values
  shuffled together in the held-out half) lowers it most (Breiman 2001, "Random forests", Mach.
  Learn. 45: 5-32, section 10).
- ``pca``: NannyML's data reconstruction drift (``DataReconstructionDriftCalculator``): a PCA fitted
  on half of the standardised reference keeps ``pca_variance`` (65 %) of the variance; a row's
  reconstruction error is the Euclidean distance between the row and its reconstruction. The other
  half of the reference gives the bound: its mean error +- 3 standard deviations of a mean of the
  current's number of rows (NannyML's 3-sigma bound on chunks, for randomly sampled rows; see
  ``_pca_reconstruction``). Drift when the current rows' mean error is outside. The features named
  are those whose mean squared residual grew most against the held-out reference.

Encoding (one rule for both tests): numeric and boolean columns are numbers, a missing value
imputed with the median; a categorical column becomes one indicator per value among its
``CATEGORY_LEVELS`` (10) most frequent, plus one "other" indicator, a missing value counting as the
most frequent value. Every encoded column is standardised (a standard deviation of 0 counts as 1).
The statistics (medians, levels, means, deviations) come from rows whose side does not matter: both
sides pooled for the classifier, the PCA's fit half of the reference for PCA (see ``encode``).
Columns with no reference values and datetime columns (a later window always moves them) are left
out and listed in ``excluded``. A change in the missing rate is thus the per-column tests' to see.

Bounds: each side is sampled (seeded) to at most ``max_rows`` rows, and the tests stop with status
``time_limit`` once ``time_limit_s`` has passed. The classifier runs on one thread. Fewer than
``MIN_ROWS`` rows on a side give status ``insufficient_data`` with the counts, never an exception.
No Django imports.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

TESTS = ("domain_classifier", "pca")
DEFAULT_MAX_ROWS = 5_000  # per side: about 10 s for both tests on one core (benchmarks/bench_multivariate.py)
DEFAULT_ALPHA = 0.05
DEFAULT_PERMUTATIONS = 200
DEFAULT_PCA_VARIANCE = 0.65  # NannyML's default
DEFAULT_TIME_LIMIT_S = 120.0
# A row's reconstruction error below this (features are standardised) is rounding, not a residual.
NOISE_ERROR = 1e-9
MIN_ROWS = 100  # per side: halves of 50 rows for the classifier, 50 to fit the PCA and 50 to bound it
CATEGORY_LEVELS = 10
TOP_FEATURES = 5
PCA_SIGMAS = 3.0  # NannyML's default bound
BOOSTING_ROUNDS = 50


class MultivariateTimeLimit(Exception):
    """A multivariate test ran past its time limit; the message names the stage."""


@dataclass(frozen=True)
class MultivariateResult:
    """One test's outcome.

    ``status``: ``ok``, ``drift``, ``insufficient_data``, ``time_limit`` or ``error`` (only ``ok`` and
    ``drift`` are verdicts). ``statistic``: the held-out ROC AUC (domain classifier) or the
    current rows' mean reconstruction error (PCA, in standardised units); ``threshold``: the AUC's
    ``1 - alpha`` null quantile, or the upper bound of the reconstruction error (``lower_bound``
    beside it). ``p_value``: permutation p-value (domain classifier only). ``top_features``: up to
    five ``{"feature", "importance"}``, importance being the AUC drop (domain classifier) or the
    increase in mean squared residual (PCA). Row counts are those sampled.
    """

    test: str
    status: str
    message: str = ""
    statistic: float | None = None
    threshold: float | None = None
    lower_bound: float | None = None
    p_value: float | None = None
    reference_rows: int = 0
    current_rows: int = 0
    features: int = 0
    components: int | None = None
    permutations: int | None = None
    top_features: tuple[dict, ...] = ()
    excluded: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def is_drifted(self) -> bool:
        return self.status == "drift"

    def to_dict(self) -> dict:
        """JSON-able dict; non-finite floats become None."""
        data: dict[str, Any] = {
            "test": self.test,
            "status": self.status,
            "is_drifted": self.is_drifted,
            "message": self.message,
            "statistic": _finite(self.statistic),
            "threshold": _finite(self.threshold),
            "lower_bound": _finite(self.lower_bound),
            "p_value": _finite(self.p_value),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "features": self.features,
            "components": self.components,
            "permutations": self.permutations,
            "top_features": [
                {"feature": item["feature"], "importance": _finite(item["importance"])}
                for item in self.top_features
            ],
            "excluded": list(self.excluded),
            "seconds": round(self.seconds, 3),
        }
        return data


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


@dataclass
class _Encoded:
    """Frames encoded and standardised; ``groups`` maps a source column to its encoded indices."""

    matrices: list[np.ndarray]
    groups: dict[str, list[int]] = field(default_factory=dict)


def usable_columns(
    reference: pd.DataFrame, columns: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """The ``columns`` (default: all) of ``reference`` the tests compare, and those left out
    (datetime, or no value in the reference), each in column order."""
    names = [c for c in (columns if columns is not None else reference.columns) if c in reference.columns]
    kept: list[str] = []
    excluded: list[str] = []
    for name in names:
        values = reference[name]
        is_datetime = pd.api.types.is_datetime64_any_dtype(values) or isinstance(
            values.dtype, pd.DatetimeTZDtype
        )
        usable = not is_datetime and values.replace([np.inf, -np.inf], np.nan).notna().any()
        (kept if usable else excluded).append(name)
    return kept, excluded


def encode(basis: pd.DataFrame, frames: Sequence[pd.DataFrame], columns: Sequence[str]) -> _Encoded:
    """Encode ``columns`` of each of ``frames`` by the module's rule, with statistics (medians,
    category levels, means, standard deviations) from ``basis`` only.

    The basis must not depend on which side a row is on where the sides are then compared: the
    domain classifier encodes on both sides pooled, PCA on the half of the reference it fits.
    (Levels picked on the reference alone flag its chance-frequent values: 7 false alarms in 20
    no-drift trials on the bike data's dates.) Returns one float64 array of shape (rows, encoded
    features) per frame; a column absent from a frame counts as missing there.
    """
    blocks: list[list[np.ndarray]] = [[] for _ in frames]
    basis_blocks: list[np.ndarray] = []
    groups: dict[str, list[int]] = {}
    width = 0
    for name in columns:
        base = basis[name]
        sides = [
            frame[name] if name in frame.columns else pd.Series([None] * len(frame), dtype=object)
            for frame in frames
        ]
        if pd.api.types.is_bool_dtype(base) or pd.api.types.is_numeric_dtype(base):

            def numbers(values: pd.Series) -> pd.Series:
                return pd.to_numeric(values, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)

            median = numbers(base).median()
            fill = float(median) if pd.notna(median) else 0.0
            encoded = [numbers(values).fillna(fill).to_numpy()[:, None] for values in [base, *sides]]
        else:
            counts = base.astype("string").value_counts()
            levels = [str(level) for level in counts.index[:CATEGORY_LEVELS]]
            mode = levels[0] if levels else ""
            encoded = [_one_hot(values.astype("string").fillna(mode), levels) for values in [base, *sides]]
        groups[name] = list(range(width, width + encoded[0].shape[1]))
        width += encoded[0].shape[1]
        basis_blocks.append(encoded[0])
        for i, block in enumerate(encoded[1:]):
            blocks[i].append(block)
    basis_matrix = np.hstack(basis_blocks)
    mean = basis_matrix.mean(axis=0)
    std = basis_matrix.std(axis=0)
    std[std == 0] = 1.0  # a constant column stays 0 in the basis; any change still shows
    return _Encoded([(np.hstack(frame_blocks) - mean) / std for frame_blocks in blocks], groups)


def _one_hot(values: pd.Series, levels: list[str]) -> np.ndarray:
    """Indicators of ``levels`` plus one for every other value, shape (rows, len(levels) + 1)."""
    text = values.to_numpy(dtype=object)
    block = np.zeros((len(text), len(levels) + 1))
    known = np.zeros(len(text), dtype=bool)
    for i, level in enumerate(levels):
        hit = text == level
        block[:, i] = hit
        known |= hit
    block[:, -1] = ~known
    return block


def run_multivariate(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    tests: Sequence[str] = TESTS,
    *,
    columns: Sequence[str] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    alpha: float = DEFAULT_ALPHA,
    permutations: int = DEFAULT_PERMUTATIONS,
    pca_variance: float = DEFAULT_PCA_VARIANCE,
    time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    seed: int = 0,
) -> list[MultivariateResult]:
    """Run the named ``tests`` (from ``TESTS``) on ``columns`` of the two frames (raw rows).

    Each side is sampled to at most ``max_rows`` rows with ``seed``; ``time_limit_s`` bounds all
    tests together (wall-clock seconds). Returns one result per test, in the order asked; a test
    that cannot run reports why in its status and message. Raises ValueError for an unknown test.
    """
    unknown = [name for name in tests if name not in TESTS]
    if unknown:
        raise ValueError(f"unknown multivariate test(s) {unknown}; choose from {TESTS}")
    deadline = time.monotonic() + time_limit_s
    rng = np.random.default_rng(seed)
    reference = _sample(reference, max_rows, rng)
    current = _sample(current, max_rows, rng)
    base: dict[str, Any] = {"reference_rows": len(reference), "current_rows": len(current)}
    if min(len(reference), len(current)) < MIN_ROWS:
        message = (
            f"not enough rows: {len(reference)} reference and {len(current)} current rows; "
            f"each side needs at least {MIN_ROWS}"
        )
        return [MultivariateResult(name, "insufficient_data", message, **base) for name in tests]
    kept, excluded = usable_columns(reference, columns)
    base |= {"features": len(kept), "excluded": tuple(excluded)}
    if not kept:
        message = "no column with reference values to compare (datetime and all-null columns are left out)"
        return [MultivariateResult(name, "insufficient_data", message, **base) for name in tests]
    results = []
    for name in tests:
        started = time.monotonic()
        try:
            if name == "domain_classifier":
                pooled = pd.concat([reference[kept], current.reindex(columns=kept)], ignore_index=True)
                encoded = encode(pooled, [reference, current], kept)
                fields = _domain_classifier(encoded, alpha, permutations, deadline, seed)
            else:
                order = np.random.default_rng(seed + 2).permutation(len(reference))
                fit = reference.iloc[order[: len(order) // 2]]
                held_out = reference.iloc[order[len(order) // 2 :]]
                encoded = encode(fit, [fit, held_out, current], kept)
                fields = _pca_reconstruction(encoded, pca_variance, deadline, seed)
        except MultivariateTimeLimit as exc:
            fields = {"status": "time_limit", "message": str(exc)}
        except (ValueError, np.linalg.LinAlgError) as exc:
            fields = {"status": "error", "message": f"{type(exc).__name__}: {exc}"}
        results.append(MultivariateResult(name, seconds=time.monotonic() - started, **base, **fields))
    return results


def _sample(frame: pd.DataFrame, max_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    picked = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[picked].reset_index(drop=True)


def _check_time(deadline: float, stage: str) -> None:
    if time.monotonic() > deadline:
        raise MultivariateTimeLimit(f"stopped at its time limit before: {stage}")


def _domain_classifier(
    encoded: _Encoded, alpha: float, permutations: int, deadline: float, seed: int
) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    # One OpenMP thread: several workers share a host, and on a busy one the boosting's threads
    # oversubscribe the cores (a 1.7 s fit took 50 s with 2 cores at load 6).
    with threadpool_limits(limits=1):
        return _fit_domain_classifier(encoded, alpha, permutations, deadline, seed)


def _fit_domain_classifier(
    encoded: _Encoded, alpha: float, permutations: int, deadline: float, seed: int
) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    reference, current = encoded.matrices
    x = np.vstack([reference, current])
    y = np.concatenate([np.zeros(len(reference)), np.ones(len(current))])
    rng = np.random.default_rng(seed + 1)
    # One split, not k folds: a fold's model learns from the other folds' labels, so the fold AUCs
    # move together (a chance excess of one side in some region lifts them all), and shuffling
    # each fold's labels apart drew a null too narrow: 12 false alarms in 100 no-drift trials at
    # alpha 5 % (benchmarks/bench_multivariate.py --calibration). The held-out half's labels are
    # independent of the model, so shuffling them is an exact permutation test.
    train, test = train_test_split(np.arange(len(y)), test_size=0.5, stratify=y, random_state=seed)
    _check_time(deadline, "fitting the domain classifier")
    model = HistGradientBoostingClassifier(max_iter=BOOSTING_ROUNDS, early_stopping=False, random_state=seed)
    model.fit(x[train], y[train])
    labels, scores = y[test], model.predict_proba(x[test])[:, 1]
    observed = _auc(labels, scores)
    # Permutation importance per source column on the held-out half (all of a column's encoded
    # values shuffled together).
    importance = {}
    for name, indices in encoded.groups.items():
        shuffled = x[test].copy()
        shuffled[:, indices] = shuffled[rng.permutation(len(test))][:, indices]
        importance[name] = observed - _auc(labels, model.predict_proba(shuffled)[:, 1])
    null = np.empty(permutations)
    for b in range(permutations):
        if b % 50 == 0:
            _check_time(deadline, f"domain classifier permutation {b + 1} of {permutations}")
        null[b] = _auc(rng.permutation(labels), scores)
    threshold = float(np.quantile(null, 1 - alpha))
    p_value = float((1 + np.sum(null >= observed)) / (1 + permutations))
    drifted = observed > threshold
    verb = ">" if drifted else "<="
    return {
        "status": "drift" if drifted else "ok",
        "message": (
            f"held-out ROC AUC {observed:.3f} {verb} {threshold:.3f}, the {1 - alpha:.0%} quantile "
            f"of {permutations} permutations (p = {p_value:.3g})"
        ),
        "statistic": observed,
        "threshold": threshold,
        "p_value": p_value,
        "permutations": permutations,
        "top_features": _top(importance),
    }


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney U) formula, ties counted half; labels are 0/1."""
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    positives = labels == 1
    n_pos = int(positives.sum())
    n_neg = len(labels) - n_pos
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _pca_reconstruction(encoded: _Encoded, variance: float, deadline: float, seed: int) -> dict[str, Any]:
    from sklearn.decomposition import PCA

    fit_rows, eval_rows, current = encoded.matrices
    _check_time(deadline, "fitting the PCA")
    # A single feature has nothing to reconstruct from: keep its one component (error 0 both sides).
    pca = PCA(n_components=variance if fit_rows.shape[1] > 1 else 1, svd_solver="full", random_state=seed)
    pca.fit(fit_rows)

    def residuals(rows: np.ndarray) -> np.ndarray:
        return rows - pca.inverse_transform(pca.transform(rows))

    _check_time(deadline, "reconstructing the rows")
    eval_residuals, cur_residuals = residuals(eval_rows), residuals(current)
    # Where the kept components span the data (one binary column: its one-hot is of rank 1) the
    # errors are floating-point noise (~1e-16) whose bounds alarmed at random: 1 in 20 no-drift
    # trials. Errors this far below a standardised feature's scale count as exact.
    eval_errors = _exact_zero(np.sqrt((eval_residuals**2).sum(axis=1)))
    cur_errors = _exact_zero(np.sqrt((cur_residuals**2).sum(axis=1)))
    # NannyML bounds a chunk's mean error by the reference chunks' mean +- 3 standard deviations.
    # The rows here are sampled at random, so a chunk's deviation is the rows' over sqrt(rows):
    # the bound for the current rows' mean, plus the held-out mean's own error (without it, 2 of
    # 20 no-drift trials on the bike data fell outside).
    centre = float(eval_errors.mean())
    spread = (
        PCA_SIGMAS * float(eval_errors.std(ddof=1)) * math.sqrt(1 / len(cur_errors) + 1 / len(eval_errors))
    )
    lower, upper = centre - spread, centre + spread
    observed = float(cur_errors.mean())
    drifted = not lower <= observed <= upper
    growth = {
        name: float(
            (cur_residuals[:, idx] ** 2).sum(axis=1).mean() - (eval_residuals[:, idx] ** 2).sum(axis=1).mean()
        )
        for name, idx in encoded.groups.items()
    }
    where = "outside" if drifted else "inside"
    return {
        "status": "drift" if drifted else "ok",
        "message": (
            f"mean reconstruction error {observed:.4g} {where} [{lower:.4g}, {upper:.4g}] "
            f"({pca.n_components_} components keep {variance:.0%} of the reference variance)"
        ),
        "statistic": observed,
        "threshold": upper,
        "lower_bound": lower,
        "components": int(pca.n_components_),
        "top_features": _top(growth),
    }


def _exact_zero(errors: np.ndarray) -> np.ndarray:
    return np.where(errors < NOISE_ERROR, 0.0, errors)


def _top(scores: dict[str, float]) -> tuple[dict, ...]:
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:TOP_FEATURES]
    return tuple({"feature": name, "importance": value} for name, value in ranked)

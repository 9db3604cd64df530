"""Drift of text and embedding columns (issue 11): columns whose cells are documents or vectors,
which the per-column tests (built on value counts and numeric sketches) cannot compare.

Each such column is compared on a bounded, seeded sample of raw rows (``max_rows`` a side) by the
maximum mean discrepancy (MMD; Gretton, Borgwardt, Rasch, Schölkopf and Smola, "A kernel
two-sample test", JMLR 13: 723-773, 2012) with a Gaussian kernel whose bandwidth is the median
pairwise squared distance of the pooled sample (the median heuristic), and a permutation test
(alibi-detect's ``MMDDrift`` does the same): the statistic is the biased estimate
``MMD² = s' K s`` with ``s`` = +1/n on reference rows and -1/m on current rows; ``permutations``
shuffles of the pooled rows give its null distribution, and the p-value is
``(1 + #{null >= observed}) / (1 + B)``. The column drifts when the p-value is below ``alpha``.

- **embedding** cells are vectors: a list or array per cell (Parquet list columns), or text such
  as ``"[0.1, -0.3, ...]"`` / ``"0.1 -0.3 ..."`` (CSV). Every cell must have the same dimension.
- **text** cells are documents. They are embedded without any download: word unigrams and
  bigrams hashed into ``2**14`` buckets (scikit-learn's ``HashingVectorizer``), TF-IDF weighted
  and reduced to ``TEXT_DIMENSIONS`` by a truncated SVD, both fitted on the pooled sample (so the
  embedding does not favour either side), then L2-normalised.
- an **image** is several columns (its pixels) that one model reads as one input. The rows are
  embedded by the model itself (``compare_images``: its penultimate layer, computed by whoever
  calls, for a Steward vision model in the model's own child process), so the test compares what
  the model sees; rows with a missing pixel are dropped.

A domain classifier (logistic regression, 5-fold cross-validated ROC AUC) on the same vectors is
reported beside the MMD as a second, readable figure of how separable the sides are; the verdict
is the MMD's. Fewer than ``MIN_ROWS`` non-empty cells on a side give ``insufficient_data``.
No Django imports.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

KINDS = ("text", "embedding")
IMAGE = "image"
DEFAULT_MAX_ROWS = 1_000  # per side: a 2,000 x 2,000 kernel, about 1 s for 200 permutations
DEFAULT_PERMUTATIONS = 200
DEFAULT_ALPHA = 0.05
MIN_ROWS = 30
TEXT_DIMENSIONS = 64
HASH_FEATURES = 2**14
FOLDS = 5


class EmbeddingTimeLimit(Exception):
    """The test ran past its deadline; the message names the stage."""


@dataclass(frozen=True)
class EmbeddingOutcome:
    """One column's MMD test: ``status`` ``ok``, ``drift``, ``insufficient_data`` or ``error``;
    ``p_value`` against ``alpha``; ``mmd2`` the observed statistic; ``classifier_auc`` the domain
    classifier's cross-validated ROC AUC (0.5: the sides cannot be told apart); ``dimensions`` of
    the vectors compared; row counts are those sampled."""

    status: str
    message: str = ""
    mmd2: float | None = None
    p_value: float | None = None
    alpha: float = DEFAULT_ALPHA
    classifier_auc: float | None = None
    dimensions: int = 0
    reference_rows: int = 0
    current_rows: int = 0
    permutations: int = 0


def as_vectors(values: pd.Series) -> np.ndarray:
    """The cells of an embedding column as a float matrix (rows, dimension). ValueError naming
    the first bad cell: not a vector, not numbers, a non-finite number, or another dimension."""
    rows: list[np.ndarray] = []
    for position, cell in enumerate(values):
        shown = str(cell).strip()[:40]
        if isinstance(cell, str):
            # "[0.1, -0.3]", "(0.1, -0.3)" or "0.1 -0.3": numbers between brackets, commas or spaces
            # (nan and inf included, so they are refused below with the right reason).
            cell = cell.strip().strip("[]()").replace(",", " ").split()
        try:
            vector = np.asarray(cell, dtype=float).ravel()
        except (TypeError, ValueError):
            raise ValueError(f"row {position}: {shown!r} is not a vector of numbers") from None
        if vector.size == 0:
            raise ValueError(f"row {position}: an empty vector")
        if not np.isfinite(vector).all():
            raise ValueError(f"row {position}: the vector holds NaN or infinite values")
        if rows and vector.size != rows[0].size:
            raise ValueError(
                f"row {position}: {vector.size} dimensions where the first row has {rows[0].size}"
            )
        rows.append(vector)
    return np.vstack(rows) if rows else np.zeros((0, 0))


def text_vectors(
    reference: Sequence[str], current: Sequence[str], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Both sides' documents embedded by hashed TF-IDF and a truncated SVD fitted on them pooled,
    L2-normalised; shapes (len(reference), d) and (len(current), d), d <= ``TEXT_DIMENSIONS``."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.preprocessing import normalize

    pooled = [*reference, *current]
    counts = HashingVectorizer(
        n_features=HASH_FEATURES, ngram_range=(1, 2), alternate_sign=False, norm=None
    ).transform(pooled)
    weighted = TfidfTransformer().fit_transform(counts)
    components = max(1, min(TEXT_DIMENSIONS, weighted.shape[0] - 1, weighted.shape[1] - 1))
    reduced = normalize(TruncatedSVD(n_components=components, random_state=seed).fit_transform(weighted))
    return reduced[: len(reference)], reduced[len(reference) :]


def mmd_permutation_test(
    x: np.ndarray, y: np.ndarray, permutations: int, seed: int, deadline: float | None = None
) -> tuple[float, float]:
    """``(MMD², p-value)`` of samples ``x`` (n, d) and ``y`` (m, d) with a Gaussian kernel of
    median-heuristic bandwidth, by ``permutations`` seeded shuffles (see the module's note)."""
    pooled = np.vstack([x, y])
    squares = np.sum(pooled**2, axis=1)
    distances = np.maximum(squares[:, None] + squares[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    off_diagonal = distances[np.triu_indices(len(pooled), k=1)]
    bandwidth = float(np.median(off_diagonal)) or 1.0  # identical rows: any bandwidth gives 0
    kernel = np.exp(-distances / bandwidth)
    n, m = len(x), len(y)
    signs = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    observed = float(signs @ kernel @ signs)
    rng = np.random.default_rng(seed)
    exceed = 0
    done = 0
    for start in range(0, permutations, 50):  # 50 at a time: one matrix product each
        if deadline is not None and time.monotonic() > deadline:
            raise EmbeddingTimeLimit(f"stopped at its time limit after {done} of {permutations} permutations")
        batch = min(50, permutations - start)
        shuffled = np.stack([rng.permutation(signs) for _ in range(batch)], axis=1)
        null = np.einsum("ij,ij->j", kernel @ shuffled, shuffled)
        exceed += int(np.sum(null >= observed - 1e-12))
        done += batch
    return observed, (1 + exceed) / (1 + permutations)


def classifier_auc(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """Cross-validated ROC AUC of a logistic regression telling ``y``'s rows from ``x``'s."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    features = np.vstack([x, y])
    labels = np.concatenate([np.zeros(len(x)), np.ones(len(y))])
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    scores = cross_val_predict(
        LogisticRegression(max_iter=500), features, labels, cv=folds, method="predict_proba"
    )[:, 1]
    return float(roc_auc_score(labels, scores))


def compare_column(
    kind: str,
    reference: pd.Series,
    current: pd.Series,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    permutations: int = DEFAULT_PERMUTATIONS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    deadline: float | None = None,
) -> EmbeddingOutcome:
    """Compare one ``kind`` (``text`` or ``embedding``) column of the reference and current rows.
    Missing cells are dropped, then each side is sampled (seeded) to at most ``max_rows``.
    ValueError for an unknown kind; a column that cannot be read reports ``error`` with why."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")
    rng = np.random.default_rng(seed)
    sides = [_sample(values.dropna(), max_rows, rng) for values in (reference, current)]
    base = EmbeddingOutcome("ok", alpha=alpha, reference_rows=len(sides[0]), current_rows=len(sides[1]))
    if min(len(side) for side in sides) < MIN_ROWS:
        return _too_few(base, "non-empty cells")
    try:
        if kind == "text":
            x, y = text_vectors(sides[0].astype(str).tolist(), sides[1].astype(str).tolist(), seed)
        else:
            x, y = as_vectors(sides[0]), as_vectors(sides[1])
            if x.shape[1] != y.shape[1]:
                raise ValueError(f"reference vectors have {x.shape[1]} dimensions, current ones {y.shape[1]}")
    except ValueError as exc:
        return replace(base, status="error", message=str(exc))
    return compare_vectors(x, y, base, permutations=permutations, seed=seed, deadline=deadline)


def compare_images(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    embed: Callable[[pd.DataFrame], np.ndarray],
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    permutations: int = DEFAULT_PERMUTATIONS,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    deadline: float | None = None,
) -> EmbeddingOutcome:
    """Compare the images of ``reference`` and ``current`` (each a frame of exactly the image's
    pixel columns) through ``embed``: rows with a missing pixel are dropped, each side is sampled
    (seeded) to at most ``max_rows`` rows, and ``embed`` is called once on both samples stacked
    (reference rows first), returning one vector per row, shape (rows, dimensions). The vectors
    are then compared as an embedding column is (MMD permutation test, classifier AUC).

    Whatever ``embed`` raises (the model cannot run on these rows) is reported as ``error`` with
    its message, so the other columns keep their verdicts."""
    rng = np.random.default_rng(seed)
    sides = [_sample_rows(frame.dropna(), max_rows, rng) for frame in (reference, current)]
    base = EmbeddingOutcome("ok", alpha=alpha, reference_rows=len(sides[0]), current_rows=len(sides[1]))
    if min(len(side) for side in sides) < MIN_ROWS:
        return _too_few(base, "complete images (rows with every pixel)")
    if deadline is not None and time.monotonic() > deadline:
        return replace(
            base, status="time_limit", message="stopped at its time limit before embedding the images"
        )
    try:
        vectors = np.asarray(embed(pd.concat(sides, ignore_index=True)), dtype=float)
    except Exception as exc:  # the model's failure on these rows is this column's result
        return replace(base, status="error", message=f"could not embed the images: {exc}")
    rows = len(sides[0]) + len(sides[1])
    if vectors.ndim != 2 or len(vectors) != rows:
        return replace(
            base,
            status="error",
            message=f"the model gave embeddings of shape {vectors.shape} for {rows} images",
        )
    if not np.isfinite(vectors).all():
        return replace(base, status="error", message="the model's embeddings hold NaN or infinite values")
    x, y = vectors[: len(sides[0])], vectors[len(sides[0]) :]
    return compare_vectors(x, y, base, permutations=permutations, seed=seed, deadline=deadline)


def compare_vectors(
    x: np.ndarray,
    y: np.ndarray,
    base: EmbeddingOutcome,
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    deadline: float | None = None,
) -> EmbeddingOutcome:
    """The MMD permutation test and the classifier AUC of vectors ``x`` (reference, (n, d)) and
    ``y`` (current, (m, d)); ``base`` carries the row counts and ``alpha``."""
    try:
        mmd2, p_value = mmd_permutation_test(x, y, permutations, seed, deadline)
        auc = classifier_auc(x, y, seed)
    except EmbeddingTimeLimit as exc:
        return replace(base, status="time_limit", message=str(exc))
    except ValueError as exc:
        return replace(base, status="error", message=str(exc))
    alpha = base.alpha
    drifted = p_value < alpha
    comparison = "<" if drifted else ">="
    return replace(
        base,
        status="drift" if drifted else "ok",
        message=f"MMD² {mmd2:.4g}, p = {p_value:.3g} {comparison} {alpha:g}; classifier AUC {auc:.3f}",
        mmd2=mmd2,
        p_value=p_value,
        classifier_auc=auc,
        dimensions=int(x.shape[1]),
        permutations=permutations,
    )


def _too_few(base: EmbeddingOutcome, what: str) -> EmbeddingOutcome:
    return replace(
        base,
        status="insufficient_data",
        message=f"not enough {what}: {base.reference_rows} reference and {base.current_rows} current; "
        f"each side needs at least {MIN_ROWS}",
    )


def _sample(values: pd.Series, max_rows: int, rng: np.random.Generator) -> pd.Series:
    if len(values) <= max_rows:
        return values.reset_index(drop=True)
    picked = np.sort(rng.choice(len(values), size=max_rows, replace=False))
    return values.iloc[picked].reset_index(drop=True)


def _sample_rows(frame: pd.DataFrame, max_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    picked = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[picked].reset_index(drop=True)

"""Two-sample drift statistics on profile summaries, each equal to its reference implementation.

Every numeric method takes two ``NumericSketch`` summaries. When both are exact (at most
``EXACT_MAX_DISTINCT`` distinct values each) the result equals the reference implementation on the raw
data to floating-point rounding; when one is binned the statistic comes with ``error_bound``, a bound
on how far the binned CDFs can move it.

Reference implementations (read for the rules; the code here is our own):

- K-S: ``scipy.stats.ks_2samp`` (scipy 1.17, ``method='auto'``): exact null distribution when both
  samples have at most 10,000 values, else ``kstwo.sf(D, round(n*m/(n+m)))``. Exact distribution after
  Hodges (1958), "The significance probability of the Smirnov two-sample test", Ark. Mat. 3: 469-486.
- Wasserstein (normed): evidently ``legacy/calculations/stattests/wasserstein_distance_norm.py``:
  ``scipy.stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)``.
- PSI and Jensen-Shannon: evidently ``psi.py``, ``jensenshannon.py`` and ``utils.get_binned_data``:
  numeric columns with more than 20 reference values use ``np.histogram_bin_edges(ref + cur,
  "sturges")``, otherwise the shares of each distinct value; PSI replaces empty shares (``feel_zeroes``).
  Evidently's Jensen-Shannon uses the natural log; ours is base 2, in [0, 1] (see ``jensen_shannon``).
- Chi-square: ``scipy.stats.chi2_contingency`` on the 2 x k table (Yates' correction when dof = 1).
  Evidently's ``chisquare_stattest.py`` is a goodness-of-fit test that treats the reference shares as
  exact, which over-rejects when the reference is small (issue 4); we test homogeneity instead.
- Z: evidently ``z_stattest.py``, the pooled two-proportion z-test (first category against the rest).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy import special, stats

from monitoring.engine.sketch import NumericSketch, count_onto

KS_EXACT_MAX_N = 10_000  # scipy's MAX_AUTO_N
STD_FLOOR = 0.001  # evidently's norm floor for the normed Wasserstein distance
# Evidently compares its natural-log JS distance with 0.1; the same boundary in base 2.
JS_BASE2_EQUIVALENT_THRESHOLD = 0.1 / math.sqrt(math.log(2.0))
DEFAULT_THRESHOLDS = {
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
    "wasserstein": 0.1,
    "psi": 0.1,
    "jensenshannon": JS_BASE2_EQUIVALENT_THRESHOLD,
}
# "mmd": the permutation p-value of a text or embedding column (``monitoring.engine.embedding``).
P_VALUE_METHODS = frozenset({"ks", "chisquare", "z", "mmd"})


@dataclass(frozen=True)
class MethodResult:
    """One statistic: ``score`` is the p-value (tests) or the distance (distances).

    ``statistic`` is the test statistic (K-S D, chi-square, z) or None. ``is_exact`` says the score
    was computed from exact summaries; otherwise ``error_bound`` bounds the error of the underlying
    statistic (D for K-S, the normed distance for Wasserstein) or is None where no bound is derived.
    """

    method: str
    score: float
    statistic: float | None = None
    is_exact: bool = True
    error_bound: float | None = 0.0

    def to_dict(self) -> dict:
        """JSON-able dict of the fields."""
        return asdict(self)


def is_drift(method: str, score: float, threshold: float) -> bool:
    """Evidently's decision rule: K-S ``p <= t``; chi-square and Z ``p < t``; distances ``d >= t``."""
    if method == "ks":
        return score <= threshold
    if method in P_VALUE_METHODS:
        return score < threshold
    return score >= threshold


# -- aligning two sketches on one grid -----------------------------------------------------------
@dataclass(frozen=True)
class _Aligned:
    edges: np.ndarray
    a_atoms: np.ndarray
    a_gaps: np.ndarray
    a_offsets: np.ndarray
    b_atoms: np.ndarray
    b_gaps: np.ndarray
    b_offsets: np.ndarray
    # When both sides are binned on different grids, counts of split gaps are shared by width; these
    # bound the resulting error of a CDF value and of the area between the CDFs.
    split_cdf_error: float = 0.0
    split_area_error: float = 0.0

    @property
    def is_exact(self) -> bool:
        return not (self.a_gaps.any() or self.b_gaps.any())


def _atoms_on(edges: np.ndarray, vals: np.ndarray, counts: np.ndarray) -> np.ndarray:
    atoms = np.zeros(edges.size)
    atoms[np.searchsorted(edges, vals)] = counts
    return atoms


def _split_error(sketch: NumericSketch, edges: np.ndarray) -> tuple[float, float]:
    """Largest share, and sum of width * share, of the gaps of ``sketch`` that ``edges`` split."""
    if not sketch.gaps.any():
        return 0.0, 0.0
    pos = np.searchsorted(sketch.edges, edges, "left")
    k = sketch.edges.size
    on_edge = (pos < k) & (sketch.edges[np.minimum(pos, k - 1)] == edges)
    split = np.unique(pos[~on_edge & (pos > 0) & (pos < k)] - 1)
    if split.size == 0:
        return 0.0, 0.0
    share = sketch.gaps[split] / float(sketch.atoms.sum() + sketch.gaps.sum())
    width = sketch.edges[split + 1] - sketch.edges[split]
    return float(share.max()), float((share * width).sum())


def _align(a: NumericSketch, b: NumericSketch) -> _Aligned:
    """Both sketches on one grid. Lossless unless both are binned on grids that split each other."""
    if a.is_exact and b.is_exact:
        av, ac = a.values_and_counts()
        bv, bc = b.values_and_counts()
        edges = np.union1d(av, bv)
        zeros = np.zeros(max(edges.size - 1, 0))
        return _Aligned(edges, _atoms_on(edges, av, ac), zeros, zeros, _atoms_on(edges, bv, bc), zeros, zeros)
    if a.is_exact or b.is_exact:
        exact, binned = (a, b) if a.is_exact else (b, a)
        vals, counts = exact.values_and_counts()
        outside = (vals < binned.edges[0]) | (vals > binned.edges[-1])
        edges = np.union1d(binned.edges, vals[outside])
        counted = count_onto(edges, vals, counts)
        on_grid = NumericSketch(edges, counted.atoms, counted.gaps, counted.offsets, is_binned=True)
        grid = binned.refined(edges)
        first, second = (on_grid, grid) if a.is_exact else (grid, on_grid)
    else:
        edges = np.union1d(a.edges, b.edges)
        first, second = a.refined(edges), b.refined(edges)
    cdf_error = area_error = 0.0
    if not (a.is_exact or b.is_exact):
        (ca, aa), (cb, ab) = _split_error(a, edges), _split_error(b, edges)
        cdf_error, area_error = ca + cb, aa + ab
    return _Aligned(
        edges,
        first.atoms,
        first.gaps,
        first.offsets,
        second.atoms,
        second.gaps,
        second.offsets,
        cdf_error,
        area_error,
    )


def _cdfs(atoms: np.ndarray, gaps: np.ndarray, n: float) -> tuple[np.ndarray, np.ndarray]:
    """CDF at each edge (inclusive) and just below the next edge (top of each gap)."""
    through = np.cumsum(atoms) + np.concatenate(([0.0], np.cumsum(gaps)))
    return through / n, (through[:-1] + gaps) / n


# -- Kolmogorov-Smirnov ---------------------------------------------------------------------------
def ks_statistic(reference: NumericSketch, current: NumericSketch) -> tuple[float, float]:
    """Two-sided K-S statistic D = sup |F_ref - F_cur| and an upper bound on it.

    Exact (both values equal, and equal to ``scipy.stats.ks_2samp(...).statistic``) when every gap
    holds values of at most one side. Raises ValueError if a side is empty.
    """
    al = _align(reference, current)
    n_a, n_b = al.a_atoms.sum() + al.a_gaps.sum(), al.b_atoms.sum() + al.b_gaps.sum()
    if n_a == 0 or n_b == 0:
        raise ValueError("K-S needs at least one value on each side")
    fa, fa_top = _cdfs(al.a_atoms, al.a_gaps, n_a)
    fb, fb_top = _cdfs(al.b_atoms, al.b_gaps, n_b)
    d = float(np.abs(fa - fb).max())
    if fa_top.size:
        d = max(d, float(np.abs(fa_top - fb_top).max()))
    both = (al.a_gaps > 0) & (al.b_gaps > 0)
    upper = d
    if both.any():
        spread = np.maximum(fa_top - fb[:-1], fb_top - fa[:-1])[both]
        upper = max(d, float(spread.max()))
    return d, upper + al.split_cdf_error


def _ks_sf_equal(n: int, h: int) -> float:
    """P(D_{n,n} >= h/n): 2 * sum_k (-1)^(k+1) C(2n, n-kh) / C(2n, n) (Gnedenko & Korolyuk, 1951)."""
    j = np.arange(n, dtype=np.float64)
    ratios = np.cumprod((n - j) / (n + j + 1.0))  # ratios[t-1] = C(2n, n-t) / C(2n, n)
    terms = ratios[np.arange(h, n + 1, h) - 1]
    signs = np.where(np.arange(terms.size) % 2 == 0, 1.0, -1.0)
    return float(2.0 * np.sum((signs * terms)[::-1]))


_LOG_RANGE = 600.0  # a block's running product of c stays above exp(-600), far from underflow


def _linear_recurrence(a: np.ndarray, c: np.ndarray, start: float) -> np.ndarray:
    """Solve v[j] = a[j] + c[j] * v[j - 1] with v[-1] = ``start``, for a >= 0 and 0 < c < 1.

    Within a block, v[j] = q[j] * (start + cumsum(a / q)[j]) with q the running product of c; blocks
    end before q would underflow. All terms are non-negative, so there is no cancellation.
    """
    q = np.cumprod(c)
    if q[-1] > 1e-280:  # the usual case: one block
        return q * (start + np.cumsum(a / q))
    out = np.empty_like(a)
    log_q = np.cumsum(np.log(c))
    cuts = np.flatnonzero(np.diff(np.floor(log_q / -_LOG_RANGE))) + 1
    bounds = [0, *cuts.tolist(), a.size]
    for first, last in itertools.pairwise(bounds):
        q = np.cumprod(c[first:last])
        out[first:last] = q * (start + np.cumsum(a[first:last] / q))
        start = float(out[last - 1])
    return out


def _ks_sf_lattice(n1: int, n2: int, hg: int) -> float:
    """P(D >= d) for sizes n1, n2, where a path exits when |x * n2 - y * n1| >= hg (hg = d * n1 * n2).

    A uniformly random monotone lattice path from (0, 0) to (n1, n2) reaches (x, y) from (x - 1, y)
    with probability x / (x + y), so the probability that it has left the band by then is
    P(x, y) = (x * P(x - 1, y) + y * P(x, y - 1)) / (x + y), with P = 1 outside the band (Hodges 1958;
    computing the exit probability itself, not 1 minus the inside count, follows Viehmann 2021,
    arXiv:2102.08037, which keeps tiny p-values accurate). Each row is one linear recurrence in y.
    """
    if n1 > n2:
        n1, n2 = n2, n1
    # row[y] = P(x, y); entries above the band stay 1, those below it are never read again.
    row = np.ones(n2 + 1)
    row[: min(-((-hg) // n1) - 1, n2) + 1] = 0.0
    ys = np.arange(n2 + 1, dtype=np.float64)
    for x in range(1, n1 + 1):
        lo = max((x * n2 - hg) // n1 + 1, 0)
        hi = min(-((-(x * n2 + hg)) // n1) - 1, n2)
        if lo > hi:
            return 1.0
        # y = 0 can only be reached from (x - 1, 0): P(x, 0) = P(x - 1, 0).
        first = max(lo, 1)
        if first <= hi:
            weight = 1.0 / (ys[first : hi + 1] + x)
            c = ys[first : hi + 1] * weight
            weight *= x
            a = row[first : hi + 1] * weight
            below = row[0] if lo == 0 else 1.0  # a point below the band has already exited
            row[first : hi + 1] = _linear_recurrence(a, c, below)
    return float(row[n2])


def ks_p_value(d: float, n1: int, n2: int) -> tuple[float, float]:
    """scipy ``ks_2samp`` two-sided p-value for statistic ``d`` and sample sizes ``n1``, ``n2``.

    Returns (d, p): in the exact regime (both sizes <= 10,000) scipy reports d rounded to the lattice
    ``h / lcm(n1, n2)``, and so do we. Raises ValueError if a size is not positive.
    """
    if n1 <= 0 or n2 <= 0:
        raise ValueError("sample sizes must be positive")
    if max(n1, n2) <= KS_EXACT_MAX_N:
        g = math.gcd(n1, n2)
        lcm = (n1 // g) * n2
        h = int(np.round(d * lcm))
        d = h / lcm
        if h == 0:
            return d, 1.0
        p = _ks_sf_equal(n1, h) if n1 == n2 else _ks_sf_lattice(n1, n2, h * g)
        return d, float(np.clip(p, 0.0, 1.0))
    m, n = sorted((float(n1), float(n2)), reverse=True)
    en = m * n / (m + n)
    return d, float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def ks_test(reference: NumericSketch, current: NumericSketch) -> MethodResult:
    """Two-sample two-sided K-S test; score is scipy's p-value for the same data.

    ``error_bound`` is the largest possible error of D when a side is binned (the p-value is then
    computed from the lower value, which is the exact D whenever the bound is 0).
    Raises ValueError if a side is empty.
    """
    d, upper = ks_statistic(reference, current)
    d, p = ks_p_value(d, reference.count, current.count)
    bound = upper - d if upper > d else 0.0
    exact = reference.is_exact and current.is_exact
    return MethodResult("ks", p, d, exact, bound)


# -- Wasserstein ----------------------------------------------------------------------------------
def wasserstein_distance(reference: NumericSketch, current: NumericSketch) -> tuple[float, float]:
    """First Wasserstein distance, integral of |F_ref - F_cur| dx (units of the column), and its bound.

    Equal to ``scipy.stats.wasserstein_distance`` on the raw data when both sketches are exact. Inside
    a gap the integral of each CDF is known exactly from the gap's count and offset, so the distance
    is exact wherever the CDFs do not cross inside a gap; where they may, a linear estimate clipped to
    the feasible range is used and the range's width is added to the bound.
    Raises ValueError if a side is empty.
    """
    al = _align(reference, current)
    n_a, n_b = al.a_atoms.sum() + al.a_gaps.sum(), al.b_atoms.sum() + al.b_gaps.sum()
    if n_a == 0 or n_b == 0:
        raise ValueError("Wasserstein needs at least one value on each side")
    if al.edges.size < 2:
        return 0.0, 0.0
    fa, fa_top = _cdfs(al.a_atoms, al.a_gaps, n_a)
    fb, fb_top = _cdfs(al.b_atoms, al.b_gaps, n_b)
    w = np.diff(al.edges)
    lo_a, lo_b = fa[:-1], fb[:-1]
    # Integral over gap i of F is F(e_i) * w + (count * w - offset) / n (integration by parts).
    area = (lo_a - lo_b) * w
    if not al.is_exact:
        area = area + (al.a_gaps * w - al.a_offsets) / n_a - (al.b_gaps * w - al.b_offsets) / n_b
    lower = np.abs(area)
    cross = (fa_top > lo_b) & (fb_top > lo_a)
    if not cross.any():
        return float(lower.sum()), al.split_area_error
    d0, d1 = (lo_a - lo_b)[cross], (fa_top - fb_top)[cross]
    wc = w[cross]
    same_sign = d0 * d1 >= 0
    denom = np.where(same_sign, 1.0, np.abs(d0) + np.abs(d1))
    linear = np.where(same_sign, wc * np.abs(d0 + d1) / 2.0, wc * (d0**2 + d1**2) / (2.0 * denom))
    upper = lower[cross] + 2.0 * wc * np.minimum(fa_top[cross] - lo_b[cross], fb_top[cross] - lo_a[cross])
    estimate = lower.copy()
    estimate[cross] = np.clip(linear, lower[cross], upper)
    return float(estimate.sum()), float((upper - lower[cross]).sum()) + al.split_area_error


def wasserstein_normed(
    reference: NumericSketch, current: NumericSketch, reference_std: float
) -> MethodResult:
    """Evidently's "Wasserstein distance (normed)": W1 / max(reference population std, 0.001).

    ``reference_std`` is ``np.std`` (ddof=0) of the reference values. Dimensionless score; drift
    when >= threshold (default 0.1). Raises ValueError if a side is empty.
    """
    norm = max(float(reference_std), STD_FLOOR)
    distance, bound = wasserstein_distance(reference, current)
    exact = reference.is_exact and current.is_exact
    return MethodResult("wasserstein", distance / norm, None, exact, bound / norm)


# -- binned shares, PSI and Jensen-Shannon --------------------------------------------------------
def sturges_edges(low: float, high: float, n: int, *, integer_dtype: bool = False) -> np.ndarray:
    """``np.histogram_bin_edges(data, bins="sturges")`` from the data's min, max and size alone.

    ``integer_dtype`` mirrors numpy's rule that integer data never gets bins narrower than 1.
    Raises ValueError if ``n`` < 1 or a bound is not finite.
    """
    if n < 1 or not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("need at least one finite value")
    first, last = low, high
    if first == last:
        first, last = first - 0.5, last + 0.5
    width = (high - low) / (np.log2(n) + 1.0)
    if width:
        if integer_dtype and width < 1:
            width = 1
        n_bins = int(np.ceil((last - first) / width))
    else:
        n_bins = 1
    return np.linspace(first, last, n_bins + 1)


def _histogram(sketch: NumericSketch, edges: np.ndarray) -> tuple[np.ndarray, bool]:
    below, exact = sketch.count_below(edges[1:-1])
    cum = np.concatenate(([0.0], below, [float(sketch.count)]))
    return np.diff(cum), exact


def numeric_shares(
    reference: NumericSketch,
    current: NumericSketch,
    *,
    integer_dtype: bool = False,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Evidently's ``get_binned_data`` for a numeric column: (reference shares, current shares, exact).

    More than 20 distinct reference values: shares of the Sturges bins of the pooled data. Otherwise
    shares of each distinct value (a binned current side contributes each gap as one value).
    ``integer_dtype``: both sides are integer-typed (numpy's minimum bin width 1).
    Raises ValueError if a side is empty.
    """
    n_ref, n_cur = reference.count, current.count
    if n_ref == 0 or n_cur == 0:
        raise ValueError("binned shares need values on both sides")
    if reference.is_exact and reference.distinct is not None and reference.distinct <= 20:
        rv, rc = reference.values_and_counts()
        if current.is_exact:
            cv, cc = current.values_and_counts()
            extra = np.empty(0)
        else:
            cv, cc = current.edges, current.atoms
            extra = current.gaps[current.gaps > 0]
        keys = np.union1d(rv, cv)
        ref_share = np.concatenate((_atoms_on(keys, rv, rc), np.zeros(extra.size))) / n_ref
        cur_share = np.concatenate((_atoms_on(keys, cv, cc), extra)) / n_cur
        keep = (ref_share > 0) | (cur_share > 0)
        return ref_share[keep], cur_share[keep], current.is_exact
    edges = sturges_edges(
        min(reference.low, current.low),
        max(reference.high, current.high),
        n_ref + n_cur,
        integer_dtype=integer_dtype,
    )
    ref_counts, ref_exact = _histogram(reference, edges)
    cur_counts, cur_exact = _histogram(current, edges)
    return ref_counts / n_ref, cur_counts / n_cur, ref_exact and cur_exact


def category_shares(
    reference_counts: Mapping[str, float], current_counts: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Shares of each category over the union of keys: (reference, current, keys in that order).

    Categories with a zero count on both sides are dropped. Raises ValueError if a side is empty.
    """
    keys = sorted(
        {k for k, v in reference_counts.items() if v > 0} | {k for k, v in current_counts.items() if v > 0}
    )
    ref = np.array([float(reference_counts.get(k, 0.0)) for k in keys])
    cur = np.array([float(current_counts.get(k, 0.0)) for k in keys])
    if ref.sum() == 0 or cur.sum() == 0:
        raise ValueError("category shares need values on both sides")
    return ref / ref.sum(), cur / cur.sum(), keys


def _fill_zeroes(shares: np.ndarray) -> np.ndarray:
    """Evidently's ``feel_zeroes``: an empty share becomes min(non-zero)/1e6, or 1e-4 if that is larger."""
    out = shares.astype(np.float64).copy()
    smallest = out[out != 0].min()
    out[out == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return out


def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population Stability Index, sum (r - c) * ln(r / c) after evidently's zero filling (>= 0).

    Inputs are matching arrays of shares (each summing to 1). Source: evidently ``psi.py``; Siddiqi,
    "Credit Risk Scorecards" (2006). Raises ValueError if a side has no non-zero share.
    """
    r, c = np.asarray(reference_shares, float), np.asarray(current_shares, float)
    if not (r.any() and c.any()):
        raise ValueError("PSI needs a non-zero share on each side")
    r, c = _fill_zeroes(r), _fill_zeroes(c)
    return float(np.sum((r - c) * np.log(r / c)))


def jensen_shannon(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Jensen-Shannon distance with base-2 logarithms: sqrt(JSD), in [0, 1]; 1 for disjoint supports.

    Same as ``scipy.spatial.distance.jensenshannon(r, c, base=2)`` (inputs are normalized first).
    Evidently calls it with the natural log (range [0, sqrt(ln 2)] = [0, 0.8326]); the default
    threshold ``JS_BASE2_EQUIVALENT_THRESHOLD`` = 0.1 / sqrt(ln 2) makes the verdicts identical.
    Raises ValueError if a side sums to zero.
    """
    r, c = np.asarray(reference_shares, float), np.asarray(current_shares, float)
    if r.sum() <= 0 or c.sum() <= 0:
        raise ValueError("Jensen-Shannon needs a non-zero share on each side")
    r, c = r / r.sum(), c / c.sum()
    m = (r + c) / 2.0
    divergence = (special.rel_entr(r, m).sum() + special.rel_entr(c, m).sum()) / 2.0
    return float(math.sqrt(max(divergence, 0.0) / math.log(2.0)))


# -- tests on counts ------------------------------------------------------------------------------
def chi_square_contingency(reference_counts: np.ndarray, current_counts: np.ndarray) -> MethodResult:
    """Pearson chi-square test of homogeneity on the 2 x k table [reference; current] of counts.

    Equal to ``scipy.stats.chi2_contingency(table)`` (Yates' continuity correction when dof = 1).
    Categories empty on both sides are dropped; one category left gives statistic 0, p-value 1.
    Raises ValueError if a side has no counts.
    """
    table = np.vstack((np.asarray(reference_counts, float), np.asarray(current_counts, float)))
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if (rows == 0).any():
        raise ValueError("chi-square needs counts on both sides")
    dof = table.shape[1] - 1
    if dof == 0:
        return MethodResult("chisquare", 1.0, 0.0)
    expected = np.outer(rows, table.sum(axis=0)) / table.sum()
    observed = table
    if dof == 1:
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return MethodResult("chisquare", float(stats.chi2.sf(statistic, dof)), statistic)


def two_proportion_z_test(
    reference_hits: float, reference_n: float, current_hits: float, current_n: float, *, method: str = "z"
) -> MethodResult:
    """Pooled two-proportion z-test, two-sided: z = (p1 - p2) / sqrt(P (1 - P) (1/n1 + 1/n2)).

    Hits are counts of the "positive" outcome in n trials; p-value 2 * (1 - Phi(|z|)) as in
    evidently's ``z_stattest.py``. A pooled share of 0 or 1 (no variation at all) gives z = 0, p = 1.
    Raises ValueError if a side has no trials.
    """
    if reference_n <= 0 or current_n <= 0:
        raise ValueError("the z-test needs trials on both sides")
    p1, p2 = reference_hits / reference_n, current_hits / current_n
    pooled = (reference_hits + current_hits) / (reference_n + current_n)
    variance = pooled * (1.0 - pooled) * (1.0 / reference_n + 1.0 / current_n)
    if variance <= 0:
        return MethodResult(method, 1.0, 0.0)
    z = (p1 - p2) / math.sqrt(variance)
    return MethodResult(method, float(2.0 * stats.norm.sf(abs(z))), float(z))


def missing_rate_test(
    reference_missing: int, reference_rows: int, current_missing: int, current_rows: int
) -> MethodResult:
    """Change in the share of rows without a usable value, by the pooled two-proportion z-test.

    ``statistic`` is z; score the two-sided p-value. The caller combines it with a minimum absolute
    change (``CheckConfig.missing_rate_min_change``) so huge windows do not flag negligible changes.
    Raises ValueError if a side has no rows.
    """
    return two_proportion_z_test(
        reference_missing, reference_rows, current_missing, current_rows, method="missing_rate"
    )

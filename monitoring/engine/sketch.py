"""A mergeable summary of a numeric column's finite values, exact while small, binned when large.

A ``NumericSketch`` describes a distribution by sorted ``edges`` with

- ``atoms[i]``: how many values equal ``edges[i]`` exactly;
- ``gaps[i]``: how many values lie strictly between ``edges[i]`` and ``edges[i + 1]``;
- ``offsets[i]``: the sum of ``x - edges[i]`` over those values (their first moment inside the gap).

In **exact** mode the edges are the distinct values themselves and every gap is empty, so the
empirical CDF is known everywhere and K-S, Wasserstein, PSI and Jensen-Shannon computed from it equal
scipy's and evidently's on the raw data. A sketch stays exact while it holds at most
``EXACT_MAX_DISTINCT`` distinct values; every sample of at most that many rows is therefore exact,
which covers scipy's exact K-S p-values (``ks_2samp`` uses them up to 10,000 rows per side).

Past that bound the sketch becomes **binned**: an edge at every 1/``BINS`` of the values seen so far
(quantiles) and every 1/``BINS`` of their range (so the tails stay narrow too), with exact counts and
offsets on them. The empirical CDF is then exact at every edge and
known to within one gap's mass in between; ``monitoring.engine.methods`` turns that into an error
bound on each statistic. Values outside the current edges extend the grid, and the grid is coarsened
back (edges dropped, their counts folded into gaps; never the reverse) when it grows past
``MAX_EDGES``. Counts are stored as float64, which is exact for integers below 2**53.

Size bounds (what ``to_dict`` stores: base64 float64, 32 characters per 3 numbers): exact mode at
most ``2 * EXACT_MAX_DISTINCT`` numbers (about 213 KB); binned mode at most ``4 * MAX_EDGES`` numbers
(about 262 KB), typically about ``8 * BINS`` (about 175 KB). Memory while adding
a chunk is a few copies of the chunk plus those arrays, independent of how many rows came before.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import numpy as np

EXACT_MAX_DISTINCT = 10_000
BINS = 2_048
MAX_EDGES = 3 * BINS  # headroom for grid extensions before the next coarsening


def encode_array(values: np.ndarray) -> str:
    """Base64 text of ``values`` as little-endian float64 (8 bytes per element, lossless)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f8").tobytes()).decode("ascii")


def decode_array(text: str) -> np.ndarray:
    """Inverse of ``encode_array``: a writable float64 array. Raises ValueError on corrupt text."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % 8:
        raise ValueError("encoded array length is not a multiple of 8 bytes")
    return np.frombuffer(raw, dtype="<f8").astype(np.float64)


def _runs(xs: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of sorted ``xs`` and their total weights (counts when ``weights`` is None)."""
    if xs.size == 0:
        return np.empty(0), np.empty(0)
    starts = np.flatnonzero(np.concatenate(([True], xs[1:] != xs[:-1])))
    if weights is None:
        counts = np.diff(np.append(starts, xs.size)).astype(np.float64)
    else:
        counts = np.add.reduceat(weights, starts)
    return xs[starts], counts


@dataclass(frozen=True)
class GridCounts:
    """Counts of values on a grid of K edges: ``atoms`` (K,), ``gaps`` and ``offsets`` (K - 1,)."""

    atoms: np.ndarray
    gaps: np.ndarray
    offsets: np.ndarray


def count_onto(edges: np.ndarray, xs: np.ndarray, weights: np.ndarray | None = None) -> GridCounts:
    """Exact atoms, gap counts and gap offsets of values on ``edges`` (see the module docstring).

    ``edges``: (K,) strictly increasing; ``xs``: sorted values, all within [edges[0], edges[-1]];
    ``weights``: optional (len(xs),) multiplicity of each value. Offsets are in the column's units.
    Values outside the edges would be miscounted; callers split them off first.
    """
    left = np.searchsorted(xs, edges, "left")
    right = np.searchsorted(xs, edges, "right")
    if weights is None:
        cum_w = np.arange(xs.size + 1, dtype=np.float64)
    else:
        cum_w = np.concatenate(([0.0], np.cumsum(weights)))
    atoms = cum_w[right] - cum_w[left]
    gaps = cum_w[left[1:]] - cum_w[right[:-1]]
    # Each value's distance to the edge at or below it; atoms contribute exactly 0.
    below = np.repeat(edges[:-1], np.diff(left))
    dist = xs[: left[-1]] - below
    if weights is not None:
        dist = dist * weights[: left[-1]]
    cum_d = np.concatenate(([0.0], np.cumsum(dist)))
    offsets = cum_d[left[1:]] - cum_d[left[:-1]]
    return GridCounts(atoms, gaps, np.maximum(offsets, 0.0))


class NumericSketch:
    """Exact-or-binned summary of finite float64 values; see the module docstring for the layout.

    Build with ``NumericSketch.from_values``; grow with ``add_values``; combine with ``merge``. A sketch
    created with ``on_edges`` is binned from the start on a fixed grid (a reference profile's), whose
    edges are never dropped, so two such sketches compare without interpolation.
    """

    __slots__ = ("_keep", "atoms", "edges", "gaps", "high", "is_binned", "low", "offsets")

    def __init__(
        self,
        edges: np.ndarray | None = None,
        atoms: np.ndarray | None = None,
        gaps: np.ndarray | None = None,
        offsets: np.ndarray | None = None,
        *,
        is_binned: bool = False,
    ) -> None:
        # Plain np.ndarray: merges store integer counts in them as they come.
        self.edges: np.ndarray = np.empty(0) if edges is None else np.asarray(edges, dtype=np.float64)
        self.atoms: np.ndarray = (
            np.zeros(self.edges.size) if atoms is None else np.asarray(atoms, dtype=np.float64)
        )
        k = max(self.edges.size - 1, 0)
        self.gaps: np.ndarray = np.zeros(k) if gaps is None else np.asarray(gaps, dtype=np.float64)
        self.offsets: np.ndarray = np.zeros(k) if offsets is None else np.asarray(offsets, dtype=np.float64)
        self.is_binned = is_binned
        self._keep: np.ndarray | None = None
        # Exact smallest and largest value (NaN while empty); a binned grid may extend past them.
        self.low, self.high = math.nan, math.nan
        if self.edges.size:
            self.low, self.high = float(self.edges[0]), float(self.edges[-1])
        if self.atoms.size != self.edges.size or self.gaps.size != k or self.offsets.size != k:
            raise ValueError("edges, atoms, gaps and offsets have inconsistent lengths")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_values(cls, values: np.ndarray) -> NumericSketch:
        """Sketch of a 1-D array of finite values (any order). Raises ValueError on NaN or inf."""
        sketch = cls()
        sketch.add_values(values)
        return sketch

    @classmethod
    def on_edges(cls, edges: np.ndarray) -> NumericSketch:
        """An empty binned sketch on a fixed grid; those edges are kept through every coarsening."""
        sketch = cls(np.array(edges, dtype=np.float64), is_binned=True)
        sketch._keep = np.ones(sketch.edges.size, dtype=bool)
        sketch.low = sketch.high = math.nan
        return sketch

    # -- properties -----------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Number of values summarized."""
        return round(float(self.atoms.sum() + self.gaps.sum()))

    @property
    def is_exact(self) -> bool:
        """True when every value sits on an edge, so the empirical CDF is known everywhere."""
        return not self.gaps.any()

    @property
    def distinct(self) -> int | None:
        """Number of distinct values when exact (edges with a count), else None."""
        return int(np.count_nonzero(self.atoms)) if self.is_exact else None

    @property
    def max_gap_share(self) -> float:
        """Largest share of values inside one open gap: the resolution of the binned CDF."""
        n = self.count
        return float(self.gaps.max() / n) if n and self.gaps.size else 0.0

    def values_and_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct values and counts of an exact sketch. Raises ValueError when binned."""
        if not self.is_exact:
            raise ValueError("a binned sketch does not hold its distinct values")
        keep = self.atoms > 0
        return self.edges[keep], self.atoms[keep]

    # -- growth ---------------------------------------------------------------------------------
    def add_values(self, values: np.ndarray) -> None:
        """Add finite values (any order). Exact stays exact up to ``EXACT_MAX_DISTINCT`` distinct values.

        Raises ValueError if ``values`` holds NaN or inf (callers count those as missing first).
        """
        xs = np.sort(np.asarray(values, dtype=np.float64).ravel())
        if xs.size == 0:
            return
        if not (np.isfinite(xs[0]) and np.isfinite(xs[-1])):
            raise ValueError("sketch values must be finite")
        low, high = float(np.fmin(self.low, xs[0])), float(np.fmax(self.high, xs[-1]))
        self._add_values_sorted(xs)
        self.low, self.high = low, high

    def _add_values_sorted(self, xs: np.ndarray) -> None:
        if self.is_binned:
            self._add_sorted(xs, None)
            return
        vals, counts = _runs(xs)
        self._add_exact(vals, counts)

    def merge(self, other: NumericSketch) -> None:
        """Add everything ``other`` summarizes to this sketch, in place.

        Exact into anything is lossless. Binned into exact first bins this sketch on ``other``'s
        grid (lossless). Binned into binned splits the other's gap counts across this sketch's edges
        in proportion to width (the only approximate step; error at most one gap of ``other`` per
        edge).
        """
        if other.count == 0:
            return
        low, high = float(np.fmin(self.low, other.low)), float(np.fmax(self.high, other.high))
        self._merge(other)
        self.low, self.high = low, high

    def _merge(self, other: NumericSketch) -> None:
        if other.is_exact:
            vals, counts = other.values_and_counts()
            if self.is_binned:
                self._add_sorted(vals, counts)
            else:
                self._add_exact(vals, counts)
            return
        if not self.is_binned:
            vals, counts = self.values_and_counts()
            grid = NumericSketch(
                other.edges.copy(), other.atoms.copy(), other.gaps.copy(), other.offsets.copy()
            )
            grid.is_binned = True
            if vals.size:
                grid._add_sorted(vals, counts)
            self._assign(grid)
            return
        if self.edges.size == other.edges.size and np.array_equal(self.edges, other.edges):
            # One grid on both sides (windows counted on a reference's edges, merged into a rolling
            # window; issue 11): the counts add up as they are, lossless and without refining.
            self.atoms = self.atoms + other.atoms
            self.gaps = self.gaps + other.gaps
            self.offsets = self.offsets + other.offsets
            return
        union = np.union1d(self.edges, other.edges)
        mine, theirs = self.refined(union), other.refined(union)
        keep = None if self._keep is None else np.isin(union, self.edges[self._keep])
        self._assign(
            NumericSketch(
                union, mine.atoms + theirs.atoms, mine.gaps + theirs.gaps, mine.offsets + theirs.offsets
            )
        )
        self.is_binned = True
        self._keep = keep
        self._limit_edges()

    def refined(self, edges: np.ndarray) -> NumericSketch:
        """This sketch on a superset of its edges; counts inside split gaps are shared by width.

        The result is exact wherever no new edge falls inside a gap holding values.
        Raises ValueError if ``edges`` does not contain every current edge.
        """
        edges = np.asarray(edges, dtype=np.float64)
        if self.edges.size == 0:
            return NumericSketch(edges, is_binned=True)
        pos = np.searchsorted(edges, self.edges)
        if np.any(pos >= edges.size) or np.any(edges[np.minimum(pos, edges.size - 1)] != self.edges):
            raise ValueError("refined() needs a superset of the sketch's edges")
        atoms = np.zeros(edges.size)
        atoms[pos] = self.atoms
        k = edges.size - 1
        gaps, offsets = np.zeros(k), np.zeros(k)
        if k and self.gaps.size:
            # New gap j lies inside old gap `owner[j]` when it is between the old edges.
            owner = np.searchsorted(self.edges, edges[:-1], "right") - 1
            inside = (owner >= 0) & (owner < self.gaps.size)
            j = np.flatnonzero(inside)
            o = owner[j]
            old_w = self.edges[o + 1] - self.edges[o]
            new_w = edges[j + 1] - edges[j]
            share = new_w / old_w
            whole = pos[o + 1] - pos[o] == 1  # the old gap was not split
            gaps[j] = np.where(whole, self.gaps[o], self.gaps[o] * share)
            offsets[j] = np.where(whole, self.offsets[o], gaps[j] * new_w / 2.0)
        out = NumericSketch(edges, atoms, gaps, offsets, is_binned=True)
        out.low, out.high = self.low, self.high
        return out

    def count_below(self, points: np.ndarray, *, inclusive: bool = False) -> tuple[np.ndarray, bool]:
        """How many values are below each point (``<``, or ``<=`` when ``inclusive``).

        Returns (counts as float64, is_exact). A point strictly inside a gap that holds values gets
        that gap's count shared by width (linear CDF inside the gap), and is_exact is False.
        """
        points = np.asarray(points, dtype=np.float64)
        k = self.edges.size
        if k == 0:
            return np.zeros(points.shape), True
        before = np.concatenate(([0.0], np.cumsum(self.atoms[:-1] + self.gaps), [self.count]))
        pos = np.searchsorted(self.edges, points, "left")
        on_edge = (pos < k) & (self.edges[np.minimum(pos, k - 1)] == points)
        counts = before[pos].copy()
        if inclusive:
            counts[on_edge] += self.atoms[pos[on_edge]]
        inside = ~on_edge & (pos > 0) & (pos < k)
        exact = True
        if inside.any():
            g = pos[inside] - 1
            lo, hi = self.edges[g], self.edges[g + 1]
            # before[g + 1] counts the whole gap g; keep only the part below the point.
            counts[inside] -= self.gaps[g] * (hi - points[inside]) / (hi - lo)
            exact = not self.gaps[g].any()
        return counts, exact

    # -- serialization --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able form: mode and base64 float64 arrays (see the module docstring for sizes)."""
        data = {
            "binned": self.is_binned,
            "low": None if math.isnan(self.low) else self.low,
            "high": None if math.isnan(self.high) else self.high,
            "edges": encode_array(self.edges),
            "atoms": encode_array(self.atoms),
        }
        if self.is_binned:
            data["gaps"] = encode_array(self.gaps)
            data["offsets"] = encode_array(self.offsets)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> NumericSketch:
        """Inverse of ``to_dict``. Raises ValueError (or KeyError) on a malformed payload."""
        edges = decode_array(data["edges"])
        atoms = decode_array(data["atoms"])
        if data.get("binned"):
            sketch = cls(
                edges, atoms, decode_array(data["gaps"]), decode_array(data["offsets"]), is_binned=True
            )
        else:
            sketch = cls(edges, atoms)
        sketch.low = math.nan if data.get("low") is None else float(data["low"])
        sketch.high = math.nan if data.get("high") is None else float(data["high"])
        return sketch

    # -- internals ------------------------------------------------------------------------------
    def _assign(self, other: NumericSketch) -> None:
        self.edges, self.atoms, self.gaps, self.offsets = other.edges, other.atoms, other.gaps, other.offsets
        self.is_binned = other.is_binned
        self._keep = other._keep

    def _add_exact(self, vals: np.ndarray, counts: np.ndarray) -> None:
        if self.edges.size:
            union, inverse = np.unique(np.concatenate((self.edges, vals)), return_inverse=True)
            weights = np.bincount(inverse, weights=np.concatenate((self.atoms, counts)))
        else:
            union, weights = vals, counts
        if union.size <= EXACT_MAX_DISTINCT:
            self.edges, self.atoms = union, weights
            self.gaps = self.offsets = np.zeros(union.size - 1)
            return
        binned = NumericSketch(union, weights)
        binned.is_binned = True
        binned._coarsen(BINS)
        self._assign(binned)

    def _add_sorted(self, xs: np.ndarray, weights: np.ndarray | None) -> None:
        """Count sorted values (with optional weights) onto the binned grid, extending it outward."""
        if self.edges.size == 0:
            vals, counts = _runs(xs, weights)
            block = NumericSketch(vals, counts)
            block.is_binned = True
            if vals.size > EXACT_MAX_DISTINCT:
                block._coarsen(BINS)
            self._assign(block)
            return
        lo = int(np.searchsorted(xs, self.edges[0], "left"))
        hi = int(np.searchsorted(xs, self.edges[-1], "right"))
        if hi > lo:
            w = None if weights is None else weights[lo:hi]
            counted = count_onto(self.edges, xs[lo:hi], w)
            self.atoms = self.atoms + counted.atoms
            self.gaps = self.gaps + counted.gaps
            self.offsets = self.offsets + counted.offsets
        if lo:
            self._extend(xs[:lo], None if weights is None else weights[:lo], below=True)
        if hi < xs.size:
            self._extend(xs[hi:], None if weights is None else weights[hi:], below=False)
        self._limit_edges()

    def _extend(self, xs: np.ndarray, weights: np.ndarray | None, *, below: bool) -> None:
        vals, counts = _runs(xs, weights)
        block = NumericSketch(vals, counts)
        if vals.size > BINS:
            block._coarsen(BINS)
        first, second = (block, self) if below else (self, block)
        edges = np.concatenate((first.edges, second.edges))
        atoms = np.concatenate((first.atoms, second.atoms))
        gaps = np.concatenate((first.gaps, [0.0], second.gaps))
        offsets = np.concatenate((first.offsets, [0.0], second.offsets))
        if self._keep is not None:
            new = np.zeros(block.edges.size, dtype=bool)
            self._keep = np.concatenate((new, self._keep) if below else (self._keep, new))
        self.edges, self.atoms, self.gaps, self.offsets = edges, atoms, gaps, offsets

    def _limit_edges(self) -> None:
        kept = 0 if self._keep is None else int(self._keep.sum())
        if self.edges.size > MAX_EDGES + kept:
            self._coarsen(BINS)

    def _coarsen(self, target: int) -> None:
        """Drop edges so about ``target`` remain at mass quantiles (plus kept edges, heavy atoms, ends).

        Lossless on the kept edges: a dropped edge's atom and its neighbouring gaps fold into one gap
        whose count and offset are exact sums.
        """
        k = self.edges.size
        n = float(self.atoms.sum() + self.gaps.sum())
        if k <= 2 or n == 0:
            return
        before = np.concatenate(([0.0], np.cumsum(self.atoms[:-1] + self.gaps)))
        bucket = np.floor(before * target / n)
        span = self.edges[-1] - self.edges[0]
        # Equal-mass edges leave the tails wide; equal-width buckets keep every gap narrow too.
        width_bucket = np.floor((self.edges - self.edges[0]) * (target / span)) if span > 0 else bucket
        retain = np.empty(k, dtype=bool)
        retain[0] = True
        retain[1:] = (bucket[1:] != bucket[:-1]) | (width_bucket[1:] != width_bucket[:-1])
        retain |= self.atoms >= n / target
        retain[-1] = True
        if self._keep is not None:
            retain |= self._keep
        if retain.all():
            return
        seg = np.cumsum(retain) - 1  # index of the retained edge at or below each edge
        start = np.flatnonzero(retain)
        base = self.edges[start][seg]
        dropped = ~retain
        gap_part = self.offsets + self.gaps * (self.edges[:-1] - base[:-1])
        atom_part = np.where(dropped, self.atoms * (self.edges - base), 0.0)
        m = start.size - 1
        gaps = np.bincount(seg[:-1], weights=self.gaps, minlength=m)[:m]
        gaps += np.bincount(seg[dropped], weights=self.atoms[dropped], minlength=m)[:m]
        offsets = np.bincount(seg[:-1], weights=gap_part, minlength=m)[:m]
        offsets += np.bincount(seg, weights=atom_part, minlength=m)[:m]
        self.edges = self.edges[start]
        self.atoms = self.atoms[start]
        self.gaps, self.offsets = gaps, offsets
        if self._keep is not None:
            self._keep = self._keep[start]

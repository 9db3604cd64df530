"""Reference profiles: a per-column summary of a dataset, built once and stored as JSON.

A ``DatasetProfile`` is built from a pandas DataFrame or an iterator of DataFrame chunks
(``build_profile``); profiles of consecutive chunks merge (``DatasetProfile.merge``). Per column it
keeps the row count, the missing count (null, NaN, NaT; ``inf`` is counted apart in ``infinite``), and:

- numbers, integers and datetimes (as seconds since the epoch, UTC): a ``NumericSketch`` of the
  finite values (exact up to 10,000 distinct values, then ~2,048 quantile bins with exact counts; see
  ``monitoring.engine.sketch``) and the exact count, mean and sum of squared deviations (Chan, Golub
  & LeVeque, 1979, "Updating formulae and a pairwise algorithm for computing sample variances");
- strings, categories and booleans: the count of each value (keys are ``str(value)``).

Column kinds follow evidently's inference (``evidently/core/datasets.py: infer_column_type``) where it
is sound: floats are numeric; strings with more than half of their values distinct are text, which we
exclude. Integer columns with at most ``INTEGER_CATEGORY_LIMIT`` = 20 distinct reference values are
categorical (evidently says 10; issue 11): codes such as months (12), weekdays, weather or education
levels (16) are categories, so a new code is named, while hours of the day (24) and counts stay
numeric. A check may override the kind per column (``CheckConfig.column_kinds``). Unlike evidently we
also profile booleans, nullable (``Int64``, ``boolean``) and unsigned columns, and datetimes. Excluded
columns carry a reason: a row index ("all values unique") or free text.

A string column with more than ``MAX_CATEGORIES`` values is "high cardinality" (``is_over_limit``):
the profile keeps the counts of its ``MAX_CATEGORIES`` most frequent values and lumps the rest into
``other_count`` (after each chunk and merge, so a value dropped early and seen again later restarts
from zero: the kept counts are lower bounds, exact for values that were never dropped); the check
then compares its top-k values plus "other" (issue 11) instead of skipping the column.

Size bounds of ``to_dict()``: a numeric column at most ~262 KB (see ``sketch``), a categorical column
at most ``MAX_CATEGORIES`` keys with their counts, plus a few hundred bytes of counters per column.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd

from monitoring.engine.sketch import NumericSketch

PROFILE_VERSION = 1
INTEGER_CATEGORY_LIMIT = 20  # evidently's INTEGER_CARDINALITY_LIMIT is 10; see the module docstring
MAX_CATEGORIES = 10_000
MAX_UNSEEN_CATEGORIES = 1_000  # per current window; further new categories are counted together
OTHER_UNSEEN = "<other unseen categories>"
TEXT_DISTINCT_SHARE = 0.5  # evidently's text rule: distinct values > half the non-null values
DEFAULT_CHUNK_ROWS = 200_000
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


class ColumnKind(StrEnum):
    """How a reference column is compared (``EXCLUDED`` columns carry ``excluded_reason``)."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    EXCLUDED = "excluded"


def value_family(series: pd.Series) -> str:
    """How a column's values are summarized: "float", "int", "bool", "datetime" or "string".

    Nullable (``Int64``, ``boolean``, ``Float64``) and unsigned dtypes map like their numpy kin; object
    columns go by their first non-null value. Raises TypeError for other dtypes (timedelta, complex).
    """
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if isinstance(dtype, pd.CategoricalDtype):
        return "string"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        present = series.dropna()
        first = present.iloc[0] if len(present) else None
        if isinstance(first, bool | np.bool_):
            return "bool"
        if isinstance(first, int | float | np.integer | np.floating):
            return "float"
        if isinstance(first, pd.Timestamp | np.datetime64):
            return "datetime"
        return "string"
    raise TypeError(f"unsupported dtype {dtype}")


def _numeric_values(series: pd.Series, family: str) -> np.ndarray:
    """float64 values with NaN for missing; datetimes become seconds since the epoch (UTC)."""
    if family == "datetime":
        stamps = pd.to_datetime(series, utc=True)
        out = np.full(len(series), np.nan)
        present = stamps.notna().to_numpy()
        out[present] = ((stamps[present] - _EPOCH) / pd.Timedelta(1, "s")).to_numpy(dtype=np.float64)
        return out
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)


def _category_counts(series: pd.Series) -> tuple[dict[str, float], int]:
    """Count per ``str(value)`` and the number of missing values, in one pass over the chunk."""
    counts = series.value_counts(dropna=False, sort=False)
    out: dict[str, float] = {}
    missing = 0
    for key, value in zip(counts.index, counts.to_numpy(), strict=True):
        if pd.isna(key):
            missing += int(value)
        elif value > 0:
            name = str(key)
            out[name] = out.get(name, 0.0) + float(value)
    return out, missing


def _finite_or_none(value: float) -> float | None:
    """``value``, or None when it is NaN or infinite (not storable as JSON)."""
    return value if math.isfinite(value) else None


def _integer_key(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class ColumnProfile:
    """Summary of one column; see the module docstring. Build with ``ColumnProfile.start``."""

    name: str
    family: str
    dtype: str
    rows: int = 0
    missing: int = 0
    infinite: int = 0
    mean: float = 0.0
    m2: float = 0.0
    sketch: NumericSketch | None = None
    counts: dict[str, float] | None = None
    first_value: float | None = None
    last_value: float | None = None
    is_row_index: bool = True
    is_over_limit: bool = False
    # High cardinality only: rows of the values dropped from ``counts``, and how many values were
    # dropped (with repeats, so ``len(counts) + dropped_categories`` bounds the distinct values).
    other_count: float = 0.0
    dropped_categories: int = 0
    error: str | None = None
    # Current windows only: the family is the reference's, new categories beyond
    # MAX_UNSEEN_CATEGORIES are counted together in unseen_overflow.
    is_current: bool = False
    known_categories: frozenset[str] | None = field(default=None, repr=False)
    unseen_overflow: float = 0.0

    @classmethod
    def start(cls, name: str, series: pd.Series) -> ColumnProfile:
        """An empty profile whose family comes from ``series``'s dtype (errors are recorded, not raised)."""
        try:
            family = value_family(series)
        except TypeError as exc:
            return cls(name=name, family="unsupported", dtype=str(series.dtype), error=str(exc))
        return cls._empty(name, family, str(series.dtype))

    @classmethod
    def _empty(cls, name: str, family: str, dtype: str) -> ColumnProfile:
        numeric = family in ("float", "int", "datetime")
        return cls(
            name=name,
            family=family,
            dtype=dtype,
            sketch=NumericSketch() if numeric else None,
            counts=None if numeric else {},
        )

    @classmethod
    def for_current(cls, reference: ColumnProfile) -> ColumnProfile:
        """An empty accumulator for a current window, summarized the way ``reference`` is.

        A binned reference lends its grid, so the current window's CDF is exact at every reference
        edge and its memory stays bounded by the grid size, whatever the number of rows.
        """
        current = cls._empty(reference.name, reference.family, reference.dtype)
        current.is_current = True
        if reference.sketch is not None and current.sketch is not None and reference.sketch.is_binned:
            current.sketch = NumericSketch.on_edges(reference.sketch.edges)
        if reference.counts is not None:
            current.known_categories = frozenset(reference.counts)
        return current

    # -- derived values -------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Number of usable values (not missing, finite)."""
        return self.rows - self.missing - self.infinite

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0, as ``np.std``) of the finite values; NaN if none."""
        return math.sqrt(self.m2 / self.count) if self.count and self.sketch is not None else math.nan

    @property
    def kind(self) -> ColumnKind:
        """The column's kind in the reference, decided on everything added so far."""
        if self.excluded_reason is not None:
            return ColumnKind.EXCLUDED
        if self.family == "bool":
            return ColumnKind.BOOLEAN
        if self.family == "datetime":
            return ColumnKind.DATETIME
        if self.family == "string":
            return ColumnKind.CATEGORICAL
        if self.family == "int" and self.sketch is not None:
            distinct = self.sketch.distinct
            if distinct is not None and distinct <= INTEGER_CATEGORY_LIMIT:
                return ColumnKind.CATEGORICAL
        return ColumnKind.NUMERIC

    @property
    def excluded_reason(self) -> str | None:
        """Why the column is not compared (row index, free text, too many categories), or None."""
        if self.family == "int" and self.is_row_index and self.count >= 3 and self.count == self.rows:
            return "all values unique: a row index (each value is the previous one plus 1)"
        if self.family == "string":
            if self.is_over_limit and not self.counts:
                # Profiles stored before issue 11 dropped a high-cardinality column's counts.
                return f"high cardinality: more than {MAX_CATEGORIES} distinct values"
            distinct = len(self.counts or {}) + self.dropped_categories
            if self.count and distinct > TEXT_DISTINCT_SHARE * self.count:
                if distinct == self.count:
                    return "all values unique"
                return f"free text: {distinct} distinct values in {self.count} rows (more than half)"
        return None

    @property
    def integer_dtype(self) -> bool:
        """All values so far came from integer dtypes (numpy bins integer data at least 1 wide)."""
        return self.family == "int"

    def category_counts(self) -> dict[str, float]:
        """Count per category (``str`` keys); integer columns list each distinct value.

        A binned integer summary (more than 10,000 distinct values) lists its grid values and counts
        everything between them under ``OTHER_UNSEEN``, as does a current window past
        ``MAX_UNSEEN_CATEGORIES`` new categories.
        """
        if self.counts is not None:
            out = dict(self.counts)
            if self.unseen_overflow:
                out[OTHER_UNSEEN] = out.get(OTHER_UNSEEN, 0.0) + self.unseen_overflow
            return out
        if self.sketch is None:
            return {}
        if not self.sketch.is_exact:
            out = {
                _integer_key(v): float(c)
                for v, c in zip(self.sketch.edges, self.sketch.atoms, strict=True)
                if c
            }
            out[OTHER_UNSEEN] = float(self.sketch.gaps.sum())
            return out
        values, counts = self.sketch.values_and_counts()
        return {_integer_key(v): float(c) for v, c in zip(values, counts, strict=True)}

    # -- accumulation ---------------------------------------------------------------------------
    def add(self, series: pd.Series) -> None:
        """Add one chunk of this column's values. Raises ValueError/TypeError on unusable values.

        Callers (``DatasetProfile.add_chunk``, the check) record the error on the column and go on.
        """
        n = len(series)
        if self.error is not None:
            self.rows += n
            return
        if not self.is_current and self.count == 0 and self.rows == self.missing and series.notna().any():
            # Only nulls so far (their dtype says little): the first chunk with values decides.
            family = value_family(series)
            if family != self.family and {family, self.family} != {"int", "float"}:
                self._reset(family, str(series.dtype))
        if self.sketch is not None:
            self._add_numeric(series)
        else:
            self._add_categories(series)

    def _add_numeric(self, series: pd.Series) -> None:
        family = self.family
        if family == "int":
            chunk_family = value_family(series) if len(series.dropna()) else "int"
            if chunk_family == "float":
                family = self.family = "float"
            elif chunk_family not in ("int", "float"):
                raise TypeError(f"expected numbers, got {chunk_family} values ({series.dtype})")
        elif family == "float" and pd.api.types.is_bool_dtype(series.dtype):
            raise TypeError(f"expected numbers, got booleans ({series.dtype})")
        values = _numeric_values(series, family)
        missing = np.isnan(values)
        finite_mask = np.isfinite(values)
        n_missing = int(missing.sum())
        finite = values[finite_mask]
        n_inf = values.size - n_missing - finite.size
        if family == "int" and self.is_row_index:
            self._track_row_index(values, n_missing)
        self.rows += values.size
        self.missing += n_missing
        self.infinite += n_inf
        if finite.size:
            chunk_mean = float(finite.mean())
            chunk_m2 = float(np.square(finite - chunk_mean).sum())
            self._merge_moments(self.count - finite.size, finite.size, chunk_mean, chunk_m2)
            if self.sketch is None:
                raise TypeError(f"column {self.name!r} holds numbers but was profiled without a sketch")
            self.sketch.add_values(finite)

    def _track_row_index(self, values: np.ndarray, n_missing: int) -> None:
        if n_missing or values.size == 0:
            self.is_row_index = self.is_row_index and values.size == 0
            return
        steps_ok = bool(np.all(np.diff(values) == 1.0))
        joins = self.last_value is None or values[0] == self.last_value + 1.0
        self.is_row_index = steps_ok and joins
        if self.first_value is None:
            self.first_value = float(values[0])
        self.last_value = float(values[-1])

    def _merge_moments(self, n_a: int, n_b: int, mean_b: float, m2_b: float) -> None:
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * n_a * n_b / n

    def _add_categories(self, series: pd.Series) -> None:
        # Values of another type in a current window (0/1 for a boolean) count under their str().
        counts, missing = _category_counts(series)
        self.rows += len(series)
        self.missing += missing
        if self.counts is None:
            return
        tracked_limit = len(self.known_categories or ()) + MAX_UNSEEN_CATEGORIES
        for key, value in counts.items():
            if key in self.counts:
                self.counts[key] += value
            elif self.is_current and len(self.counts) >= tracked_limit:
                self.unseen_overflow += value
            else:
                self.counts[key] = value
        if not self.is_current:
            self._keep_top_categories()

    def _keep_top_categories(self) -> None:
        """Keep the ``MAX_CATEGORIES`` most frequent values; the rest go to ``other_count``."""
        if self.counts is None or len(self.counts) <= MAX_CATEGORIES:
            return
        self.is_over_limit = True
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        self.counts = dict(ranked[:MAX_CATEGORIES])
        dropped = ranked[MAX_CATEGORIES:]
        self.other_count += sum(value for _key, value in dropped)
        self.dropped_categories += len(dropped)

    def _reset(self, family: str, dtype: str) -> None:
        rows, missing = self.rows, self.missing
        fresh = ColumnProfile._empty(self.name, family, dtype)
        for name in ("family", "dtype", "sketch", "counts"):
            setattr(self, name, getattr(fresh, name))
        self.rows, self.missing = rows, missing

    def merge(self, other: ColumnProfile) -> None:
        """Add ``other`` (the same column, later rows) to this profile, in place.

        Raises ValueError if the two summarize the column differently (e.g. strings vs numbers).
        """
        if other.name != self.name:
            raise ValueError(f"cannot merge column {other.name!r} into {self.name!r}")
        if self.error is None and other.error is not None:
            self.error = other.error
        if self.count == 0 and self.rows == self.missing and other.count and other.family != self.family:
            self._reset(other.family, other.dtype)
        compatible = other.family == self.family or {self.family, other.family} == {"int", "float"}
        if not compatible and other.count:
            raise ValueError(f"column {self.name!r}: cannot merge {other.family} values into {self.family}")
        if self.sketch is not None and other.sketch is not None:
            if other.family == "float":
                self.family = "float"
            if other.count:
                self._merge_moments(self.count, other.count, other.mean, other.m2)
                self.sketch.merge(other.sketch)
            # A part with no rows (every row filtered out) neither breaks nor extends a row index.
            joins = self.last_value is None or other.first_value == self.last_value + 1.0 or not other.rows
            self.is_row_index = self.is_row_index and other.is_row_index and joins
            if self.first_value is None:
                self.first_value = other.first_value
            if other.last_value is not None:
                self.last_value = other.last_value
        elif self.counts is not None and other.counts is not None:
            self.is_over_limit = self.is_over_limit or other.is_over_limit
            for key, value in other.counts.items():
                self.counts[key] = self.counts.get(key, 0.0) + value
            self.other_count += other.other_count
            self.dropped_categories += other.dropped_categories
            self._keep_top_categories()
        self.rows += other.rows
        self.missing += other.missing
        self.infinite += other.infinite

    # -- serialization --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able dict (floats, ints, strings, lists); see the module docstring for size bounds."""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "excluded_reason": self.excluded_reason,
            "family": self.family,
            "dtype": self.dtype,
            "rows": self.rows,
            "missing": self.missing,
            "infinite": self.infinite,
            # Values near float's limit overflow the moments (NaN/inf), which JSON and PostgreSQL's
            # jsonb refuse: stored as null, read back as NaN (the check then reports the column).
            "mean": _finite_or_none(self.mean),
            "m2": _finite_or_none(self.m2),
            "std": _finite_or_none(self.std),
            "sketch": None if self.sketch is None else self.sketch.to_dict(),
            "counts": None if self.counts is None else dict(sorted(self.counts.items())),
            "first_value": self.first_value,
            "last_value": self.last_value,
            "is_row_index": self.is_row_index,
            "is_over_limit": self.is_over_limit,
            "other_count": self.other_count,
            "dropped_categories": self.dropped_categories,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ColumnProfile:
        """Inverse of ``to_dict`` (derived fields are recomputed). Raises KeyError/ValueError if malformed."""
        return cls(
            name=data["name"],
            family=data["family"],
            dtype=data["dtype"],
            rows=int(data["rows"]),
            missing=int(data["missing"]),
            infinite=int(data["infinite"]),
            mean=math.nan if data["mean"] is None else float(data["mean"]),
            m2=math.nan if data["m2"] is None else float(data["m2"]),
            sketch=None if data["sketch"] is None else NumericSketch.from_dict(data["sketch"]),
            counts=None if data["counts"] is None else {str(k): float(v) for k, v in data["counts"].items()},
            first_value=data["first_value"],
            last_value=data["last_value"],
            is_row_index=bool(data["is_row_index"]),
            is_over_limit=bool(data["is_over_limit"]),
            other_count=float(data.get("other_count", 0.0)),
            dropped_categories=int(data.get("dropped_categories", 0)),
            error=data["error"],
        )


@dataclass
class DatasetProfile:
    """Per-column profiles of one dataset (version), in the order of its columns."""

    rows: int = 0
    columns: dict[str, ColumnProfile] = field(default_factory=dict)

    def add_chunk(self, chunk: pd.DataFrame) -> None:
        """Add a chunk of rows. Columns are fixed by the first chunk; a column missing from a later
        chunk, or one whose values cannot be summarized, gets an ``error`` and the others go on."""
        if not self.columns and self.rows == 0:
            self.columns = {str(name): ColumnProfile.start(str(name), chunk[name]) for name in chunk.columns}
        names = {str(name): name for name in chunk.columns}
        for name, column in self.columns.items():
            if name not in names:
                column.error = column.error or f"column {name!r} is missing from a chunk"
                column.rows += len(chunk)
                continue
            try:
                column.add(chunk[names[name]])
            except (TypeError, ValueError, OverflowError) as exc:
                column.error = f"{type(exc).__name__}: {exc}"
        for name in names:
            if name not in self.columns:
                late = ColumnProfile.start(name, chunk[names[name]])
                late.error = f"column {name!r} is not in the first chunk"
                self.columns[name] = late
        self.rows += len(chunk)

    def merge(self, other: DatasetProfile) -> None:
        """Add the profile of later rows of the same dataset. Columns only on one side get an error."""
        for name, column in self.columns.items():
            if name in other.columns:
                try:
                    column.merge(other.columns[name])
                except ValueError as exc:
                    column.error = str(exc)
            else:
                column.error = column.error or f"column {name!r} is missing from the merged profile"
        for name, column in other.columns.items():
            if name not in self.columns:
                self.columns[name] = column
                column.error = column.error or f"column {name!r} is missing from the merged profile"
        self.rows += other.rows

    def to_dict(self) -> dict:
        """JSON-able dict: ``{"version", "rows", "columns": [column dicts]}``."""
        return {
            "version": PROFILE_VERSION,
            "rows": self.rows,
            "columns": [column.to_dict() for column in self.columns.values()],
        }

    @classmethod
    def from_dict(cls, data: dict) -> DatasetProfile:
        """Inverse of ``to_dict``. Raises ValueError for an unknown version."""
        if data.get("version") != PROFILE_VERSION:
            raise ValueError(f"unsupported profile version {data.get('version')!r}")
        columns = [ColumnProfile.from_dict(item) for item in data["columns"]]
        return cls(rows=int(data["rows"]), columns={c.name: c for c in columns})


def iter_chunks(
    data: pd.DataFrame | Iterable[pd.DataFrame], chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Yield ``data`` as DataFrames of at most ``chunk_rows`` rows (a DataFrame is sliced, an iterable
    of DataFrames is passed through). Raises TypeError for anything else."""
    if isinstance(data, pd.DataFrame):
        if len(data) == 0:
            yield data
        for start in range(0, len(data), chunk_rows):
            yield data.iloc[start : start + chunk_rows]
        return
    for chunk in data:
        if not isinstance(chunk, pd.DataFrame):
            raise TypeError(f"expected DataFrame chunks, got {type(chunk).__name__}")
        yield chunk


def build_profile(
    data: pd.DataFrame | Iterable[pd.DataFrame], *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> DatasetProfile:
    """Reference profile of ``data`` (a DataFrame, or an iterable of DataFrame chunks of one dataset).

    Memory beyond the current chunk is bounded by the profile's size (see the module docstring).
    Raises TypeError if a chunk is not a DataFrame; column problems are recorded per column.
    """
    profile = DatasetProfile()
    for chunk in iter_chunks(data, chunk_rows):
        profile.add_chunk(chunk)
    return profile

"""One drift check: stream a current window against a reference profile and decide per column.

``run_check(reference_profile, current_chunks, config)`` reads the current data chunk by chunk into a
current profile whose memory does not grow with the number of rows (numeric columns are counted on
the reference's grid, categories are capped, see ``monitoring.engine.profile``), then compares each
column with ``monitoring.engine.methods``.

Default method and threshold per column follow evidently 0.7's ``_get_default_stattest``
(``evidently/legacy/calculations/stattests/registry.py``), with ``n_ref`` the reference's usable values
and ``n_values`` the distinct values of reference and current together:

- numeric: ``n_values <= 5``: chi-square (``n_values > 2``) or Z when ``n_ref <= 1000``, else
  Jensen-Shannon; ``n_values > 5``: K-S when ``n_ref <= 1000``, else Wasserstein (normed);
- categorical and boolean: chi-square (``n_values > 2``) or Z when ``n_ref <= 1000``, else
  Jensen-Shannon;
- datetime: not compared by value (a later window always moves them); only the missing rate,
  unless a method is set for the column, which then compares seconds since the epoch.

Beyond evidently (issue 4): a column whose current window has fewer than ``min_sample_size`` usable
values is ``insufficient_data``, not drift; a change in the missing rate (null, NaN, NaT or +-inf) is
drift when significant (``missing_rate_alpha``) and at least ``missing_rate_min_change``; categories
absent from the reference are reported by name and share; a column that fails reports ``error`` and
the others go on; the dataset drifts when the share of drifted columns among those with a verdict
(``ok`` or ``drift``) is at least ``drift_share``.

Column rules that must not change verdicts by accident (issue 11):

- a column with no values on either side is ``no_data``: it has no verdict and does not dilute the
  dataset share (a column emptied or filled in the current window is still missing-rate drift);
- a categorical with more than ``top_k`` (default 50) reference values, including a high-cardinality
  one (more than ``profile.MAX_CATEGORIES`` values, skipped before issue 11), is compared on the
  reference's ``top_k`` most frequent values plus one "other" bucket, and the result reports the
  share of "other" on both sides (``other_share``, ``reference_other_share``);
- integer columns with at most ``profile.INTEGER_CATEGORY_LIMIT`` = 20 distinct reference values are
  categories; ``column_kinds`` overrides the kind per column ("categorical" or "numeric");
- ``column_kinds`` may also declare a column "text" (documents) or "embedding" (vectors): the
  profile-based tests cannot compare those, so ``run_check`` leaves them ``skipped`` and
  ``compare_raw_columns`` tests them on raw rows by MMD with a permutation test
  (``monitoring.engine.embedding``), whose results ``run_check`` takes as ``raw_results`` and
  counts like any other column's;
- ``column_kinds`` may name an **image** ("image"): not a column but a name for the columns the
  model reads as one image (``image_columns``: its pixels, set from the model's signature by the
  caller). ``compare_raw_columns`` embeds both sides' sampled rows with the model's own
  penultimate layer (an ``embed`` function the caller gives) and tests the vectors as an
  embedding column; the result carries the image's name and counts like a column;
- ``multiple_testing="bh"``: the p-values of the columns tested by K-S, chi-square or Z are adjusted
  by Benjamini & Hochberg (1995), "Controlling the false discovery rate", JRSS B 57: 289-300, and each
  adjusted p-value is compared with the column's threshold (distance methods and the missing-rate
  test are left as they are); ``weights`` weigh each column in the dataset share (default 1).

``DEFAULT_MIN_SAMPLE_SIZE`` = 2,000 comes from calibration with no drift and a reference just above
1,000 rows (where the distance methods take over): the normed Wasserstein distance then crosses 0.1
in 1-4 % of 2,000-value windows of normal, lognormal, exponential, uniform and Student-t(3) data,
against 4-9 % at 1,000 and 11 % (normal) at 500. PSI and Jensen-Shannon (up to 20 categories) stay
far lower. ``tests/monitoring/test_engine.py`` checks the rates at this size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from monitoring.engine import embedding as embedding_engine
from monitoring.engine import methods
from monitoring.engine import multivariate as multivariate_engine
from monitoring.engine.profile import (
    DEFAULT_CHUNK_ROWS,
    ColumnKind,
    ColumnProfile,
    DatasetProfile,
    iter_chunks,
)
from monitoring.engine.sketch import NumericSketch

DEFAULT_DRIFT_SHARE = 0.5  # evidently DataDriftPreset's default
DEFAULT_MIN_SAMPLE_SIZE = 2_000
DEFAULT_MISSING_RATE_ALPHA = 0.001
DEFAULT_MISSING_RATE_MIN_CHANGE = 0.05
SMALL_REFERENCE_ROWS = 1_000  # evidently: p-value tests at or below, distances above
FEW_VALUES = 5  # evidently: numeric columns with at most this many values are tested as categories
MAX_UNSEEN_REPORTED = 20
RAW_ROWS_PENDING = "compared on raw rows (text or embedding): no result yet"
METHODS = ("ks", "wasserstein", "psi", "jensenshannon", "chisquare", "z", "missing_rate")
COLUMN_KINDS = ("categorical", "numeric", *embedding_engine.KINDS, embedding_engine.IMAGE)
# (the rows to embed) -> one vector per row: a model's own embedding of images (compare_raw_columns).
Embed = Callable[[pd.DataFrame], np.ndarray]
NO_EMBEDDER = "no model runtime in this process to embed the images"
MULTIPLE_TESTING = ("none", "bh")
# 50 values + "other": under no drift the Jensen-Shannon distance of a 2,000-row window stays near
# sqrt(k / (8 n ln 2)) ~ 0.07, well below its 0.12 threshold (benchmarks/bench_drift_rules.py).
DEFAULT_TOP_K = 50
OTHER = "<other>"
_CATEGORY_METHODS = frozenset({"psi", "jensenshannon", "chisquare", "z", "missing_rate"})


class Status(StrEnum):
    """A column's outcome: tested (``ok``/``drift``), or why it has no verdict."""

    OK = "ok"
    DRIFT = "drift"
    INSUFFICIENT_DATA = "insufficient_data"
    SKIPPED = "skipped"
    ERROR = "error"
    NO_DATA = "no_data"


# The statuses that give a verdict: the drift share is the drifted fraction of these columns.
TESTED = frozenset({Status.OK, Status.DRIFT})


def count_tested(results: Iterable[Mapping[str, Any]]) -> int:
    """How many stored column results (``ColumnResult.to_dict``) got a verdict.

    The one count of "columns tested" (issue 8): a result without a ``status`` predates statuses,
    when every stored column had been tested, so it counts as ``ok``.
    """
    return sum(1 for result in results if result.get("status", Status.OK) in TESTED)


class ConfigError(ValueError):
    """An invalid ``CheckConfig`` value; ``field`` names the config field at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class CheckConfig:
    """What to compare and how; every field has evidently's default or ours (see the module docstring).

    ``methods`` / ``thresholds`` override per column (method names in ``METHODS``); ``columns`` limits
    the check to those reference columns (None: all); ``column_kinds`` maps a column to "categorical"
    or "numeric"; ``top_k`` is the number of values a high-cardinality column is compared on;
    ``multiple_testing`` is "none" or "bh"; ``weights`` maps a column to its weight (>= 0) in the
    dataset share; ``multivariate`` names the multivariate tests to run beside the columns' (none by
    default; ``monitoring.engine.multivariate.TESTS``) on at most ``multivariate_max_rows`` rows a
    side; ``image_columns`` maps each name ``column_kinds`` declares an "image" to the columns that
    hold its pixels. Raises ``ConfigError`` (a ValueError naming the field) on an invalid value.
    """

    drift_share: float = DEFAULT_DRIFT_SHARE
    min_sample_size: int = DEFAULT_MIN_SAMPLE_SIZE
    methods: Mapping[str, str] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    columns: tuple[str, ...] | None = None
    missing_rate_alpha: float = DEFAULT_MISSING_RATE_ALPHA
    missing_rate_min_change: float = DEFAULT_MISSING_RATE_MIN_CHANGE
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    column_kinds: Mapping[str, str] = field(default_factory=dict)
    top_k: int = DEFAULT_TOP_K
    multiple_testing: str = "none"
    weights: Mapping[str, float] = field(default_factory=dict)
    multivariate: tuple[str, ...] = ()
    multivariate_max_rows: int = multivariate_engine.DEFAULT_MAX_ROWS
    image_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _is_number(self.drift_share) or not 0 < self.drift_share <= 1:
            raise ConfigError("drift_share", f"drift_share must be in (0, 1], got {self.drift_share}")
        if not _is_int(self.min_sample_size) or self.min_sample_size < 1:
            raise ConfigError(
                "min_sample_size", f"min_sample_size must be an integer >= 1, got {self.min_sample_size}"
            )
        if not _is_int(self.chunk_rows) or self.chunk_rows < 1:
            raise ConfigError("chunk_rows", f"chunk_rows must be an integer >= 1, got {self.chunk_rows}")
        if not 0 < self.missing_rate_alpha < 1 or not 0 <= self.missing_rate_min_change <= 1:
            raise ConfigError(
                "missing_rate_alpha",
                "missing_rate_alpha must be in (0, 1) and missing_rate_min_change in [0, 1]",
            )
        for column, method in self.methods.items():
            if method not in METHODS:
                raise ConfigError(
                    "methods", f"unknown method {method!r} for column {column!r}; choose from {METHODS}"
                )
        for column, threshold in self.thresholds.items():
            if not (_is_number(threshold) and math.isfinite(threshold) and threshold >= 0):
                raise ConfigError(
                    "thresholds", f"threshold for column {column!r} must be a finite number >= 0"
                )
        for column, kind in self.column_kinds.items():
            if kind not in COLUMN_KINDS:
                raise ConfigError(
                    "column_kinds", f"unknown kind {kind!r} for column {column!r}; choose from {COLUMN_KINDS}"
                )
        images = {name for name, kind in self.column_kinds.items() if kind == embedding_engine.IMAGE}
        given = sorted(self.image_columns) if isinstance(self.image_columns, Mapping) else self.image_columns
        if not isinstance(self.image_columns, Mapping) or given != sorted(images):
            raise ConfigError(
                "column_kinds",
                f"each image needs its pixel columns: images {sorted(images)}, "
                f"pixel columns given for {given!r}",
            )
        for name, pixels in self.image_columns.items():
            if (
                not isinstance(pixels, tuple | list)
                or not pixels
                or not all(isinstance(c, str) and c for c in pixels)
            ):
                raise ConfigError(
                    "column_kinds", f"image {name!r}: its pixel columns must be a list of names"
                )
        if not _is_int(self.top_k) or not 1 <= self.top_k <= 1000:
            raise ConfigError("top_k", f"top_k must be an integer from 1 to 1000, got {self.top_k}")
        if self.multiple_testing not in MULTIPLE_TESTING:
            raise ConfigError(
                "multiple_testing",
                f"unknown multiple_testing {self.multiple_testing!r}; choose from {MULTIPLE_TESTING}",
            )
        for column, weight in self.weights.items():
            if not (_is_number(weight) and math.isfinite(weight) and weight >= 0):
                raise ConfigError("weights", f"weight for column {column!r} must be a finite number >= 0")
        tests = self.multivariate
        if (
            not isinstance(tests, tuple | list)
            or not all(test in multivariate_engine.TESTS for test in tests)
            or len(set(tests)) != len(tests)
        ):
            raise ConfigError(
                "multivariate",
                f"multivariate must be a list of distinct tests from {multivariate_engine.TESTS}, "
                f"got {self.multivariate!r}",
            )
        if not _is_int(self.multivariate_max_rows) or not 100 <= self.multivariate_max_rows <= 1_000_000:
            raise ConfigError(
                "multivariate_max_rows",
                "multivariate_max_rows must be an integer from 100 to 1000000, "
                f"got {self.multivariate_max_rows}",
            )

    @classmethod
    def from_dict(cls, data: Mapping) -> CheckConfig:
        """Config from a JSON-able mapping with the field names. Raises ValueError on unknown keys."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(sorted(unknown)[0], f"unknown config keys: {sorted(unknown)}")
        values = dict(data)
        if values.get("columns") is not None:
            values["columns"] = tuple(values["columns"])
        if isinstance(values.get("multivariate"), list):
            values["multivariate"] = tuple(values["multivariate"])
        if isinstance(values.get("image_columns"), Mapping):
            values["image_columns"] = {
                name: tuple(pixels) if isinstance(pixels, list) else pixels
                for name, pixels in values["image_columns"].items()
            }
        return cls(**values)

    def to_dict(self) -> dict:
        """JSON-able dict of the fields."""
        data = asdict(self)
        for name in ("methods", "thresholds", "column_kinds", "weights"):
            data[name] = dict(getattr(self, name))
        data["columns"] = None if self.columns is None else list(self.columns)
        data["multivariate"] = list(self.multivariate)
        data["image_columns"] = {name: list(pixels) for name, pixels in self.image_columns.items()}
        return data


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ColumnResult:
    """The verdict on one column.

    ``score`` is the p-value of a test or the distance, compared with ``threshold`` by evidently's
    rule (``methods.is_drift``); ``statistic`` is K-S D, chi-square or z. ``is_exact`` is False when a
    binned summary was used; ``error_bound`` then bounds the error of D (K-S) or of the distance
    (Wasserstein), or is None where no bound is derived (PSI, Jensen-Shannon). Rates are shares of
    rows in [0, 1]; ``unseen_categories`` lists up to 20 ``{"value", "share"}`` of the current window.
    A high-cardinality column was compared on its ``top_k`` values plus "other", whose shares of the
    reference and current values are ``reference_other_share`` / ``other_share``. ``adjusted_score``
    is the Benjamini-Hochberg adjusted p-value when the check asked for it (then compared with the
    threshold instead of ``score``); ``weight`` is the column's weight in the dataset share.
    """

    column: str
    kind: str
    status: Status
    message: str = ""
    method: str | None = None
    score: float | None = None
    threshold: float | None = None
    statistic: float | None = None
    is_exact: bool = True
    error_bound: float | None = None
    reference_count: int = 0
    current_count: int = 0
    reference_missing_rate: float | None = None
    current_missing_rate: float | None = None
    missing_rate_p_value: float | None = None
    is_missing_rate_drift: bool = False
    reference_inf_count: int = 0
    current_inf_count: int = 0
    unseen_categories: tuple[dict, ...] = ()
    unseen_share: float | None = None
    top_k: int | None = None
    other_share: float | None = None
    reference_other_share: float | None = None
    adjusted_score: float | None = None
    weight: float = 1.0

    @property
    def is_drifted(self) -> bool:
        """True when the column drifted (by its value test or its missing rate)."""
        return self.status == Status.DRIFT

    def to_dict(self) -> dict:
        """JSON-able dict; non-finite floats become None."""
        data = asdict(self)
        data["status"] = self.status.value
        data["is_drifted"] = self.is_drifted
        data["unseen_categories"] = [dict(item) for item in self.unseen_categories]
        return {key: _json_value(value) for key, value in data.items()}


@dataclass(frozen=True)
class CheckResult:
    """Per-column results and the dataset verdict (share of drifted columns >= ``drift_share``)."""

    columns: tuple[ColumnResult, ...]
    reference_rows: int
    current_rows: int
    drift_share: float
    number_of_columns: int
    number_of_drifted_columns: int
    share_of_drifted_columns: float
    is_dataset_drift: bool

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the drifted columns, in column order."""
        return [result.column for result in self.columns if result.is_drifted]

    def column(self, name: str) -> ColumnResult:
        """The result for one column. Raises KeyError if the check has no such column."""
        for result in self.columns:
            if result.column == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict:
        """JSON-able dict with a list of column dicts."""
        return {
            "columns": [result.to_dict() for result in self.columns],
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drift_share": self.drift_share,
            "number_of_columns": self.number_of_columns,
            "number_of_drifted_columns": self.number_of_drifted_columns,
            "share_of_drifted_columns": self.share_of_drifted_columns,
            "is_dataset_drift": self.is_dataset_drift,
        }


def _json_value(value: object) -> object:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value


def run_check(
    reference_profile: DatasetProfile,
    current_chunks: pd.DataFrame | Iterable[pd.DataFrame],
    config: CheckConfig | Mapping | None = None,
    *,
    raw_results: Iterable[ColumnResult] = (),
) -> CheckResult:
    """Compare a current window with a reference profile, column by column.

    ``current_chunks``: a DataFrame (read in slices of ``config.chunk_rows``) or an iterable of
    DataFrame chunks with the reference's column names; it is read once. Memory beyond one chunk is
    bounded by the reference profile's size. ``raw_results``: the results of text and embedding
    columns and images (``compare_raw_columns``), used as they are and counted in the dataset
    verdict; it is iterated after the chunks, and an image's result follows the columns (its name
    is none of theirs). Raises
    ValueError for an invalid config and TypeError if a chunk is not a DataFrame; everything about
    a column is reported in its result.
    """
    if not isinstance(config, CheckConfig):
        config = CheckConfig.from_dict(config or {})
    accumulators = current_accumulators(reference_profile, config)
    rows = 0
    for chunk in iter_chunks(current_chunks, config.chunk_rows):
        rows += len(chunk)
        add_current_chunk(accumulators, chunk)
    return evaluate_current(reference_profile, accumulators, rows, config, raw_results=raw_results)


def current_accumulators(reference_profile: DatasetProfile, config: CheckConfig) -> dict[str, ColumnProfile]:
    """Empty current profiles (``ColumnProfile.for_current``) of the columns ``config`` compares.

    ``run_check`` and ``monitoring.engine.windows`` (one set per window or segment) fill them with
    ``add_current_chunk`` and judge them with ``evaluate_current``.
    """
    accumulators: dict[str, ColumnProfile] = {}
    names = list(config.columns) if config.columns is not None else list(reference_profile.columns)
    for name in names:
        reference = reference_profile.columns.get(name)
        if name in raw_row_columns(config):
            continue  # documents and vectors are not profiled (compare_raw_columns)
        if reference is not None and reference.error is None and reference.kind != ColumnKind.EXCLUDED:
            accumulators[name] = ColumnProfile.for_current(reference)
    return accumulators


def add_current_chunk(accumulators: Mapping[str, ColumnProfile], chunk: pd.DataFrame) -> None:
    """Add one chunk of current rows to each accumulator; a column missing from the chunk or with
    unusable values gets an ``error`` (reported on its result) and the others go on."""
    by_name = {str(label): label for label in chunk.columns}
    for name, current in accumulators.items():
        if current.error is not None:
            continue
        if name not in by_name:
            current.error = f"column {name!r} is missing from the current data"
            continue
        try:
            current.add(chunk[by_name[name]])
        except Exception as exc:  # one column's bad values must not stop the others
            current.error = f"{type(exc).__name__}: {exc}"


def evaluate_current(
    reference_profile: DatasetProfile,
    accumulators: Mapping[str, ColumnProfile],
    rows: int,
    config: CheckConfig,
    *,
    raw_results: Iterable[ColumnResult] = (),
) -> CheckResult:
    """The verdict on filled accumulators of ``rows`` current rows: each column, then the dataset."""
    given = {result.column: result for result in raw_results}
    names = list(config.columns) if config.columns is not None else list(reference_profile.columns)
    results = []
    for name in names:
        reference = reference_profile.columns.get(name)
        if name in given:  # a text or embedding column, tested on raw rows
            results.append(given[name])
            continue
        try:
            results.append(_evaluate(name, reference, accumulators.get(name), rows, config))
        except Exception as exc:  # report it on the column; the other columns keep their verdicts
            kind = reference.kind.value if reference is not None else "unknown"
            results.append(ColumnResult(name, kind, Status.ERROR, f"{type(exc).__name__}: {exc}"))
    results.extend(given[name] for name in config.image_columns if name in given and name not in names)
    return _verdict(results, config, reference_profile.rows, rows)


def _verdict(
    results: list[ColumnResult], config: CheckConfig, reference_rows: int, current_rows: int
) -> CheckResult:
    """The dataset verdict over ``results``: Benjamini-Hochberg when asked, the weights, and the
    weighted share of drifted tested columns against ``config.drift_share``."""
    if config.multiple_testing == "bh":
        results = _benjamini_hochberg(results)
    results = [replace(r, weight=float(config.weights.get(r.column, 1.0))) for r in results]
    tested = [r for r in results if r.status in TESTED]
    drifted = sum(r.is_drifted for r in tested)
    total_weight = sum(r.weight for r in tested)
    share = sum(r.weight for r in tested if r.is_drifted) / total_weight if total_weight else 0.0
    return CheckResult(
        columns=tuple(results),
        reference_rows=reference_rows,
        current_rows=current_rows,
        drift_share=config.drift_share,
        number_of_columns=len(tested),
        number_of_drifted_columns=drifted,
        share_of_drifted_columns=share,
        is_dataset_drift=bool(tested) and share >= config.drift_share,
    )


def raw_row_columns(config: CheckConfig) -> dict[str, str]:
    """The columns ``config`` declares text or embedding, and its images: ``{name: kind}`` (those
    ``compare_raw_columns`` tests)."""
    raw = (*embedding_engine.KINDS, embedding_engine.IMAGE)
    return {name: kind for name, kind in config.column_kinds.items() if kind in raw}


def raw_data_columns(config: CheckConfig) -> list[str]:
    """The data columns ``compare_raw_columns`` reads: the text and embedding columns, and each
    image's pixel columns, in config order without repeats (what a sample of raw rows must keep)."""
    names: dict[str, None] = {}
    for name, kind in raw_row_columns(config).items():
        for column in config.image_columns[name] if kind == embedding_engine.IMAGE else (name,):
            names[column] = None
    return list(names)


def compare_raw_columns(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    config: CheckConfig,
    *,
    deadline: float | None = None,
    embed: Embed | None = None,
) -> list[ColumnResult]:
    """Test each text or embedding column and each image of ``config`` on the raw rows of both
    sides (``embedding.compare_column`` / ``compare_images``: MMD with a permutation test, at most
    ``config.multivariate_max_rows`` and 1,000 rows a side, seeded; the column's threshold or 0.05
    as alpha). An image's rows are embedded by ``embed`` (the model's penultimate layer); without
    one its result is ``skipped``. A column absent from either side is an error result naming the
    side (for an image, its first missing pixel columns)."""
    out = []
    max_rows = min(config.multivariate_max_rows, embedding_engine.DEFAULT_MAX_ROWS)
    for name, kind in raw_row_columns(config).items():
        wanted = list(config.image_columns[name]) if kind == embedding_engine.IMAGE else [name]
        missing = [
            (side, [column for column in wanted if column not in frame])
            for side, frame in (("reference", reference), ("current", current))
        ]
        missing = [(side, columns) for side, columns in missing if columns]
        if missing:
            side, columns = missing[0]
            what = (
                f"column {name!r}"
                if kind != embedding_engine.IMAGE
                else (f"image {name!r}: column(s) {', '.join(map(repr, columns[:5]))}")
            )
            out.append(ColumnResult(name, kind, Status.ERROR, f"{what} missing from the {side} data"))
            continue
        alpha = float(config.thresholds.get(name, embedding_engine.DEFAULT_ALPHA))
        if kind == embedding_engine.IMAGE:
            if embed is None:
                out.append(ColumnResult(name, kind, Status.SKIPPED, NO_EMBEDDER))
                continue
            outcome = embedding_engine.compare_images(
                reference[wanted], current[wanted], embed, max_rows=max_rows, alpha=alpha, deadline=deadline
            )
        else:
            outcome = embedding_engine.compare_column(
                kind, reference[name], current[name], max_rows=max_rows, alpha=alpha, deadline=deadline
            )
        status = {"ok": Status.OK, "drift": Status.DRIFT, "insufficient_data": Status.INSUFFICIENT_DATA}.get(
            outcome.status, Status.ERROR
        )
        message = outcome.message
        if kind == embedding_engine.IMAGE and outcome.dimensions:
            message += f"; the model's {outcome.dimensions}-dimensional embeddings of the images"
        out.append(
            ColumnResult(
                name,
                kind,
                status,
                message,
                method="mmd" if outcome.p_value is not None else None,
                score=outcome.p_value,
                threshold=alpha,
                statistic=outcome.mmd2,
                reference_count=outcome.reference_rows,
                current_count=outcome.current_rows,
            )
        )
    return out


# -- one column -----------------------------------------------------------------------------------
def _evaluate(
    name: str,
    reference: ColumnProfile | None,
    current: ColumnProfile | None,
    rows: int,
    config: CheckConfig,
) -> ColumnResult:
    if reference is None:
        return ColumnResult(name, "unknown", Status.ERROR, f"column {name!r} is not in the reference profile")
    if config.column_kinds.get(name) in embedding_engine.KINDS:
        # Documents and vectors are compared on raw rows (``compare_raw_columns``), not profiles.
        return ColumnResult(name, config.column_kinds[name], Status.SKIPPED, RAW_ROWS_PENDING)
    kind = reference.kind
    if reference.error is not None:
        return ColumnResult(name, kind.value, Status.ERROR, f"reference: {reference.error}")
    if kind == ColumnKind.EXCLUDED:
        return ColumnResult(name, kind.value, Status.SKIPPED, reference.excluded_reason or "excluded")
    kind = _overridden_kind(name, reference, config)
    if current is None or current.error is not None:
        message = current.error if current is not None else "no current data"
        return ColumnResult(name, kind.value, Status.ERROR, f"current: {message}")
    base: dict[str, Any] = {
        "column": name,
        "kind": kind.value,
        "reference_count": reference.count,
        "current_count": current.count,
        "reference_inf_count": reference.infinite,
        "current_inf_count": current.infinite,
    }
    if rows < config.min_sample_size:
        message = f"the current window has {rows} rows; the minimum is {config.min_sample_size}"
        return ColumnResult(status=Status.INSUFFICIENT_DATA, message=message, **base)
    if reference.count == 0 and current.count == 0:
        # Nothing to compare on either side: no verdict, so the column cannot dilute the share.
        base.update(reference_missing_rate=1.0, current_missing_rate=1.0)
        return ColumnResult(
            status=Status.NO_DATA, message="no values in the reference or the current data", **base
        )

    missing = _missing_rate(reference, current, config)
    base.update(missing.fields)
    method = config.methods.get(name)
    missing_only = method == "missing_rate" or (kind == ColumnKind.DATETIME and method is None)
    if not missing_only and min(reference.count, current.count) == 0 and not missing.is_drift:
        side = "the reference" if reference.count == 0 else "the current window"
        return ColumnResult(status=Status.INSUFFICIENT_DATA, message=f"{side} has no values", **base)
    if missing_only or (missing.is_drift and min(reference.count, current.count) == 0):
        return _missing_only_result(kind, missing, base, config)
    if current.count < config.min_sample_size:
        message = f"{current.count} current values; the minimum is {config.min_sample_size}"
        if missing.is_drift:
            return _missing_only_result(kind, missing, base, config, note=message)
        return ColumnResult(status=Status.INSUFFICIENT_DATA, message=message, **base)

    top = _top_k(reference, current, config.top_k) if _is_many_valued(kind, reference, config.top_k) else None
    outcome = _value_test(kind, reference, current, method, top)
    if not math.isfinite(outcome.score):
        # A NaN score compares as "no drift": values near float's limit (an overflowed std) would
        # pass as ok. Reported on the column instead (``evaluate_current`` keeps the others).
        raise ValueError(
            f"{outcome.method}: the score is not a finite number (reference std {reference.std:.4g}); "
            "the values are too large to compare, rescale the column"
        )
    threshold = config.thresholds.get(name, methods.DEFAULT_THRESHOLDS[outcome.method])
    value_drift = methods.is_drift(outcome.method, outcome.score, threshold)
    # A pruned profile no longer knows every reference value: "unseen" would be a guess.
    unseen, unseen_share = _unseen(kind, reference, current) if not reference.is_over_limit else ((), None)
    parts = [_describe(outcome.method, outcome.score, threshold, value_drift)]
    if missing.is_drift:
        parts.append(missing.message)
    if unseen_share:
        parts.append(f"{unseen_share:.1%} of current values are categories unseen in the reference")
    if top is not None:
        base.update(top_k=top.k, other_share=top.current_other, reference_other_share=top.reference_other)
        parts.append(
            f"compared on the top {top.k} values; other values: {top.reference_other:.1%} of the "
            f"reference, {top.current_other:.1%} of the current window"
        )
    return ColumnResult(
        status=Status.DRIFT if value_drift or missing.is_drift else Status.OK,
        message="; ".join(parts),
        method=outcome.method,
        score=outcome.score,
        threshold=threshold,
        statistic=outcome.statistic,
        is_exact=outcome.is_exact,
        error_bound=outcome.error_bound,
        unseen_categories=unseen,
        unseen_share=unseen_share,
        **base,
    )


@dataclass(frozen=True)
class _Missing:
    fields: dict
    is_drift: bool
    p_value: float
    message: str


def _missing_rate(reference: ColumnProfile, current: ColumnProfile, config: CheckConfig) -> _Missing:
    ref_missing, cur_missing = reference.missing + reference.infinite, current.missing + current.infinite
    ref_rate = ref_missing / reference.rows if reference.rows else None
    cur_rate = cur_missing / current.rows if current.rows else None
    if ref_rate is None or cur_rate is None:
        fields = {"reference_missing_rate": ref_rate, "current_missing_rate": cur_rate}
        return _Missing(fields, False, 1.0, "")
    test = methods.missing_rate_test(ref_missing, reference.rows, cur_missing, current.rows)
    is_drift = (
        test.score < config.missing_rate_alpha and abs(cur_rate - ref_rate) >= config.missing_rate_min_change
    )
    fields = {
        "reference_missing_rate": ref_rate,
        "current_missing_rate": cur_rate,
        "missing_rate_p_value": test.score,
        "is_missing_rate_drift": is_drift,
    }
    message = f"missing rate {ref_rate:.1%} -> {cur_rate:.1%} (p = {test.score:.3g})"
    return _Missing(fields, is_drift, test.score, message)


def _missing_only_result(
    kind: ColumnKind, missing: _Missing, base: dict[str, Any], config: CheckConfig, note: str = ""
) -> ColumnResult:
    reason = "datetime values are not compared by default" if kind == ColumnKind.DATETIME else ""
    parts = [part for part in (note, reason, "missing rate compared", missing.message) if part]
    return ColumnResult(
        status=Status.DRIFT if missing.is_drift else Status.OK,
        message="; ".join(parts),
        method="missing_rate",
        score=missing.p_value,
        threshold=config.missing_rate_alpha,
        **base,
    )


def _describe(method: str, score: float, threshold: float, drifted: bool) -> str:
    if method in methods.P_VALUE_METHODS:
        op = ("<=" if method == "ks" else "<") if drifted else ">"
        return f"{method} p-value {score:.4g} {op} {threshold:.4g}"
    return f"{method} {score:.4g} {'>=' if drifted else '<'} {threshold:.4g}"


def _value_counts(column: ColumnProfile) -> dict[str, float]:
    # A binned integer column lists its grid values and lumps the rest as one unseen category.
    return column.category_counts()


def _sort_key(key: str) -> tuple[int, float, str]:
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def _sketches(reference: ColumnProfile, current: ColumnProfile) -> tuple[NumericSketch, NumericSketch]:
    """Both sides' numeric sketches; ValueError (the column's error) if a profile lacks one."""
    if reference.sketch is None or current.sketch is None:
        raise ValueError("a numeric column's profile has no sketch on one side")
    return reference.sketch, current.sketch


def _overridden_kind(name: str, reference: ColumnProfile, config: CheckConfig) -> ColumnKind:
    """The reference's kind, or the one ``config.column_kinds`` sets. Raises ValueError when the
    values cannot be read that way (strings as numbers, binned numbers as categories)."""
    wanted = config.column_kinds.get(name)
    if wanted is None:
        return reference.kind
    if wanted == "numeric":
        if reference.sketch is None or reference.family == "datetime":
            raise ValueError(
                f"column {name!r} holds {reference.family} values and cannot be compared as numbers"
            )
        return ColumnKind.NUMERIC
    if reference.counts is None and (reference.sketch is None or not reference.sketch.is_exact):
        raise ValueError(
            f"column {name!r} has more than 10000 distinct values and cannot be compared as categories"
        )
    return ColumnKind.CATEGORICAL


def _is_many_valued(kind: ColumnKind, reference: ColumnProfile, top_k: int) -> bool:
    """A categorical with more than ``top_k`` reference values: compared on its top k + "other".

    Sparse categories make chi-square and Jensen-Shannon unreliable: with 10,000 values in a
    27,000-row reference, a 5,000-row window of the same rows "drifted" in 45 % of trials
    (benchmarks/bench_drift_rules.py); lumping the tail into one bucket keeps the rates nominal.
    """
    if kind != ColumnKind.CATEGORICAL or reference.counts is None:
        return False
    return reference.is_over_limit or sum(1 for value in reference.counts.values() if value) > top_k


@dataclass(frozen=True)
class _TopK:
    """Counts on the reference's ``k`` most frequent values plus ``OTHER``, on both sides."""

    k: int
    reference_counts: dict[str, float]
    current_counts: dict[str, float]
    reference_other: float
    current_other: float


def _top_k(reference: ColumnProfile, current: ColumnProfile, k: int) -> _TopK:
    ranked = sorted(reference.category_counts().items(), key=lambda item: (-item[1], item[0]))
    top = [key for key, _value in ranked[:k]]
    cur_all = current.category_counts()
    ref = {key: float(value) for key, value in ranked[:k]}
    cur = {key: float(cur_all.get(key, 0.0)) for key in top}
    # "other" is everything else with a value, including the values the profile no longer tracks.
    ref[OTHER] = max(reference.count - sum(ref.values()), 0.0)
    cur[OTHER] = max(current.count - sum(cur.values()), 0.0)
    return _TopK(
        k=len(top),
        reference_counts=ref,
        current_counts=cur,
        reference_other=ref[OTHER] / reference.count if reference.count else 0.0,
        current_other=cur[OTHER] / current.count if current.count else 0.0,
    )


def _benjamini_hochberg(results: list[ColumnResult]) -> list[ColumnResult]:
    """Adjust the p-values of the value tests (K-S, chi-square, Z) of the tested columns together.

    Adjusted p_(i) = min over j >= i of p_(j) * m / j (the step-up rule as adjusted p-values, as in
    R's ``p.adjust(method="BH")``), capped at 1; a column's value verdict is then its adjusted
    p-value against its threshold. A missing-rate drift stands on its own test.
    """
    indices = [
        i
        for i, r in enumerate(results)
        if r.status in TESTED and r.method in methods.P_VALUE_METHODS and r.score is not None
    ]
    if not indices:
        return results
    p_values = np.array([results[i].score for i in indices], dtype=float)
    m = p_values.size
    order = np.argsort(p_values, kind="stable")
    scaled = p_values[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    out = list(results)
    for i, q in zip(indices, adjusted, strict=True):
        r = results[i]
        value_drift = methods.is_drift(str(r.method), float(q), float(r.threshold or 0.0))
        drifted = value_drift or r.is_missing_rate_drift
        verdict = "drift" if value_drift else "no drift"
        message = f"{r.message}; Benjamini-Hochberg adjusted p-value {float(q):.4g} ({verdict})"
        out[i] = replace(
            r, adjusted_score=float(q), status=Status.DRIFT if drifted else Status.OK, message=message
        )
    return out


def _value_test(
    kind: ColumnKind,
    reference: ColumnProfile,
    current: ColumnProfile,
    method: str | None,
    top: _TopK | None = None,
) -> methods.MethodResult:
    numeric = reference.sketch is not None and kind != ColumnKind.CATEGORICAL
    if numeric:
        ref_sketch, cur_sketch = _sketches(reference, current)
        both_exact = ref_sketch.is_exact and cur_sketch.is_exact
        if both_exact:
            values = np.union1d(ref_sketch.values_and_counts()[0], cur_sketch.values_and_counts()[0])
            n_values = values.size
        else:
            n_values = FEW_VALUES + 1
    else:
        if top is not None:
            ref_counts, cur_counts = top.reference_counts, top.current_counts
        else:
            ref_counts, cur_counts = _value_counts(reference), _value_counts(current)
        n_values = len({k for k, v in ref_counts.items() if v} | {k for k, v in cur_counts.items() if v})
    small = reference.count <= SMALL_REFERENCE_ROWS
    if method is None:
        if numeric and n_values > FEW_VALUES:
            method = "ks" if small else "wasserstein"
        elif small:
            method = "chisquare" if n_values > 2 else "z"
        else:
            method = "jensenshannon"
    if not numeric and method not in _CATEGORY_METHODS:
        raise ValueError(f"method {method!r} does not apply to {kind.value} columns")

    if method == "ks":
        return methods.ks_test(ref_sketch, cur_sketch)
    if method == "wasserstein":
        return methods.wasserstein_normed(ref_sketch, cur_sketch, reference.std)
    if method in ("psi", "jensenshannon"):
        if numeric:
            integer = reference.integer_dtype and current.integer_dtype
            ref_share, cur_share, exact = methods.numeric_shares(
                ref_sketch, cur_sketch, integer_dtype=integer
            )
        else:
            ref_share, cur_share, _ = methods.category_shares(ref_counts, cur_counts)
            exact = True
        score = (
            methods.psi(ref_share, cur_share)
            if method == "psi"
            else methods.jensen_shannon(ref_share, cur_share)
        )
        return methods.MethodResult(method, score, None, exact, 0.0 if exact else None)
    if numeric and not both_exact:
        raise ValueError(f"{method} needs categories, and the column has more than 10000 distinct values")
    if numeric or top is None:
        ref_counts, cur_counts = _value_counts(reference), _value_counts(current)
    keys = sorted(set(ref_counts) | set(cur_counts), key=_sort_key)
    ref = np.array([ref_counts.get(k, 0.0) for k in keys])
    cur = np.array([cur_counts.get(k, 0.0) for k in keys])
    if method == "chisquare":
        return methods.chi_square_contingency(ref, cur)
    # Evidently's Z-test: the first category (in sorted order) against all the others.
    return methods.two_proportion_z_test(ref.sum() - ref[0], ref.sum(), cur.sum() - cur[0], cur.sum())


def _unseen(
    kind: ColumnKind, reference: ColumnProfile, current: ColumnProfile
) -> tuple[tuple[dict, ...], float | None]:
    if kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN) or current.count == 0:
        return (), None
    known = {k for k, v in reference.category_counts().items() if v}
    unseen = {k: v for k, v in _value_counts(current).items() if v and k not in known}
    total = float(current.count)
    ranked = sorted(unseen.items(), key=lambda item: (-item[1], item[0]))[:MAX_UNSEEN_REPORTED]
    listed = tuple({"value": key, "share": value / total} for key, value in ranked)
    return listed, sum(unseen.values()) / total

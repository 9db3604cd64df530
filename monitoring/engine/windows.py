"""Drift by time window and by segment (issue 11): a verdict per group and a trend over windows.

``run_groups(reference_profile, current_chunks, check_config, groups)`` reads the current data once,
chunk by chunk, and splits its rows two ways at the same time (each optional, neither crossed with
the other):

- **time windows** by a timestamp column, in UTC calendar buckets of an hour, a day, a week (ISO:
  from Monday) or a month. Fixed windows are the buckets themselves, every bucket from the first to
  the last one seen (an empty bucket is listed, with no verdict, so a gap shows in the trend).
  Rolling windows (``rolling=k``) span ``k`` consecutive buckets and move by one bucket ("7 days
  every day"); they are merged from the buckets' profiles (``ColumnProfile.merge``), so each row is
  read once whatever ``k``; a window is formed only once ``k`` buckets have passed. Each window is
  compared with the whole reference profile: the reference is the baseline period.
- **segments** by a categorical column: its ``top`` most frequent reference values, each its own
  segment, and every other value (and missing values) as ``"<other>"``. A segment is compared with
  the same segment of the reference (a profile of the reference rows with that value, built in one
  more pass over the reference rows): comparing summer with a whole year would always "drift".

Each group gets a ``CheckResult`` of the engine's usual rules (``check.evaluate_current``) on the
check's columns less the grouping column; a group under ``min_sample_size`` rows is
``insufficient_data``. Timestamps that are missing or cannot be parsed are counted and reported with
a few examples, never a crash: strings are parsed in the format of the first value pandas can guess
one from (ISO 8601 until then), numbers are seconds since the epoch, and zone-less values are UTC.

Memory: one set of current profiles per group (bounded by the reference profile's size, see
``monitoring.engine.profile``), and the number of groups is bounded: ``max_windows`` windows (the
span from the first to the last bucket; a rolling check keeps ``rolling - 1`` buckets more) and
``top`` + 1 segments. A time span past the limit stops the windows with an error naming
``time_window.max_windows``; the segments and the check's own verdict go on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from monitoring.engine.check import (
    CheckConfig,
    CheckResult,
    ConfigError,
    Status,
    add_current_chunk,
    current_accumulators,
    evaluate_current,
    raw_row_columns,
)
from monitoring.engine.profile import (
    ColumnKind,
    ColumnProfile,
    DatasetProfile,
    _integer_key,
    iter_chunks,
)

EVERY = ("hour", "day", "week", "month")
DEFAULT_MAX_WINDOWS = 100
MAX_WINDOWS_LIMIT = 1_000
MAX_ROLLING = 366
DEFAULT_TOP_SEGMENTS = 10
MAX_TOP_SEGMENTS = 50
OTHER_SEGMENT = "<other>"
MAX_UNPARSED_EXAMPLES = 5
# Seconds since the epoch beyond +-1e11 (years -1200 to 5100) cannot be datetime64[ns] values.
_MAX_EPOCH_SECONDS = 1e11
_NS = {"hour": 3_600 * 10**9, "day": 86_400 * 10**9}


# -- configuration --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimeWindows:
    """Windows of the ``column`` timestamps: ``every`` bucket (hour, day, week, month), fixed or
    ``rolling`` over that many buckets; at most ``max_windows`` windows."""

    column: str
    every: str = "day"
    rolling: int | None = None
    max_windows: int = DEFAULT_MAX_WINDOWS

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise ConfigError("time_window", "time_window.column must name the timestamp column")
        if self.every not in EVERY:
            raise ConfigError("time_window", f"time_window.every must be one of {EVERY}, got {self.every!r}")
        if self.rolling is not None and not (_is_int(self.rolling) and 2 <= self.rolling <= MAX_ROLLING):
            raise ConfigError(
                "time_window",
                f"time_window.rolling must be null (fixed windows) or an integer from 2 to {MAX_ROLLING}, "
                f"got {self.rolling!r}",
            )
        if not _is_int(self.max_windows) or not 1 <= self.max_windows <= MAX_WINDOWS_LIMIT:
            raise ConfigError(
                "time_window",
                f"time_window.max_windows must be an integer from 1 to {MAX_WINDOWS_LIMIT}, "
                f"got {self.max_windows!r}",
            )


@dataclass(frozen=True)
class Segments:
    """Segments of the categorical ``column``: its ``top`` most frequent reference values + other."""

    column: str
    top: int = DEFAULT_TOP_SEGMENTS

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise ConfigError("segment_by", "segment_by.column must name a categorical column")
        if not _is_int(self.top) or not 1 <= self.top <= MAX_TOP_SEGMENTS:
            raise ConfigError(
                "segment_by",
                f"segment_by.top must be an integer from 1 to {MAX_TOP_SEGMENTS}, got {self.top!r}",
            )


@dataclass(frozen=True)
class GroupConfig:
    """Which groups a check judges beside the whole window. ``alert_on_groups``: a group whose
    dataset verdict is drift raises the check's alert (default no: groups are shown and kept)."""

    time_window: TimeWindows | None = None
    segment_by: Segments | None = None
    alert_on_groups: bool = False

    @property
    def is_empty(self) -> bool:
        """No windows and no segments asked."""
        return self.time_window is None and self.segment_by is None

    @classmethod
    def from_dict(cls, data: Mapping | None) -> GroupConfig:
        """From ``{"time_window": {...} | null, "segment_by": {...} | "column" | null,
        "alert_on_groups": bool}``. Raises ``ConfigError`` naming the top-level field at fault."""
        data = data or {}
        if not isinstance(data, Mapping):
            raise ConfigError("time_window", "windows and segments must be an object")
        unknown = sorted(set(data) - {"time_window", "segment_by", "alert_on_groups"})
        if unknown:
            raise ConfigError(unknown[0], f"unknown option(s): {', '.join(unknown)}")
        window = data.get("time_window")
        segments = data.get("segment_by")
        if isinstance(segments, str):
            segments = {"column": segments}
        alert = data.get("alert_on_groups", False)
        if not isinstance(alert, bool):
            raise ConfigError("alert_on_groups", f"alert_on_groups must be true or false, got {alert!r}")
        return cls(
            time_window=None if window is None else _build(TimeWindows, "time_window", window),
            segment_by=None if segments is None else _build(Segments, "segment_by", segments),
            alert_on_groups=alert,
        )

    def to_dict(self) -> dict:
        """JSON-able dict, the inverse of ``from_dict``."""
        return {
            "time_window": None if self.time_window is None else _fields(self.time_window),
            "segment_by": None if self.segment_by is None else _fields(self.segment_by),
            "alert_on_groups": self.alert_on_groups,
        }


def _build(kind: type, name: str, data: object) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(name, f"{name} must be an object, got {type(data).__name__}")
    allowed = set(kind.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(name, f"unknown {name} key(s): {', '.join(map(str, unknown))}")
    if "column" not in data:
        raise ConfigError(name, f"{name}.column is required")
    return kind(**data)


def _fields(value: object) -> dict:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}  # type: ignore[attr-defined]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- results --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupResult:
    """One window or segment: its key, its rows and the engine's verdict on them.

    ``status`` is "drift" (the group's dataset verdict), "ok", "insufficient_data" (no column got a
    verdict, e.g. under ``min_sample_size`` rows) or "no_data" (no rows). ``start``/``end`` (ISO 8601,
    UTC, end exclusive) are set for windows; ``reference_rows`` is the segment's reference rows.
    """

    key: str
    label: str
    rows: int
    result: CheckResult
    start: str | None = None
    end: str | None = None
    reference_rows: int | None = None

    @property
    def status(self) -> str:
        if self.result.is_dataset_drift:
            return "drift"
        if self.result.number_of_columns:
            return "ok"
        return "no_data" if self.rows == 0 else str(Status.INSUFFICIENT_DATA)

    def to_dict(self) -> dict:
        """Compact JSON-able dict: the verdict and, per column, status, method, score, threshold."""
        r = self.result
        return {
            "key": self.key,
            "label": self.label,
            "start": self.start,
            "end": self.end,
            "rows": self.rows,
            "reference_rows": self.reference_rows,
            "status": self.status,
            "is_dataset_drift": r.is_dataset_drift,
            "number_of_columns": r.number_of_columns,
            "number_of_drifted_columns": r.number_of_drifted_columns,
            "share_of_drifted_columns": r.share_of_drifted_columns,
            "drifted_columns": r.drifted_columns,
            "columns": {
                c.column: {
                    "status": str(c.status),
                    "method": c.method,
                    "score": _finite(c.score),
                    "threshold": _finite(c.threshold),
                }
                for c in r.columns
            },
        }


@dataclass
class WindowsResult:
    """The windows of a check, oldest first, with the rows whose timestamp was missing or unreadable."""

    config: TimeWindows
    windows: list[GroupResult] = field(default_factory=list)
    unparsed_rows: int = 0
    unparsed_examples: list[str] = field(default_factory=list)
    error: str | None = None
    message: str = ""

    def to_dict(self) -> dict:
        return {
            **_fields(self.config),
            "windows": [window.to_dict() for window in self.windows],
            "unparsed_rows": self.unparsed_rows,
            "unparsed_examples": self.unparsed_examples,
            "error": self.error,
            "message": self.message,
        }


@dataclass
class SegmentsResult:
    """The segments of a check, in the reference's order of frequency, then ``"<other>"``."""

    config: Segments
    segments: list[GroupResult] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return {
            **_fields(self.config),
            "segments": [segment.to_dict() for segment in self.segments],
            "error": self.error,
        }


@dataclass
class GroupsResult:
    """What ``run_groups`` found; ``is_drift``: some window or segment has dataset drift."""

    alert_on_groups: bool
    windows: WindowsResult | None = None
    segments: SegmentsResult | None = None

    @property
    def groups(self) -> list[GroupResult]:
        return [
            *(self.windows.windows if self.windows else ()),
            *(self.segments.segments if self.segments else ()),
        ]

    @property
    def is_drift(self) -> bool:
        return any(group.status == "drift" for group in self.groups)

    def to_dict(self) -> dict:
        """JSON-able dict: ``{"alert_on_groups", "is_drift", "windows": {...} | None,
        "segments": {...} | None}`` (stored on the check, read by its API and page)."""
        return {
            "alert_on_groups": self.alert_on_groups,
            "is_drift": self.is_drift,
            "windows": None if self.windows is None else self.windows.to_dict(),
            "segments": None if self.segments is None else self.segments.to_dict(),
        }


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


class GroupLimitError(Exception):
    """More groups than the config allows; the message names the config field."""


# -- accumulation ---------------------------------------------------------------------------------
@dataclass
class _Group:
    accumulators: dict[str, ColumnProfile]
    rows: int = 0


class _Split:
    """Current profiles per group key; ``add`` gives each group its rows of a chunk."""

    def __init__(self, reference: DatasetProfile, config: CheckConfig):
        self.reference, self.config = reference, config
        self.groups: dict[Any, _Group] = {}
        self.names = set(current_accumulators(reference, config))

    def new_group(self) -> _Group:
        return _Group(current_accumulators(self.reference, self.config))

    def add(self, chunk: pd.DataFrame, keys: np.ndarray, valid: np.ndarray) -> None:
        """Add the rows of ``chunk`` where ``valid`` to the group of their ``keys`` (an array)."""
        positions = np.flatnonzero(valid)
        if positions.size == 0:
            return
        # Only the compared columns are copied into each group's rows.
        chunk = chunk[[label for label in chunk.columns if str(label) in self.names]]
        codes, uniques = pd.factorize(keys[positions], sort=False)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
        for j, key in enumerate(uniques):
            rows = positions[order[bounds[j] : bounds[j + 1]]]
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = self.new_group()
            group.rows += rows.size
            add_current_chunk(group.accumulators, chunk.iloc[rows])


def _group_config(config: CheckConfig, reference: DatasetProfile, column: str) -> CheckConfig:
    """The check's config on its profiled columns less the grouping column (a window always moves
    its timestamps; a segment's own column is constant)."""
    names = list(config.columns) if config.columns is not None else list(reference.columns)
    raw = raw_row_columns(config)
    return replace(config, columns=tuple(n for n in names if n != column and n not in raw), multivariate=())


class _TimeSplit:
    def __init__(self, reference: DatasetProfile, config: CheckConfig, windows: TimeWindows):
        self.windows = windows
        self.config = _group_config(config, reference, windows.column)
        self.split = _Split(reference, self.config)
        self.result = WindowsResult(windows)
        self.format: str | None = None
        self.low: int | None = None
        self.high: int | None = None
        self.limit = windows.max_windows + (windows.rolling or 1) - 1

    def add(self, chunk: pd.DataFrame) -> None:
        if self.result.error is not None:
            return
        by_name = {str(label): label for label in chunk.columns}
        if self.windows.column not in by_name:
            self._stop(f"the timestamp column {self.windows.column!r} is not in the current data")
            return
        series = chunk[by_name[self.windows.column]]
        stamps = self._parse(series)
        valid = ~np.isnat(stamps)
        bad = ~valid
        if bad.any():
            self.result.unparsed_rows += int(bad.sum())
            room = MAX_UNPARSED_EXAMPLES - len(self.result.unparsed_examples)
            if room > 0:
                self.result.unparsed_examples += [str(v) for v in series[bad].iloc[:room]]
        if not valid.any():
            return
        buckets = _buckets(stamps, self.windows.every)
        low, high = int(buckets[valid].min()), int(buckets[valid].max())
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        if self.high - self.low + 1 > self.limit:
            self._stop(
                f"the data spans {self.high - self.low + 1} {self.windows.every} buckets, more than "
                f"{self.limit}: raise time_window.max_windows (at most {MAX_WINDOWS_LIMIT}) or use longer "
                "windows"
            )
            return
        self.split.add(chunk, buckets, valid)

    def _stop(self, message: str) -> None:
        self.result.error = message
        self.split.groups.clear()  # free the profiles: the windows are not judged

    def _parse(self, series: pd.Series) -> np.ndarray:
        """datetime64[ns] values in UTC without a zone; NaT where missing or unreadable."""
        dtype = series.dtype
        if pd.api.types.is_datetime64_any_dtype(dtype):
            stamps = pd.to_datetime(series, utc=True)
        elif pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            seconds = series.to_numpy(dtype=np.float64, na_value=np.nan)
            seconds = np.where(np.abs(seconds) < _MAX_EPOCH_SECONDS, seconds, np.nan)
            stamps = pd.to_datetime(seconds, unit="s", utc=True, errors="coerce")
        else:
            text = series.astype("string")
            if self.format is None:
                for value in text.dropna().iloc[:100]:
                    self.format = guess_datetime_format(str(value))
                    if self.format is not None:
                        break
            stamps = pd.to_datetime(text, utc=True, errors="coerce", format=self.format or "ISO8601")
        return pd.DatetimeIndex(stamps).tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]")

    def finish(self) -> WindowsResult:
        result = self.result
        if result.error is not None or self.low is None or self.high is None:
            if result.error is None:
                result.message = "no row has a readable timestamp"
            return result
        groups, every, k = self.split.groups, self.windows.every, self.windows.rolling
        if k is None:
            for bucket in range(self.low, self.high + 1):
                group = groups.get(bucket) or self.split.new_group()
                result.windows.append(self._window(bucket, bucket, group))
            return result
        if self.high - self.low + 1 < k:
            result.message = (
                f"the data spans {self.high - self.low + 1} {every} buckets, fewer than rolling={k}"
            )
            return result
        for end in range(self.low + k - 1, self.high + 1):
            merged = self.split.new_group()
            for bucket in range(end - k + 1, end + 1):
                if bucket in groups:
                    _merge_into(merged, groups[bucket])
            result.windows.append(self._window(end - k + 1, end, merged))
        return result

    def _window(self, first: int, last: int, group: _Group) -> GroupResult:
        every = self.windows.every
        start, end = _bucket_start(first, every), _bucket_start(last + 1, every)
        label = _label(start, every)
        if first != last:
            label = f"{label} to {_label(_bucket_start(last, every), every)}"
        return GroupResult(
            key=start.isoformat(),
            label=label,
            rows=group.rows,
            result=evaluate_current(self.split.reference, group.accumulators, group.rows, self.config),
            start=start.isoformat() + "Z",
            end=end.isoformat() + "Z",
        )


def _merge_into(target: _Group, source: _Group) -> None:
    """Add one bucket's profiles to a rolling window's (``ColumnProfile.merge``)."""
    target.rows += source.rows
    for name, current in target.accumulators.items():
        other = source.accumulators[name]
        if current.error is not None:
            continue
        if other.error is not None:
            current.error = other.error
            continue
        try:
            current.merge(other)
            current.unseen_overflow += other.unseen_overflow
        except ValueError as exc:
            current.error = str(exc)


def _buckets(stamps: np.ndarray, every: str) -> np.ndarray:
    """The UTC calendar bucket of each timestamp as an integer (garbage where NaT: mask it)."""
    ns = stamps.view(np.int64)
    if every in _NS:
        return ns // _NS[every]
    if every == "week":
        # Day 0 (1970-01-01) is a Thursday: week w starts on Monday, day 7w - 3.
        return (ns // _NS["day"] + 3) // 7
    return stamps.astype("datetime64[M]").view(np.int64)


def _bucket_start(bucket: int, every: str) -> pd.Timestamp:
    if every in _NS:
        return pd.Timestamp(bucket * _NS[every])
    if every == "week":
        return pd.Timestamp((7 * bucket - 3) * _NS["day"])
    return pd.Timestamp(np.datetime64(bucket, "M"))


def _label(start: pd.Timestamp, every: str) -> str:
    return start.strftime({"hour": "%Y-%m-%d %H:00", "month": "%Y-%m"}.get(every, "%Y-%m-%d"))


class _SegmentSplit:
    def __init__(self, reference: DatasetProfile, config: CheckConfig, segments: Segments):
        self.segments = segments
        self.config = _group_config(config, reference, segments.column)
        self.split = _Split(reference, self.config)
        self.result = SegmentsResult(segments)
        self.values: list[str] = []
        column = reference.columns.get(segments.column)
        if column is None:
            self.result.error = f"the segment column {segments.column!r} is not in the reference profile"
        elif column.kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            self.result.error = (
                f"the segment column {segments.column!r} is {column.kind.value}, not categorical: "
                "segments need a column of categories"
            )
        else:
            ranked = sorted(column.category_counts().items(), key=lambda item: (-item[1], item[0]))
            self.values = [key for key, count in ranked if count][: segments.top]

    def keys(self, chunk: pd.DataFrame) -> np.ndarray | None:
        """The segment of each row: its value if among the top values, else ``"<other>"``."""
        by_name = {str(label): label for label in chunk.columns}
        if self.segments.column not in by_name:
            return None
        series = chunk[by_name[self.segments.column]]
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        known = set(self.values)
        names = np.array([_segment_key(value, known) for value in uniques] + [OTHER_SEGMENT], dtype=object)
        return names[codes]  # code -1 (missing) takes the last entry: "<other>"

    def add(self, chunk: pd.DataFrame) -> None:
        if self.result.error is not None:
            return
        keys = self.keys(chunk)
        if keys is None:
            self.result.error = f"the segment column {self.segments.column!r} is not in the current data"
            self.split.groups.clear()
            return
        self.split.add(chunk, keys, np.ones(len(chunk), dtype=bool))

    def finish(self, reference_chunks: pd.DataFrame | Iterable[pd.DataFrame] | None) -> SegmentsResult:
        result = self.result
        if result.error is not None:
            return result
        if reference_chunks is None:
            result.error = "segments need the reference rows"
            return result
        references = self._reference_profiles(reference_chunks)
        for key in [*self.values, OTHER_SEGMENT]:
            reference = references.get(key)
            group = self.split.groups.get(key)
            if key == OTHER_SEGMENT and reference is None and group is None:
                continue  # every value is a segment of its own
            reference = reference or DatasetProfile()
            if group is None:
                group = _Group(current_accumulators(reference, self.config))
            result.segments.append(
                GroupResult(
                    key=key,
                    label=f"{self.segments.column} = {key}" if key != OTHER_SEGMENT else "other values",
                    rows=group.rows,
                    result=evaluate_current(reference, group.accumulators, group.rows, self.config),
                    reference_rows=reference.rows,
                )
            )
        return result

    def _reference_profiles(self, chunks: pd.DataFrame | Iterable[pd.DataFrame]) -> dict[str, DatasetProfile]:
        """One reference profile per segment, in one pass over the reference rows."""
        columns = [name for name in self.config.columns or () if name in self.split.reference.columns]
        profiles: dict[str, DatasetProfile] = {}
        for chunk in iter_chunks(chunks, self.config.chunk_rows):
            keys = self.keys(chunk)
            if keys is None:
                raise GroupLimitError(
                    f"the segment column {self.segments.column!r} is not in the reference rows"
                )
            present = [name for name in columns if name in chunk.columns]
            for key in pd.unique(keys):
                profiles.setdefault(str(key), DatasetProfile()).add_chunk(chunk.loc[keys == key, present])
        return profiles


def _segment_key(value: object, known: set[str]) -> str:
    """A value's key as the profile writes it (``str``; integral numbers without ".0")."""
    if isinstance(value, float | np.floating | int | np.integer) and not isinstance(value, bool | np.bool_):
        key = _integer_key(float(value))
    else:
        key = str(value)
    return key if key in known else OTHER_SEGMENT


def run_groups(
    reference_profile: DatasetProfile,
    current_chunks: pd.DataFrame | Iterable[pd.DataFrame],
    config: CheckConfig | Mapping | None,
    groups: GroupConfig | Mapping,
    *,
    reference_chunks: pd.DataFrame | Iterable[pd.DataFrame] | None = None,
) -> GroupsResult:
    """Judge the current data per time window and per segment, reading it once.

    ``current_chunks``: a DataFrame or an iterable of DataFrame chunks (read once);
    ``reference_chunks``: the reference rows, read once and only when segments are asked (each
    segment is compared with its own reference rows). Raises ``ConfigError`` for an invalid config
    and TypeError if a chunk is not a DataFrame; too many windows, a missing grouping column or
    unreadable timestamps are reported in the result.
    """
    if not isinstance(config, CheckConfig):
        config = CheckConfig.from_dict(config or {})
    if not isinstance(groups, GroupConfig):
        groups = GroupConfig.from_dict(groups)
    times = None if groups.time_window is None else _TimeSplit(reference_profile, config, groups.time_window)
    segments = (
        None if groups.segment_by is None else _SegmentSplit(reference_profile, config, groups.segment_by)
    )
    for chunk in iter_chunks(current_chunks, config.chunk_rows):
        if times is not None:
            times.add(chunk)
        if segments is not None:
            segments.add(chunk)
    result = GroupsResult(alert_on_groups=groups.alert_on_groups)
    if times is not None:
        result.windows = times.finish()
    if segments is not None:
        try:
            result.segments = segments.finish(reference_chunks)
        except GroupLimitError as exc:
            result.segments = SegmentsResult(segments.segments, error=str(exc))
    return result


def judge_groups(
    reference_profile: DatasetProfile,
    current_chunks: pd.DataFrame | Iterable[pd.DataFrame],
    config: CheckConfig,
    groups: Mapping,
    reference_rows: Callable[[], pd.DataFrame | Iterable[pd.DataFrame]],
) -> dict:
    """``run_groups`` as a check runs it: the stored config in, the JSON result out; the reference
    rows (a callable, so they are read only when segments need them) are asked for only then."""
    config_ = GroupConfig.from_dict(groups)
    reference = reference_rows() if config_.segment_by is not None else None
    return run_groups(
        reference_profile, current_chunks, config, config_, reference_chunks=reference
    ).to_dict()

"""Drift by time window and segment, the engine alone (issue 11, ``monitoring.engine.windows``):
the bike data's 2012 months against 2011, its seasons, and the edge cases (unreadable timestamps,
empty windows, the window limit, chunk boundaries)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.engine import ConfigError, build_profile, run_check
from monitoring.engine.windows import GroupConfig, run_groups

COLUMNS = ["season", "hr", "weathersit", "temp", "hum", "windspeed", "casual", "cnt"]
CONFIG = {"columns": COLUMNS, "min_sample_size": 500}


@pytest.fixture(scope="module")
def bike(bike_frame):
    reference = bike_frame[bike_frame["yr"] == 0].reset_index(drop=True)
    current = bike_frame[bike_frame["yr"] == 1].reset_index(drop=True)
    return build_profile(reference[COLUMNS]), reference, current


def test_monthly_windows_of_2012_show_the_summer_drift_of_cnt(bike):
    profile, _reference, current = bike

    result = run_groups(profile, current, CONFIG, {"time_window": {"column": "dteday", "every": "month"}})

    windows = result.windows.windows
    assert [w.label for w in windows] == [f"2012-{month:02d}" for month in range(1, 13)]
    assert [w.rows for w in windows] == [741, 692, 743, 718, 744, 720, 744, 744, 720, 708, 718, 742]
    assert sum(w.rows for w in windows) == len(current)
    assert (windows[0].start, windows[0].end) == ("2012-01-01T00:00:00Z", "2012-02-01T00:00:00Z")
    assert (result.windows.unparsed_rows, result.windows.error) == (0, None)
    cnt = {w.label: w.result.column("cnt") for w in windows}
    # Each month against the whole of 2011: cnt (the 2012 growth) moves most in the summer months.
    assert not cnt["2012-02"].is_drifted
    assert all(cnt[f"2012-{m:02d}"].is_drifted for m in range(3, 11))
    assert max(cnt, key=lambda label: cnt[label].score or 0) in {"2012-06", "2012-07", "2012-08", "2012-09"}
    assert cnt["2012-09"].score > 10 * cnt["2012-02"].score
    # The timestamp column is the window's own: never compared inside a window.
    assert "dteday" not in {c.column for c in windows[0].result.columns}


def test_segments_by_season_compare_each_season_with_the_same_season_of_2011(bike):
    profile, reference, current = bike

    result = run_groups(profile, current, CONFIG, {"segment_by": "season"}, reference_chunks=reference)

    segments = result.segments.segments
    # The reference's most frequent seasons first; every season is a segment, so no "<other>".
    assert [(s.key, s.rows, s.reference_rows) for s in segments] == [
        ("3", 2256, 2240),
        ("2", 2206, 2203),
        ("4", 2098, 2134),
        ("1", 2174, 2068),
    ]
    assert all("season" not in {c.column for c in s.result.columns} for s in segments)
    assert all(s.result.column("cnt").is_drifted for s in segments)  # more riders in every season
    assert not segments[0].result.column("weathersit").is_drifted


def test_top_segments_lump_the_rest_and_missing_values_into_other(bike):
    profile, reference, current = bike
    current = current.copy()
    current.loc[:99, "season"] = np.nan

    result = run_groups(
        profile, current, CONFIG, {"segment_by": {"column": "season", "top": 2}}, reference_chunks=reference
    )

    assert [(s.key, s.rows) for s in result.segments.segments] == [
        ("3", 2256),
        ("2", 2206),
        ("<other>", 2098 + 2174),  # seasons 4 and 1, and the 100 rows without a season (all in 1)
    ]
    assert result.segments.segments[2].reference_rows == 2134 + 2068


def test_one_chunk_or_many_give_the_same_groups(bike):
    profile, reference, current = bike
    groups = {
        "time_window": {"column": "dteday", "every": "week"},
        "segment_by": "weathersit",
        "alert_on_groups": True,
    }

    whole = run_groups(profile, current, CONFIG, groups, reference_chunks=reference)
    # Chunks of 777 rows cut weeks and segments anywhere; the reference comes in chunks too.
    parts = run_groups(
        profile,
        (current.iloc[i : i + 777] for i in range(0, len(current), 777)),
        CONFIG,
        groups,
        reference_chunks=(reference.iloc[i : i + 1000] for i in range(0, len(reference), 1000)),
    )

    # Equal but for the last bits of the reference segments' moments (merged per chunk).
    assert _rounded(parts.to_dict()) == _rounded(whole.to_dict())
    # 2012-01-01 is a Sunday (its week starts 2011-12-26) and 2012-12-31 a Monday: 54 weeks.
    assert len(whole.windows.windows) == 54
    assert whole.windows.windows[0].key == "2011-12-26T00:00:00"


def _rounded(value):
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def test_unreadable_and_missing_timestamps_are_counted_not_a_crash(bike):
    profile, _reference, current = bike
    current = current.copy()
    current["dteday"] = current["dteday"].astype(object)
    current.loc[0, "dteday"] = "not a date"  # the first value: the format is guessed from the next
    current.loc[1:9, "dteday"] = None
    current.loc[10, "dteday"] = "2012-13-45"

    result = run_groups(profile, current, CONFIG, {"time_window": {"column": "dteday", "every": "month"}})

    windows = result.windows
    assert (windows.unparsed_rows, windows.error) == (11, None)
    assert windows.unparsed_examples == ["not a date", "None", "None", "None", "None"]
    assert sum(w.rows for w in windows.windows) == len(current) - 11
    assert [w.label for w in windows.windows][:2] == ["2012-01", "2012-02"]


def test_empty_windows_are_listed_without_a_verdict_and_small_ones_are_insufficient(bike):
    profile, _reference, current = bike
    # Drop March 2012 entirely, and keep only 100 rows of April.
    month = pd.to_datetime(current["dteday"]).dt.month
    kept = current[(month != 3) & ((month != 4) | (current.index % 7 == 0))]

    result = run_groups(profile, kept, CONFIG, {"time_window": {"column": "dteday", "every": "month"}})

    by_label = {w.label: w for w in result.windows.windows}
    assert len(by_label) == 12
    assert (by_label["2012-03"].rows, by_label["2012-03"].status) == (0, "no_data")
    assert by_label["2012-04"].status == "insufficient_data"
    assert by_label["2012-04"].rows < 500
    assert {c.status.value for c in by_label["2012-04"].result.columns} == {"insufficient_data"}
    assert by_label["2012-05"].status == "drift"


def test_too_many_windows_stop_the_windows_with_an_error_naming_the_field(bike):
    profile, reference, current = bike
    groups = {"time_window": {"column": "dteday", "every": "day", "max_windows": 30}, "segment_by": "season"}

    result = run_groups(profile, current, CONFIG, groups, reference_chunks=reference)

    assert result.windows.windows == []
    assert "time_window.max_windows" in result.windows.error
    assert len(result.segments.segments) == 4  # the segments go on


def test_rolling_windows_merge_their_buckets(bike):
    profile, _reference, current = bike
    hourly = current.assign(
        stamp=pd.to_datetime(current["dteday"]) + pd.to_timedelta(current["hr"], unit="h")
    )
    hourly = hourly[hourly["stamp"] < "2012-04-01"]  # the first quarter: 91 days

    result = run_groups(
        profile,
        hourly,
        CONFIG,
        {"time_window": {"column": "stamp", "every": "day", "rolling": 30}},
    )

    windows = result.windows.windows
    assert len(windows) == 91 - 29  # one window per day once 30 days have passed
    assert windows[0].label == "2012-01-01 to 2012-01-30"
    assert (windows[0].start, windows[0].end) == ("2012-01-01T00:00:00Z", "2012-01-31T00:00:00Z")
    first_30_days = hourly[hourly["stamp"] < "2012-01-31"]
    assert windows[0].rows == len(first_30_days)
    # A window merged from its 30 days judges as the same rows read at once.
    direct = run_check(profile, first_30_days, {**CONFIG, "columns": [c for c in COLUMNS]})
    for name in ("cnt", "temp", "weathersit"):
        merged, alone = windows[0].result.column(name), direct.column(name)
        assert (merged.current_count, merged.status, merged.method) == (
            alone.current_count,
            alone.status,
            alone.method,
        )
        assert merged.score == pytest.approx(alone.score, rel=1e-9)


def test_numeric_epoch_seconds_and_zoned_strings_are_utc(bike):
    profile, _reference, current = bike
    stamps = pd.to_datetime(current["dteday"]).dt.tz_localize("UTC") + pd.to_timedelta(
        current["hr"], unit="h"
    )
    as_seconds = current.assign(stamp=(stamps - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds())
    zoned = current.assign(stamp=stamps.dt.tz_convert("America/New_York").astype(str))
    groups = {"time_window": {"column": "stamp", "every": "month"}}

    by_seconds = run_groups(profile, as_seconds, CONFIG, groups)
    by_zoned = run_groups(profile, zoned, CONFIG, groups)

    assert [w.rows for w in by_seconds.windows.windows] == [w.rows for w in by_zoned.windows.windows]
    assert by_zoned.windows.unparsed_rows == 0
    assert by_zoned.windows.windows[0].rows == 741


@pytest.mark.parametrize(
    ("groups", "field", "message"),
    [
        ({"time_window": {"column": "dteday", "every": "fortnight"}}, "time_window", "time_window.every"),
        ({"time_window": {"column": "dteday", "rolling": 1}}, "time_window", "time_window.rolling"),
        (
            {"time_window": {"column": "dteday", "max_windows": 5000}},
            "time_window",
            "time_window.max_windows",
        ),
        ({"time_window": {"every": "day"}}, "time_window", "time_window.column"),
        ({"time_window": {"column": "dteday", "size": 3}}, "time_window", "size"),
        ({"time_window": "dteday"}, "time_window", "must be an object"),
        ({"segment_by": {"column": "season", "top": 0}}, "segment_by", "segment_by.top"),
        ({"segment_by": ""}, "segment_by", "segment_by.column"),
        ({"alert_on_groups": "yes"}, "alert_on_groups", "alert_on_groups"),
        ({"windows": {}}, "windows", "unknown"),
    ],
)
def test_bad_group_configs_name_the_field(groups, field, message):
    with pytest.raises(ConfigError) as error:
        GroupConfig.from_dict(groups)

    assert error.value.field == field
    assert message in str(error.value)


def test_a_segment_column_of_numbers_or_absent_is_reported(bike):
    profile, reference, current = bike

    numeric = run_groups(profile, current, CONFIG, {"segment_by": "temp"}, reference_chunks=reference)
    absent = run_groups(
        profile, current.drop(columns="season"), CONFIG, {"segment_by": "season"}, reference_chunks=reference
    )
    no_column = run_groups(profile, current, CONFIG, {"time_window": {"column": "when", "every": "day"}})

    assert numeric.segments.error.startswith("the segment column 'temp' is numeric")
    assert absent.segments.error == "the segment column 'season' is not in the current data"
    assert no_column.windows.error == "the timestamp column 'when' is not in the current data"


def test_rolling_windows_on_a_binned_reference_judge_as_the_rows_read_at_once():
    # More than 10,000 distinct values: the reference is binned and each day is counted on its
    # grid, so the days of a window merge by adding counts (no approximation).
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"x": rng.normal(size=30_000), "c": rng.choice(list("abc"), 30_000)})
    days = pd.Timestamp("2025-03-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 10 * 86_400, 20_000), unit="s"
    )
    current = pd.DataFrame(
        {"x": rng.normal(0.3, 1, 20_000), "c": rng.choice(list("abd"), 20_000), "at": days}
    )
    profile = build_profile(reference)
    config = {"columns": ["x", "c"], "min_sample_size": 100}

    result = run_groups(
        profile, current, config, {"time_window": {"column": "at", "every": "day", "rolling": 3}}
    )

    windows = result.windows.windows
    assert [w.label for w in windows][:2] == ["2025-03-01 to 2025-03-03", "2025-03-02 to 2025-03-04"]
    assert len(windows) == 8
    for window in (windows[0], windows[-1]):
        rows = current[(current["at"] >= window.start[:-1]) & (current["at"] < window.end[:-1])]
        direct = run_check(profile, rows, config)
        assert window.rows == len(rows)
        for name in ("x", "c"):
            merged, alone = window.result.column(name), direct.column(name)
            assert (merged.status, merged.method, merged.current_count) == (
                alone.status,
                alone.method,
                alone.current_count,
            )
            assert merged.score == pytest.approx(alone.score, rel=1e-12)

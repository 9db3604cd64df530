"""The drift engine on every column kind and fault (constant, null, inf, boolean, nullable, datetime,
identifier, unseen categories), its per-column overrides and dataset verdict, and its profiles
(serialization, chunks, bounded memory). Statistics against references: test_engine.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from monitoring.engine import CheckConfig, ColumnKind, DatasetProfile, Status, build_profile, run_check
from monitoring.engine.profile import MAX_CATEGORIES, ColumnProfile
from monitoring.engine.sketch import MAX_EDGES
from tests.conftest import BIKE_HOURLY as BIKE
from tests.monitoring.engine_helpers import evidently_verdicts


# -- every column kind and fault ------------------------------------------------------------------
def test_constant_column():
    reference = pd.DataFrame({"v": np.full(3000, 5.0)})
    same = run_check(build_profile(reference), pd.DataFrame({"v": np.full(2500, 5.0)})).column("v")
    assert (same.kind, same.method, same.score, same.status) == ("numeric", "jensenshannon", 0.0, Status.OK)
    moved = run_check(build_profile(reference), pd.DataFrame({"v": np.full(2500, 6.0)})).column("v")
    assert (moved.method, moved.score, moved.status) == ("jensenshannon", 1.0, Status.DRIFT)
    # Small reference: evidently's Z-test, p = 1 when both sides hold the same single value.
    small = run_check(build_profile(reference.iloc[:500]), pd.DataFrame({"v": np.full(2500, 5.0)})).column(
        "v"
    )
    assert (small.method, small.score, small.status) == ("z", 1.0, Status.OK)
    # A constant reference against spread values: std floor 0.001 (evidently's).
    spread = np.linspace(4.0, 6.0, 2500)
    result = run_check(build_profile(reference), pd.DataFrame({"v": spread})).column("v")
    assert result.method == "wasserstein"
    assert result.score == pytest.approx(stats.wasserstein_distance(np.full(3000, 5.0), spread) / 0.001)
    assert result.status == Status.DRIFT


def test_all_null_column():
    reference = pd.DataFrame({"v": np.full(3000, np.nan), "w": np.arange(3000) % 7 * 1.5})
    profile = build_profile(reference)
    assert profile.columns["v"].kind == ColumnKind.NUMERIC
    both_null = run_check(profile, pd.DataFrame({"v": np.full(2000, np.nan), "w": np.arange(2000) % 7 * 1.5}))
    v = both_null.column("v")
    # No values on either side: no verdict, and not counted in the dataset share (issue 11).
    assert (v.status, v.method, v.score) == (Status.NO_DATA, None, None)
    assert v.message == "no values in the reference or the current data"
    assert (v.reference_missing_rate, v.current_missing_rate) == (1.0, 1.0)
    assert both_null.column("w").status == Status.OK  # the other column is unaffected
    assert (both_null.number_of_columns, both_null.share_of_drifted_columns) == (1, 0.0)
    filled = run_check(profile, pd.DataFrame({"v": np.ones(2000), "w": np.zeros(2000)})).column("v")
    assert (filled.status, filled.method, filled.is_missing_rate_drift) == (
        Status.DRIFT,
        "missing_rate",
        True,
    )
    assert filled.current_missing_rate == 0.0
    emptied = run_check(
        build_profile(pd.DataFrame({"v": np.ones(3000)})), pd.DataFrame({"v": [np.nan] * 2000})
    )
    assert emptied.column("v").status == Status.DRIFT
    assert emptied.column("v").current_missing_rate == 1.0


def test_inf_bearing_column():
    rng = np.random.default_rng(3)
    ref_values = rng.normal(0, 1, 4000)
    ref_values[:40] = np.inf
    cur_values = rng.normal(0, 1, 3000)
    cur_values[:30] = np.inf
    profile = build_profile(pd.DataFrame({"v": ref_values}))
    steady = run_check(profile, pd.DataFrame({"v": cur_values})).column("v")
    assert steady.status == Status.OK
    assert (steady.reference_inf_count, steady.current_inf_count) == (40, 30)
    assert (steady.reference_count, steady.current_count) == (3960, 2970)
    # The value test drops infinities like evidently does ...
    finite = ref_values[np.isfinite(ref_values)]
    expected = stats.wasserstein_distance(finite, cur_values[np.isfinite(cur_values)]) / np.std(finite)
    assert steady.score == pytest.approx(expected, rel=1e-9)
    # ... and a jump in non-finite values is drift even though the finite values did not move.
    cur_values[:900] = -np.inf
    jumped = run_check(profile, pd.DataFrame({"v": cur_values})).column("v")
    assert (jumped.status, jumped.method, jumped.is_missing_rate_drift) == (Status.DRIFT, "wasserstein", True)
    assert jumped.score < 0.1
    assert jumped.current_missing_rate == pytest.approx(0.3)


def test_boolean_columns_numpy_and_nullable():
    reference = pd.DataFrame({"flag": [True] * 600 + [False] * 1400})
    reference["nullable"] = pd.array([True] * 500 + [False] * 1300 + [None] * 200, dtype="boolean")
    current = pd.DataFrame({"flag": [True] * 1560 + [False] * 1040})
    current["nullable"] = pd.array([True] * 600 + [False] * 1800 + [None] * 200, dtype="boolean")
    profile = build_profile(reference)
    assert profile.columns["flag"].kind == ColumnKind.BOOLEAN
    assert profile.columns["nullable"].kind == ColumnKind.BOOLEAN
    result = run_check(profile, current)
    flag = result.column("flag")
    expected = distance.jensenshannon([0.7, 0.3], [0.4, 0.6], base=2)
    assert (flag.method, flag.status) == ("jensenshannon", Status.DRIFT)
    assert flag.score == pytest.approx(expected, rel=1e-12)
    nullable = result.column("nullable")
    assert (nullable.reference_count, nullable.current_count) == (1800, 2400)
    assert (nullable.reference_missing_rate, nullable.current_missing_rate) == (0.1, 200 / 2600)
    assert nullable.score == pytest.approx(
        distance.jensenshannon([1300, 500], [1800, 600], base=2), rel=1e-12
    )
    assert (nullable.method, nullable.status, nullable.is_missing_rate_drift) == (
        "jensenshannon",
        Status.OK,
        False,
    )


def test_nullable_integer_and_unsigned_columns_are_compared():
    """Evidently skips Int64 and uint columns (their dtype names are not 'int...'); we compare them."""
    rng = np.random.default_rng(8)
    ref_int = rng.integers(0, 100, 3000)
    cur_int = rng.integers(20, 120, 2500)
    reference = pd.DataFrame(
        {
            "count": pd.array(np.where(np.arange(3000) % 10 == 0, None, ref_int), dtype="Int64"),
            "level": ref_int.astype(np.uint8),
            "other": rng.normal(0, 1, 3000),
        }
    )
    current = pd.DataFrame(
        {
            "count": pd.array(np.where(np.arange(2500) % 10 == 0, None, cur_int), dtype="Int64"),
            "level": cur_int.astype(np.uint8),
            "other": rng.normal(0, 1, 2500),
        }
    )
    assert set(evidently_verdicts(reference, current)) == {"other"}
    result = run_check(build_profile(reference), current)
    count, level = result.column("count"), result.column("level")
    assert (count.kind, count.method, count.status) == ("numeric", "wasserstein", Status.DRIFT)
    assert (count.reference_missing_rate, count.current_missing_rate) == (0.1, 0.1)
    ref_present, cur_present = ref_int[np.arange(3000) % 10 != 0], cur_int[np.arange(2500) % 10 != 0]
    expected = stats.wasserstein_distance(ref_present, cur_present) / np.std(ref_present)
    assert count.score == pytest.approx(expected, rel=1e-9)
    assert (level.kind, level.method, level.status) == ("numeric", "wasserstein", Status.DRIFT)
    assert level.score == pytest.approx(
        stats.wasserstein_distance(ref_int, cur_int) / np.std(ref_int), rel=1e-9
    )


def test_small_integer_columns_are_categories_like_evidently():
    reference = pd.DataFrame({"weekday": np.arange(3000) % 7})
    profile = build_profile(reference)
    assert profile.columns["weekday"].kind == ColumnKind.CATEGORICAL
    result = run_check(profile, pd.DataFrame({"weekday": np.arange(2400) % 8})).column("weekday")
    assert result.method == "jensenshannon"
    assert result.unseen_categories == ({"value": "7", "share": 0.125},)


def test_datetime_column():
    reference = pd.DataFrame({"when": pd.date_range("2011-01-01", periods=3000, freq="h")})
    current = pd.DataFrame({"when": pd.date_range("2012-01-01", periods=2500, freq="h")})
    profile = build_profile(reference)
    assert profile.columns["when"].kind == ColumnKind.DATETIME
    default = run_check(profile, current).column("when")
    assert (default.status, default.method, default.score) == (Status.OK, "missing_rate", 1.0)
    assert default.message.startswith("datetime values are not compared by default")
    compared = run_check(profile, current, {"methods": {"when": "ks"}}).column("when")
    assert (compared.status, compared.method, compared.statistic) == (Status.DRIFT, "ks", 1.0)


def test_too_few_current_rows_is_insufficient_data_not_drift():
    rng = np.random.default_rng(1)
    profile = build_profile(pd.DataFrame({"x": rng.normal(0, 1, 5000), "c": rng.choice(list("ab"), 5000)}))
    tiny = pd.DataFrame({"x": rng.normal(3, 1, 50), "c": ["z"] * 50})
    result = run_check(profile, tiny)
    assert [c.status for c in result.columns] == [Status.INSUFFICIENT_DATA] * 2
    assert result.column("x").message == "the current window has 50 rows; the minimum is 2000"
    assert (result.number_of_columns, result.is_dataset_drift) == (0, False)
    # Enough rows but too few values: insufficient, unless the missing rate itself jumped.
    sparse = pd.DataFrame({"x": np.r_[rng.normal(3, 1, 500), [np.nan] * 1600], "c": ["a"] * 2100})
    x = run_check(profile, sparse).column("x")
    assert (x.status, x.method, x.is_missing_rate_drift) == (Status.DRIFT, "missing_rate", True)
    assert x.message.startswith("500 current values; the minimum is 2000")
    lowered = run_check(profile, sparse, {"min_sample_size": 100}).column("x")
    assert (lowered.status, lowered.method) == (Status.DRIFT, "wasserstein")


def test_unseen_categories_are_reported_by_name_and_share():
    reference = pd.DataFrame({"city": ["Paris", "Lyon", "Nice"] * 1000})
    current = pd.DataFrame({"city": ["Paris"] * 1500 + ["Lyon"] * 200 + ["Brest"] * 200 + ["Metz"] * 100})
    result = run_check(build_profile(reference), current).column("city")
    assert result.unseen_categories == ({"value": "Brest", "share": 0.1}, {"value": "Metz", "share": 0.05})
    assert result.unseen_share == pytest.approx(0.15)
    assert "15.0% of current values are categories unseen in the reference" in result.message


def test_a_failing_column_does_not_fail_the_others():
    rng = np.random.default_rng(2)
    profile = build_profile(
        pd.DataFrame({"x": rng.normal(0, 1, 3000), "y": rng.normal(0, 1, 3000), "z": 1.0})
    )
    current = pd.DataFrame({"x": ["oops"] * 2000, "y": rng.normal(0, 1, 2000)})
    result = run_check(profile, current)
    x, y, z = result.column("x"), result.column("y"), result.column("z")
    assert x.status == Status.ERROR
    assert x.message.startswith("current: ValueError: Unable to parse string")
    assert z.status == Status.ERROR
    assert z.message == "current: column 'z' is missing from the current data"
    assert (y.status, y.method) == (Status.OK, "wasserstein")
    assert (result.number_of_columns, result.number_of_drifted_columns) == (1, 0)
    json.dumps(result.to_dict())


def test_identifier_and_free_text_columns_are_excluded_with_a_reason():
    rng = np.random.default_rng(4)
    words = np.array(["late", "delivery", "broken", "great", "service", "refund", "box", "fast"])
    reference = pd.DataFrame(
        {
            "row_id": np.arange(3000),
            "order_code": [f"A{i:06d}" for i in range(3000)],
            "comment": [" ".join(rng.choice(words, 4)) for _ in range(3000)],
            "amount": rng.gamma(2, 10, 3000),
        }
    )
    profile = build_profile(reference)
    reasons = {name: column.excluded_reason for name, column in profile.columns.items()}
    assert reasons["row_id"] == "all values unique: a row index (each value is the previous one plus 1)"
    assert reasons["order_code"] == "all values unique"
    assert reasons["comment"].startswith("free text: ")
    assert reasons["amount"] is None
    result = run_check(profile, reference.iloc[:2000])
    assert [c.status for c in result.columns] == [Status.SKIPPED] * 3 + [Status.OK]
    assert result.column("comment").message == reasons["comment"]


def test_per_column_method_and_threshold_overrides():
    rng = np.random.default_rng(6)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 5000), "c": rng.choice(list("abc"), 5000)})
    current = pd.DataFrame({"x": rng.normal(0.15, 1, 3000), "c": rng.choice(list("abc"), 3000)})
    profile = build_profile(reference)
    default = run_check(profile, current).column("x")
    assert (default.method, default.threshold, default.status) == ("wasserstein", 0.1, Status.DRIFT)
    overridden = run_check(
        profile, current, {"methods": {"x": "psi", "c": "chisquare"}, "thresholds": {"x": 0.5, "c": 1e-6}}
    )
    x = overridden.column("x")
    assert (x.method, x.threshold, x.status) == ("psi", 0.5, Status.OK)
    assert (overridden.column("c").method, overridden.column("c").threshold) == ("chisquare", 1e-6)
    only_x = run_check(profile, current, {"columns": ["x"], "thresholds": {"x": 0.2}})
    assert [(c.column, c.threshold, c.status) for c in only_x.columns] == [("x", 0.2, Status.OK)]
    wrong = run_check(profile, current, {"methods": {"c": "ks"}}).column("c")
    assert wrong.status == Status.ERROR
    assert wrong.message == "ValueError: method 'ks' does not apply to categorical columns"
    with pytest.raises(ValueError, match="unknown method 'kolmogorov'"):
        CheckConfig(methods={"x": "kolmogorov"})
    with pytest.raises(ValueError, match="drift_share must be in"):
        CheckConfig(drift_share=0.0)


def test_dataset_verdict_is_the_share_of_drifted_columns():
    rng = np.random.default_rng(12)
    reference = pd.DataFrame({name: rng.normal(0, 1, 4000) for name in "abc"})
    current = pd.DataFrame(
        {"a": rng.normal(1, 1, 3000), "b": rng.normal(1, 1, 3000), "c": rng.normal(0, 1, 3000)}
    )
    profile = build_profile(reference)
    half = run_check(profile, current)
    assert (half.number_of_columns, half.number_of_drifted_columns) == (3, 2)
    assert half.share_of_drifted_columns == pytest.approx(2 / 3)
    assert half.is_dataset_drift
    assert half.drifted_columns == ["a", "b"]
    strict = run_check(profile, current, CheckConfig(drift_share=0.7))
    assert not strict.is_dataset_drift


# -- profiles: serialization, chunks, merging, bounded memory -------------------------------------
def test_profile_round_trips_through_json_and_gives_the_same_check():
    bike = pd.read_csv(BIKE)
    profile = build_profile(bike[bike.yr == 0])
    stored = json.loads(json.dumps(profile.to_dict()))
    restored = DatasetProfile.from_dict(stored)
    assert restored.to_dict() == profile.to_dict()
    current = bike[bike.yr == 1]
    assert run_check(restored, current).to_dict() == run_check(profile, current).to_dict()


def test_profile_from_chunks_equals_profile_of_the_whole_frame():
    bike = pd.read_csv(BIKE)
    whole = build_profile(bike)
    chunked = build_profile(bike.iloc[i : i + 1000] for i in range(0, len(bike), 1000))
    for name, column in whole.columns.items():
        other = chunked.columns[name]
        assert (other.kind, other.rows, other.missing, other.counts) == (
            column.kind,
            column.rows,
            column.missing,
            column.counts,
        )
        if column.sketch is None:
            continue
        assert (other.mean, other.std) == (
            pytest.approx(column.mean, rel=1e-12),
            pytest.approx(column.std, rel=1e-12),
        )
        if column.sketch.is_exact:
            assert other.sketch.to_dict() == column.sketch.to_dict()
    # The one binned column (the row number, 17,379 values) differs in its grid, not in its verdict.
    assert chunked.columns["instant"].sketch.is_binned
    assert chunked.columns["instant"].excluded_reason == whole.columns["instant"].excluded_reason
    merged = build_profile(bike.iloc[:9000])
    merged.merge(build_profile(bike.iloc[9000:]))
    assert merged.rows == whole.rows
    assert merged.columns["cnt"].sketch.to_dict() == whole.columns["cnt"].sketch.to_dict()
    assert merged.columns["instant"].excluded_reason == whole.columns["instant"].excluded_reason


def test_current_window_memory_does_not_grow_with_rows():
    rng = np.random.default_rng(13)
    reference = ColumnProfile.start("x", pd.Series([0.0]))
    reference.add(pd.Series(rng.normal(0, 1, 50_000)))
    current = ColumnProfile.for_current(reference)
    sizes = []
    for i in range(40):  # 2,000,000 values, wandering far outside the reference's range
        current.add(pd.Series(rng.normal(i * 0.5, 1 + i * 0.1, 50_000)))
        sizes.append(current.sketch.edges.size)
    assert current.count == 2_000_000
    assert max(sizes) <= reference.sketch.edges.size + MAX_EDGES
    categories = ColumnProfile.for_current(build_profile(pd.DataFrame({"c": list("ab") * 10})).columns["c"])
    for i in range(5):
        categories.add(pd.Series([f"new-{i}-{j}" for j in range(MAX_CATEGORIES // 4)]))
    assert len(categories.counts) <= 2 + 1_000
    assert categories.count == 5 * (MAX_CATEGORIES // 4)


# -- column rules of issue 11 ---------------------------------------------------------------------
def test_benjamini_hochberg_adjusted_p_values_equal_scipys():
    rng = np.random.default_rng(12)
    reference = pd.DataFrame({f"x{i}": rng.normal(0, 1, 800) for i in range(6)})
    current = pd.DataFrame({f"x{i}": rng.normal(0.04 * i, 1, 2500) for i in range(6)})
    profile = build_profile(reference)

    plain = run_check(profile, current)
    controlled = run_check(profile, current, {"multiple_testing": "bh"})

    p_values = [c.score for c in plain.columns]
    assert [c.method for c in plain.columns] == ["ks"] * 6
    assert [c.adjusted_score for c in controlled.columns] == pytest.approx(
        list(stats.false_discovery_control(p_values, method="bh")), rel=1e-12
    )
    assert [c.status for c in controlled.columns] == [
        Status.DRIFT if q <= 0.05 else Status.OK for q in stats.false_discovery_control(p_values)
    ]


def test_a_high_cardinality_profile_keeps_its_top_values_within_the_bound():
    rng = np.random.default_rng(13)
    # Zipf-like: about 15,700 distinct values in 60,000 rows, a few frequent ones.
    values = np.minimum(rng.zipf(1.1, 60_000), 10**7).astype(str)
    frame = pd.DataFrame({"code": values})
    whole = build_profile(frame)
    chunked = build_profile(frame, chunk_rows=7_000)
    column = whole.columns["code"]

    assert (column.kind, column.is_over_limit, len(column.counts)) == ("categorical", True, MAX_CATEGORIES)
    assert column.other_count + sum(column.counts.values()) == 60_000
    top = pd.Series(values).value_counts().head(50)
    assert {k: column.counts[k] for k in top.index} == top.astype(float).to_dict()
    # In chunks, the frequent values are never dropped: the same top counts.
    assert {k: chunked.columns["code"].counts[k] for k in top.index} == top.astype(float).to_dict()
    assert len(json.dumps(whole.to_dict())) < 400_000
    result = run_check(whole, frame.sample(5_000, random_state=1)).column("code")
    assert (result.status, result.top_k, result.unseen_categories) == (Status.OK, 50, ())

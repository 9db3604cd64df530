"""The drift engine (monitoring/engine): exact values, agreement with evidently, calibration, faults.

Every random draw uses a fixed seed, so each statistical test is deterministic; where a test checks a
rate, the trial count makes the tolerance several standard errors wide (see each test).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evidently import Report
from evidently.legacy.calculations.stattests.chisquare_stattest import _chi_stat_test
from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
from evidently.legacy.calculations.stattests.psi import _psi
from evidently.legacy.calculations.stattests.wasserstein_distance_norm import _wasserstein_distance_norm
from evidently.legacy.calculations.stattests.z_stattest import _z_stat_test
from evidently.legacy.core import ColumnType
from evidently.presets import DataDriftPreset
from scipy import integrate, stats
from scipy.spatial import distance

from monitoring.engine import CheckConfig, ColumnKind, DatasetProfile, Status, build_profile, run_check
from monitoring.engine import methods as m
from monitoring.engine.profile import MAX_CATEGORIES, ColumnProfile
from monitoring.engine.sketch import BINS, MAX_EDGES, NumericSketch

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
BIKE = SHARED_DATA / "bike-sharing" / "hour.csv"
if not BIKE.exists():
    BIKE = ROOT / "demo_data" / "bike-sharing" / "hour.csv"
ADULT = SHARED_DATA / "adult" / "adult.csv"
LN2 = math.log(2.0)


def sketch(values: np.ndarray) -> NumericSketch:
    return NumericSketch.from_values(np.asarray(values, dtype=float))


def on_grid_of(reference: NumericSketch, values: np.ndarray, chunks: int = 5) -> NumericSketch:
    """A current window counted on the reference's grid, chunk by chunk, as ``run_check`` does."""
    current = NumericSketch.on_edges(reference.edges)
    for part in np.array_split(values, chunks):
        current.add_values(part)
    return current


def evidently_verdicts(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, tuple[str, float, bool]]:
    """Per column: (method, score, drifted) from evidently's DataDriftPreset (its own defaults)."""
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        reference_data=reference, current_data=current
    )
    payload = snapshot.dict()
    metrics = {metric["id"]: metric for metric in payload["metrics"]}
    out = {}
    for test in payload["tests"]:
        metric = metrics.get(test.get("metric_config", {}).get("metric_id"))
        config = (metric or {}).get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            out[config["column"]] = (config["method"], float(metric["value"]), test["status"] == "FAIL")
    return out


def assert_same_verdicts(reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    ours = run_check(build_profile(reference), current)
    json.dumps(ours.to_dict())
    theirs = evidently_verdicts(reference, current)
    compared = {}
    for name, (_, _, drifted) in theirs.items():
        result = ours.column(name)
        if result.status == Status.SKIPPED:
            continue
        compared[name] = (result.is_drifted, drifted)
    disagree = {name: pair for name, pair in compared.items() if pair[0] != pair[1]}
    assert disagree == {}
    return {"ours": ours, "theirs": theirs, "compared": compared}


# -- exact agreement with the reference implementations -------------------------------------------
@pytest.mark.parametrize(
    ("n1", "n2", "shift", "decimals"),
    [
        (40, 40, 0.3, None),  # equal sizes: Gnedenko-Korolyuk closed form
        (37, 113, 0.0, None),  # coprime sizes: lattice paths
        (500, 800, 0.1, None),
        (1000, 2000, 0.05, None),
        (3000, 3000, 0.0, 1),  # heavy ties
        (9000, 10000, 0.02, None),  # largest exact case
        (20000, 15000, 0.02, 0),  # asymptotic regime, still exact summaries (few distinct values)
    ],
)
def test_ks_equals_scipy_on_the_same_raw_data(n1, n2, shift, decimals):
    rng = np.random.default_rng(n1 + n2)
    a, b = rng.normal(0, 10, n1), rng.normal(shift * 10, 10, n2)
    if decimals is not None:
        a, b = np.round(a, decimals), np.round(b, decimals)
    ours = m.ks_test(sketch(a), sketch(b))
    theirs = stats.ks_2samp(a, b)
    assert ours.is_exact
    assert ours.error_bound == 0.0
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-12, abs=1e-15)
    assert ours.score == pytest.approx(theirs.pvalue, rel=1e-9, abs=1e-12)


def test_ks_exact_p_values_match_scipy_across_the_lattice():
    # Every attainable D for small samples, including the extremes p = 1 and the smallest p.
    for n1, n2 in [(5, 7), (12, 12), (9, 21)]:
        lcm = math.lcm(n1, n2)
        for h in range(0, lcm + 1, max(1, lcm // 25)):
            d = h / lcm
            x, y = np.arange(n1) / n1, np.arange(n2) / n2 + d  # any data with this D
            theirs = stats.ks_2samp(x, y)
            ours_d, ours_p = m.ks_p_value(theirs.statistic, n1, n2)
            assert ours_d == pytest.approx(theirs.statistic, abs=1e-15)
            assert ours_p == pytest.approx(theirs.pvalue, rel=1e-9, abs=1e-13)


@pytest.mark.parametrize("n", [50, 1500, 9000])
def test_wasserstein_normed_equals_evidently(n):
    rng = np.random.default_rng(n)
    a, b = rng.lognormal(0, 1, n), rng.lognormal(0.2, 1.1, n // 2 + 3)
    ours = m.wasserstein_normed(sketch(a), sketch(b), float(np.std(a)))
    theirs, _ = _wasserstein_distance_norm(pd.Series(a), pd.Series(b), ColumnType.Numerical, 0.1)
    assert ours.is_exact
    assert ours.score == pytest.approx(theirs, rel=1e-9)


@pytest.mark.parametrize(
    ("make", "integer"),
    [
        (lambda rng, n, s: rng.normal(s, 1, n), False),  # Sturges bins
        (lambda rng, n, s: rng.poisson(30 + 5 * s, n).astype(float), True),  # integer data, width >= 1
        (lambda rng, n, s: rng.integers(0, 8 + int(3 * s), n).astype(float), True),  # <= 20 values: keys
    ],
)
def test_psi_and_jensen_shannon_equal_evidently_for_numeric_columns(make, integer):
    rng = np.random.default_rng(3)
    a, b = make(rng, 4000, 0.0), make(rng, 2500, 1.0)
    ref, cur, exact = m.numeric_shares(sketch(a), sketch(b), integer_dtype=integer)
    cast = (lambda x: x.astype(np.int64)) if integer else (lambda x: x)
    ra, rb = pd.Series(cast(a)), pd.Series(cast(b))
    assert exact
    assert m.psi(ref, cur) == pytest.approx(_psi(ra, rb, ColumnType.Numerical, 0.1)[0], rel=1e-12)
    evidently_js = _jensenshannon(ra, rb, ColumnType.Numerical, 0.1)[0]  # natural log
    assert m.jensen_shannon(ref, cur) * math.sqrt(LN2) == pytest.approx(evidently_js, rel=1e-12)


def test_psi_and_jensen_shannon_equal_evidently_for_categories():
    rng = np.random.default_rng(4)
    labels = np.array(list("abcdefg"), dtype=object)
    a = pd.Series(labels[rng.choice(7, 3000, p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.05, 0.05])])
    b = pd.Series(labels[rng.choice(6, 2000, p=[0.2, 0.2, 0.2, 0.2, 0.1, 0.1])])
    b.iloc[:40] = "new"
    ref, cur, keys = m.category_shares(a.value_counts().to_dict(), b.value_counts().to_dict())
    assert keys == ["a", "b", "c", "d", "e", "f", "g", "new"]
    assert m.psi(ref, cur) == pytest.approx(_psi(a, b, ColumnType.Categorical, 0.1)[0], rel=1e-12)
    evidently_js = _jensenshannon(a, b, ColumnType.Categorical, 0.1)[0]
    assert m.jensen_shannon(ref, cur) * math.sqrt(LN2) == pytest.approx(evidently_js, rel=1e-12)
    assert m.jensen_shannon(ref, cur) == pytest.approx(distance.jensenshannon(ref, cur, base=2), rel=1e-12)


def test_js_default_threshold_is_evidently_boundary_in_base_2():
    assert m.DEFAULT_THRESHOLDS["jensenshannon"] == pytest.approx(0.1 / math.sqrt(LN2), rel=1e-15)
    # Just inside and outside evidently's natural-log boundary of 0.1.
    for natural, drifted in [(0.0999, False), (0.1001, True)]:
        assert (
            m.is_drift("jensenshannon", natural / math.sqrt(LN2), m.DEFAULT_THRESHOLDS["jensenshannon"])
            is drifted
        )


@pytest.mark.parametrize(
    ("ref_counts", "cur_counts"),
    [([120, 80], [90, 110]), ([50, 40, 30, 20, 10], [45, 45, 20, 20, 20]), ([10, 0, 5], [0, 7, 5])],
)
def test_chi_square_equals_scipy_chi2_contingency(ref_counts, cur_counts):
    ours = m.chi_square_contingency(np.array(ref_counts), np.array(cur_counts))
    table = np.array([ref_counts, cur_counts])
    theirs = stats.chi2_contingency(table[:, table.sum(axis=0) > 0])
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-12)
    assert ours.score == pytest.approx(theirs.pvalue, rel=1e-12)


def test_z_test_equals_evidently():
    ref = pd.Series(["no"] * 700 + ["yes"] * 300)
    cur = pd.Series(["no"] * 520 + ["yes"] * 280)
    theirs, _ = _z_stat_test(ref, cur, ColumnType.Categorical, 0.05)
    ours = m.two_proportion_z_test(300, 1000, 280, 800)
    assert ours.score == pytest.approx(theirs, rel=1e-12)
    assert m.two_proportion_z_test(0, 900, 0, 1200).score == 1.0  # both constant: evidently's p = 1


def test_binned_statistics_stay_within_their_error_bounds():
    rng = np.random.default_rng(11)
    a = rng.standard_t(4, 300_000)
    b = rng.standard_t(4, 120_000) * 1.1 + 0.05
    reference = sketch(a)
    assert reference.is_binned
    assert reference.edges.size <= MAX_EDGES
    current = on_grid_of(reference, b)
    ks = m.ks_test(reference, current)
    truth = stats.ks_2samp(a, b)
    assert not ks.is_exact
    assert abs(ks.statistic - truth.statistic) <= ks.error_bound
    assert ks.error_bound <= 2.0 / BINS
    wd = m.wasserstein_normed(reference, current, float(np.std(a)))
    truth_w = stats.wasserstein_distance(a, b) / np.std(a)
    assert abs(wd.score - truth_w) <= wd.error_bound
    assert wd.error_bound < 1e-3
    # Two independently binned sketches (different grids): still inside the (looser) bound.
    other = sketch(b)
    assert other.is_binned
    wd2 = m.wasserstein_normed(reference, other, float(np.std(a)))
    assert abs(wd2.score - truth_w) <= wd2.error_bound


# -- closed-form values ---------------------------------------------------------------------------
@pytest.mark.parametrize("d", [0.2, 0.5, 1.0])
def test_normal_shift_gives_closed_form_ks_and_wasserstein(d):
    """N(0,1) vs N(d,1): D -> 2 * Phi(d/2) - 1 and the normed Wasserstein distance -> d.

    n = 200,000 a side (binned summaries). K-S: by the DKW inequality with Massart's constant,
    P(sup |F_n - F| > e) <= 2 exp(-2 n e^2); e = sqrt(ln(2 / 1e-6) / (2 n)) = 0.0060 per side, so
    |D_nm - D| <= 2e except with probability 4e-6, plus the summary's own bound. Wasserstein:
    E W1(F_n, F) = integral of E|F_n - F| <= integral of sqrt(F (1 - F) / n) = J / sqrt(n) (Jensen);
    we allow 5x that per side, plus 5x the reference std's relative error sqrt(1 / (2n)) times d.
    """
    n = 200_000
    rng = np.random.default_rng(int(d * 100))
    a, b = rng.normal(0, 1, n), rng.normal(d, 1, n)
    reference = sketch(a)
    current = on_grid_of(reference, b)
    ks = m.ks_test(reference, current)
    eps = math.sqrt(math.log(2 / 1e-6) / (2 * n))
    assert ks.statistic == pytest.approx(2 * stats.norm.cdf(d / 2) - 1, abs=2 * eps + ks.error_bound)
    j, _ = integrate.quad(lambda x: math.sqrt(stats.norm.cdf(x) * stats.norm.sf(x)), -np.inf, np.inf)
    wd = m.wasserstein_normed(reference, current, float(np.std(a)))
    tolerance = 2 * 5 * j / math.sqrt(n) + d * 5 * math.sqrt(1 / (2 * n)) + wd.error_bound
    assert wd.score == pytest.approx(d, abs=tolerance)


def test_disjoint_categories_give_js_distance_exactly_one():
    ref, cur, _ = m.category_shares({"a": 10, "b": 5}, {"c": 3, "d": 9})
    assert m.jensen_shannon(ref, cur) == 1.0
    reference = pd.DataFrame({"colour": ["red", "green"] * 1500})
    current = pd.DataFrame({"colour": ["blue", "black", "white"] * 1000})
    result = run_check(build_profile(reference), current).column("colour")
    assert (result.method, result.score, result.status) == ("jensenshannon", 1.0, Status.DRIFT)
    assert result.unseen_share == 1.0


# -- agreement with evidently's DataDriftPreset ---------------------------------------------------
def test_verdicts_agree_with_evidently_on_bike_sharing_2011_vs_2012():
    bike = pd.read_csv(BIKE)
    outcome = assert_same_verdicts(bike[bike.yr == 0], bike[bike.yr == 1])
    drifted = {name for name, (ours, _) in outcome["compared"].items() if ours}
    assert drifted == {"dteday", "yr", "hum", "casual", "registered", "cnt"}
    assert len(outcome["compared"]) == 16
    # The row number is an identifier: evidently calls it drift, we skip it with a reason.
    instant = outcome["ours"].column("instant")
    assert instant.status == Status.SKIPPED
    assert instant.message.startswith("all values unique")
    # Same method and the same score where both sides are exact.
    for name in ("temp", "hum", "cnt"):
        method, score, _ = outcome["theirs"][name]
        assert method == "Wasserstein distance (normed)"
        assert outcome["ours"].column(name).score == pytest.approx(score, rel=1e-9)


@pytest.mark.skipif(not ADULT.exists(), reason="the adult data set is in ../shared/data only")
def test_verdicts_agree_with_evidently_on_adult():
    adult = pd.read_csv(ADULT)
    by_sex = assert_same_verdicts(adult[adult.sex == " Male"], adult[adult.sex == " Female"])
    drifted = {name for name, (ours, _) in by_sex["compared"].items() if ours}
    assert drifted == {
        "age",
        "workclass",
        "education-num",
        "marital-status",
        "occupation",
        "relationship",
        "sex",
        "hours-per-week",
        "label",
    }
    assert len(by_sex["compared"]) == 15
    # A random half against a shifted subset (people over 50) of the other half.
    shuffled = adult.sample(frac=1.0, random_state=7)
    half = len(shuffled) // 2
    reference, rest = shuffled.iloc[:half], shuffled.iloc[half:]
    shifted = assert_same_verdicts(reference, rest[rest.age > 50])
    assert shifted["ours"].column("age").is_drifted
    assert not shifted["ours"].column("race").is_drifted
    # And a random half against the other half: nothing drifts.
    same = assert_same_verdicts(reference, rest)
    assert same["ours"].number_of_drifted_columns == 0


def test_verdicts_agree_with_evidently_on_synthetic_shifts():
    rng = np.random.default_rng(21)

    def frame(n: int, shift: bool) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "moved": rng.normal(0.6 if shift else 0.0, 1, n),
                "steady": rng.normal(0, 1, n),
                "wider": rng.normal(0, 2.0 if shift else 1.0, n),
                "flag": rng.random(n) < (0.5 if shift else 0.3),
                "plan": rng.choice(
                    ["basic", "pro", "team"], n, p=[0.2, 0.3, 0.5] if shift else [0.5, 0.3, 0.2]
                ),
            }
        )

    # Small reference (K-S, Z and chi-square), then large (Wasserstein and Jensen-Shannon).
    for n_ref, n_cur in [(800, 2000), (6000, 3000)]:
        outcome = assert_same_verdicts(frame(n_ref, False), frame(n_cur, True))
        assert outcome["compared"] == {
            "moved": (True, True),
            "steady": (False, False),
            "wider": (True, True),
            "flag": (True, True),
            "plan": (True, True),
        }


def test_evidently_chi_square_over_rejects_where_ours_holds_its_level():
    """Evidently's chi-square treats the reference shares as exact (a goodness-of-fit test), which
    triples the variance it ignores at 1,000 reference vs 2,000 current rows; the contingency test
    accounts for both samples. 400 no-drift trials: SE of a 5 % rate is 0.011."""
    rng = np.random.default_rng(5)
    shares = [0.4, 0.25, 0.15, 0.12, 0.08]
    labels = np.array(list("abcde"), dtype=object)
    evidently_alarms = our_alarms = 0
    trials = 400
    for _ in range(trials):
        ref = pd.Series(labels[rng.choice(5, 1000, p=shares)])
        cur = pd.Series(labels[rng.choice(5, 2000, p=shares)])
        evidently_alarms += bool(_chi_stat_test(ref, cur, ColumnType.Categorical, 0.05)[1])
        counts = [ref.value_counts().reindex(list("abcde"), fill_value=0), cur.value_counts()]
        ours = m.chi_square_contingency(
            counts[0].to_numpy(), counts[1].reindex(list("abcde"), fill_value=0).to_numpy()
        )
        our_alarms += ours.score < 0.05
    assert evidently_alarms / trials > 0.4
    assert abs(our_alarms / trials - 0.05) <= 0.02


# -- calibration and power ------------------------------------------------------------------------
def test_p_value_tests_hold_their_level_at_the_minimum_sample_size():
    """K-S, chi-square and Z with no drift: false alarms at alpha = 0.05 within 0.05 +- 0.02.

    Reference 1,000 rows (evidently picks the p-value tests up to 1,000), current window of the
    minimum size, 4 independent columns per method x 300 checks = 1,200 trials per method: the
    standard error of a 5 % rate is 0.0063, so +- 0.02 is more than 3 standard errors.
    """
    rng = np.random.default_rng(2024)
    n_cur = CheckConfig().min_sample_size
    shares = [0.35, 0.25, 0.2, 0.12, 0.08]

    def frame(n: int) -> pd.DataFrame:
        data = {}
        for i in range(4):
            data[f"x{i}"] = rng.normal(0, 1, n)
            data[f"c{i}"] = rng.choice(list("abcde"), n, p=shares)
            data[f"b{i}"] = rng.random(n) < 0.3
        return pd.DataFrame(data)

    alarms = {"ks": 0, "chisquare": 0, "z": 0}
    checks = 300
    for _ in range(checks):
        result = run_check(build_profile(frame(1000)), frame(n_cur))
        for column in result.columns:
            assert column.status in (Status.OK, Status.DRIFT)
            alarms[column.method] += column.is_drifted
    rates = {method: count / (4 * checks) for method, count in alarms.items()}
    assert all(abs(rate - 0.05) <= 0.02 for rate in rates.values()), rates


def test_distance_methods_alarm_at_most_five_percent_at_the_minimum_sample_size():
    """Wasserstein, PSI and Jensen-Shannon at their default thresholds, no drift, reference of 1,001
    rows (the smallest that gets distances) and a current window of the minimum size. Wasserstein on
    normal, lognormal and Student-t(3) data (the heavy tail is the hardest case), 250 checks."""
    rng = np.random.default_rng(99)
    n_cur = CheckConfig().min_sample_size
    config = CheckConfig(methods={"p": "psi"})
    twenty = rng.dirichlet(np.full(20, 2.0))

    def frame(n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "normal": rng.normal(0, 1, n),
                "lognormal": rng.lognormal(0, 1, n),
                "t3": rng.standard_t(3, n),
                "p": rng.normal(0, 1, n),
                "five": rng.choice(5, n).astype(str),
                "twenty": rng.choice(20, n, p=twenty).astype(str),
            }
        )

    alarms = {"wasserstein": 0, "psi": 0, "jensenshannon": 0}
    trials = {"wasserstein": 0, "psi": 0, "jensenshannon": 0}
    for _ in range(250):
        for column in run_check(build_profile(frame(1001)), frame(n_cur), config).columns:
            alarms[column.method] += column.is_drifted
            trials[column.method] += 1
    rates = {method: alarms[method] / trials[method] for method in alarms}
    assert trials == {"wasserstein": 750, "psi": 250, "jensenshannon": 500}
    assert all(rate <= 0.05 for rate in rates.values()), rates


def test_a_fifth_of_a_std_mean_shift_in_5000_row_windows_is_detected():
    """0.2-std shift, 5,000 rows a side: the default Wasserstein (and K-S when chosen) flag it in
    >= 99 % of 150 checks x 4 columns."""
    rng = np.random.default_rng(7)
    config = CheckConfig(methods={"k": "ks"})
    detected = total = 0
    for _ in range(150):
        reference = pd.DataFrame({name: rng.normal(5, 2, 5000) for name in ("a", "b", "c", "k")})
        current = pd.DataFrame({name: rng.normal(5 + 0.4, 2, 5000) for name in ("a", "b", "c", "k")})
        result = run_check(build_profile(reference), current, config)
        detected += result.number_of_drifted_columns
        total += len(result.columns)
    assert detected / total >= 0.99


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
    assert (v.status, v.method, v.score) == (Status.OK, "missing_rate", 1.0)
    assert (v.reference_missing_rate, v.current_missing_rate) == (1.0, 1.0)
    assert both_null.column("w").status == Status.OK  # the other column is unaffected
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

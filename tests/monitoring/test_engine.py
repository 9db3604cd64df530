"""The drift engine (monitoring/engine): exact values, agreement with evidently, calibration and power.

Every random draw uses a fixed seed, so each statistical test is deterministic; where a test checks a
rate, the trial count makes the tolerance several standard errors wide (see each test).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from evidently.legacy.calculations.stattests.chisquare_stattest import _chi_stat_test
from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
from evidently.legacy.calculations.stattests.psi import _psi
from evidently.legacy.calculations.stattests.wasserstein_distance_norm import _wasserstein_distance_norm
from evidently.legacy.calculations.stattests.z_stattest import _z_stat_test
from evidently.legacy.core import ColumnType
from scipy import integrate, stats
from scipy.spatial import distance

from monitoring.engine import CheckConfig, Status, build_profile, run_check
from monitoring.engine import methods as m
from monitoring.engine.sketch import BINS, MAX_EDGES
from tests.conftest import ADULT
from tests.conftest import BIKE_HOURLY as BIKE
from tests.monitoring.engine_helpers import assert_same_verdicts, on_grid_of, sketch

LN2 = math.log(2.0)


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
    # Evidently reads integers with more than 10 values as numbers; ours are categories up to 20
    # values (issue 11), so the comparison asks for evidently's kind of education-num (16 codes).
    like_evidently = {"column_kinds": {"education-num": "numeric"}}
    men, women = adult[adult.sex == " Male"], adult[adult.sex == " Female"]
    by_sex = assert_same_verdicts(men, women, like_evidently)
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
    # By our rule the codes are compared as categories: their shares differ less than the
    # normed distance of the code numbers says, and the verdict changes.
    codes = run_check(build_profile(men), women).column("education-num")
    assert (codes.kind, codes.method, codes.status) == ("categorical", "jensenshannon", Status.OK)
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

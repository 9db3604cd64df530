"""Multivariate drift (issue 11, "Beyond tables"): a domain classifier and PCA reconstruction error
see a change in correlations that every per-column test misses; off by default; through the API,
the drift check page and a real worker."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from governance.actions.datasets import do_create_dataset
from monitoring.engine import build_profile, run_check
from monitoring.engine.multivariate import MIN_ROWS, run_multivariate
from monitoring.execute import execute_drift_check
from monitoring.models import DriftCheck
from tests.conftest import DRIFT_COLUMNS
from tests.monitoring.conftest import register_frame
from tests.monitoring.test_column_rules import _wait_for, report_worker  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def _correlated(rows: int, rho: float, seed: int) -> pd.DataFrame:
    """``a`` and ``b`` standard normal with correlation ``rho``; ``c`` normal and ``colour``
    categorical, independent of them."""
    rng = np.random.default_rng(seed)
    ab = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=rows)
    return pd.DataFrame(
        {
            "a": ab[:, 0],
            "b": ab[:, 1],
            "c": rng.normal(size=rows),
            "colour": rng.choice(["red", "green", "blue"], size=rows),
        }
    )


def _top_two(result) -> set[str]:
    return {item["feature"] for item in result.top_features[:2]}


def test_a_flipped_correlation_is_seen_by_both_tests_and_by_no_column():
    reference, current = _correlated(4000, 0.8, seed=1), _correlated(4000, -0.8, seed=2)

    columns = run_check(build_profile(reference), current)
    classifier, pca = run_multivariate(reference, current, max_rows=2000)

    # Same marginals: every column's own test says no drift.
    assert [(c.column, c.status.value) for c in columns.columns] == [
        ("a", "ok"),
        ("b", "ok"),
        ("c", "ok"),
        ("colour", "ok"),
    ]
    assert (classifier.status, classifier.reference_rows, classifier.current_rows) == ("drift", 2000, 2000)
    assert classifier.statistic > 0.8 > classifier.threshold  # ROC AUC far above its null quantile
    assert classifier.p_value == pytest.approx(1 / 201)  # no permutation reached it
    assert _top_two(classifier) == {"a", "b"}
    assert pca.status == "drift"
    assert pca.statistic > pca.threshold
    assert _top_two(pca) == {"a", "b"}
    assert pca.components == 3  # of 1 + 1 + 1 + 4 encoded features, for 65 % of the variance


def test_the_same_correlation_is_no_drift():
    reference, current = _correlated(4000, 0.8, seed=1), _correlated(4000, 0.8, seed=2)

    results = run_multivariate(reference, current, max_rows=2000)

    assert [(r.test, r.status) for r in results] == [("domain_classifier", "ok"), ("pca", "ok")]
    classifier, pca = results
    assert classifier.statistic <= classifier.threshold
    assert pca.lower_bound <= pca.statistic <= pca.threshold


def test_messy_and_tiny_inputs_give_a_reason_never_an_exception():
    rng = np.random.default_rng(0)
    rows = 500
    messy = pd.DataFrame(
        {
            "x": np.where(rng.random(rows) < 0.3, np.nan, rng.normal(size=rows)),
            "empty": np.full(rows, np.nan),
            "when": pd.date_range("2024-01-01", periods=rows, freq="h"),
            "city": np.where(rng.random(rows) < 0.2, None, rng.choice(["a", "b"], size=rows)),
            "flag": rng.random(rows) < 0.5,
            "constant": np.ones(rows),
        }
    )

    tested = run_multivariate(messy, messy.sample(frac=1.0, random_state=1))
    tiny = run_multivariate(messy.head(MIN_ROWS - 1), messy)
    nothing = run_multivariate(messy[["empty", "when"]], messy[["empty", "when"]])
    late = run_multivariate(messy, messy, time_limit_s=0.0)

    assert [(r.status, r.features, r.excluded) for r in tested] == [
        ("ok", 4, ("empty", "when")),
        ("ok", 4, ("empty", "when")),
    ]
    assert [r.to_dict()["message"] for r in tiny] == [
        "not enough rows: 99 reference and 500 current rows; each side needs at least 100"
    ] * 2
    assert [r.status for r in tiny] == ["insufficient_data"] * 2
    assert nothing[0].message == (
        "no column with reference values to compare (datetime and all-null columns are left out)"
    )
    assert [(r.status, r.message) for r in late] == [
        ("time_limit", "stopped at its time limit before: fitting the domain classifier"),
        ("time_limit", "stopped at its time limit before: fitting the PCA"),
    ]


def test_two_samples_of_the_bike_data_rarely_alarm(bike_frame):
    # Calibration: 20 seeded pairs of disjoint random samples of the same rows (no drift at all).
    # The permutation test's level is alpha = 5 % (1 of 20 expected); PCA's 3-sigma bound about
    # 0.3 %. Measured: 2 of 20 and 0 of 20 (printed below; over 400 trials 6.8 % and 1.2 %,
    # benchmarks/bench_multivariate.py --calibration); 5 or more of 20 has a chance of 0.3 % for a
    # 5 % test, so it would mean a broken test (as levels picked on one side once did: 7).
    frame = bike_frame.drop(columns=["instant"])
    alarms = {"domain_classifier": 0, "pca": 0}
    for trial in range(20):
        order = np.random.default_rng(trial).permutation(len(frame))
        reference, current = frame.iloc[order[:2000]], frame.iloc[order[2000:4000]]
        for result in run_multivariate(reference, current, seed=trial, permutations=100):
            assert result.status in ("ok", "drift"), result.message
            alarms[result.test] += result.is_drifted
    print(f"false alarms in 20 no-drift trials: {alarms}")
    assert alarms["domain_classifier"] <= 4
    assert alarms["pca"] <= 4


# Through the API, the worker and the drift check page ---------------------------------------------


@pytest.fixture
def repaired_atemp(dataset, scientist, bike_frame, tmp_path):
    """The 2011 rows with ``atemp`` re-paired so it falls as ``temp`` rises: every column keeps its
    values exactly (no column can drift), the two columns' correlation goes from +0.99 to -0.99."""
    rows = bike_frame[bike_frame["yr"] == 0].reset_index(drop=True)
    flipped = rows.copy()
    flipped.loc[rows["temp"].sort_values(kind="stable").index, "atemp"] = np.sort(rows["atemp"].to_numpy())[
        ::-1
    ]
    current = do_create_dataset(team=dataset.team, name="bike-2011-atemp-flipped", actor=scientist)
    return register_frame(current, flipped, tmp_path / "flipped.csv", scientist)


def test_a_check_asked_for_multivariate_drift_stores_and_shows_it(
    client, client_for, scientist, registered_version, repaired_atemp
):
    api = client_for(scientist)
    client.force_login(scientist)  # the pages
    payload = {"model_version": registered_version.pk, "current_dataset_version": repaired_atemp.pk}
    response = api.post(
        "/api/drift-checks/",
        {**payload, "multivariate": ["domain_classifier", "pca"], "multivariate_max_rows": 2000},
        format="json",
    )
    assert response.status_code == 201, response.json()
    plain = api.post("/api/drift-checks/", {**payload, "make_report": False}, format="json").json()

    for check_id in (response.json()["id"], plain["id"]):
        assert execute_drift_check(check_id, make_report=False) == "succeeded"

    check = DriftCheck.objects.get(pk=response.json()["id"])
    assert check.config["engine"]["multivariate"] == ["domain_classifier", "pca"]
    assert (check.drifted_count, check.is_dataset_drift) == (0, False)  # no column moved
    assert [(t["test"], t["status"], t["reference_rows"], t["current_rows"]) for t in check.multivariate] == [
        ("domain_classifier", "drift", 2000, 2000),
        ("pca", "drift", 2000, 2000),
    ]
    for test in check.multivariate:
        assert {item["feature"] for item in test["top_features"][:2]} == {"temp", "atemp"}
        assert test["features"] == len(DRIFT_COLUMNS)
    assert [v.label for v in check.verdicts] == [
        "No data drift",
        "Prediction drift not measured",
        "Performance not measured",
        "Multivariate drift: domain_classifier, pca",
    ]
    stored = api.get(f"/api/drift-checks/{check.pk}/").json()
    assert [t["test"] for t in stored["multivariate"]] == ["domain_classifier", "pca"]
    page = client.get(check.get_absolute_url()).content.decode()
    assert "<h2>Multivariate drift</h2>" in page
    assert "Domain classifier (ROC AUC)" in page
    assert "PCA reconstruction error" in page
    assert "<code>temp</code>" in page
    assert "<code>atemp</code>" in page

    # Off by default: nothing run, stored or shown.
    default = DriftCheck.objects.get(pk=plain["id"])
    assert (default.config["engine"]["multivariate"], default.multivariate, len(default.verdicts)) == (
        [],
        [],
        3,
    )
    assert "Multivariate drift" not in client.get(default.get_absolute_url()).content.decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["nope"], None),
        ("pca", None),
        (["pca", "pca"], "multivariate must be a list of distinct tests"),
        # Hostile review (issue 11): odd JSON types are 400s naming the field, never a 500.
        ([None], None),
        ([{"pca": True}], None),
        ([["pca"]], None),
        (5, None),
        (None, None),
        ({"pca": True}, None),
        (["pca\x00"], None),
    ],
)
def test_bad_multivariate_options_are_400_naming_the_field(
    client_for, scientist, registered_version, current_dataset_version, value, message
):
    client = client_for(scientist)
    base = {"model_version": registered_version.pk, "current_dataset_version": current_dataset_version.pk}

    response = client.post("/api/drift-checks/", {**base, "multivariate": value}, format="json")
    rows = client.post("/api/drift-checks/", {**base, "multivariate_max_rows": 10}, format="json")
    monitor = client.post(
        "/api/monitors/",
        {"model_version": registered_version.pk, "name": "mv", "multivariate": value},
        format="json",
    )

    assert (response.status_code, list(response.json())) == (400, ["multivariate"])
    if message:
        assert str(response.json()["multivariate"]).count(message) == 1
    assert (rows.status_code, list(rows.json())) == (400, ["multivariate_max_rows"])
    assert (monitor.status_code, list(monitor.json())) == (400, ["multivariate"])
    assert DriftCheck.objects.count() == 0


def test_a_monitor_runs_its_multivariate_tests(client_for, scientist, registered_version, repaired_atemp):
    client = client_for(scientist)
    created = client.post(
        "/api/monitors/",
        {
            "model_version": registered_version.pk,
            "name": "joint",
            "source": "dataset",
            "current_dataset": repaired_atemp.dataset_id,
            "multivariate": ["pca"],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["multivariate"] == ["pca"]

    run = client.post(f"/api/monitors/{created.json()['id']}/run/")
    execute_drift_check(run.json()["id"], make_report=False)

    check = DriftCheck.objects.get(pk=run.json()["id"])
    assert [(t["test"], t["status"]) for t in check.multivariate] == [("pca", "drift")]
    assert check.config["engine"]["multivariate"] == ["pca"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_multivariate_tests(
    report_worker,  # noqa: F811
    client_for,
    scientist,
    registered_version,
    repaired_atemp,
):
    response = client_for(scientist).post(
        "/api/drift-checks/",
        {
            "model_version": registered_version.pk,
            "current_dataset_version": repaired_atemp.pk,
            "multivariate": ["domain_classifier", "pca"],
            "multivariate_max_rows": 1000,
            "make_report": False,
        },
        format="json",
    )
    check_id = response.json()["id"]

    _wait_for("finished", lambda: DriftCheck.objects.get(pk=check_id).state in ("succeeded", "failed"))

    check = DriftCheck.objects.get(pk=check_id)
    assert (check.state, check.error, check.drifted_count) == ("succeeded", "", 0)
    assert [(t["test"], t["status"]) for t in check.multivariate] == [
        ("domain_classifier", "drift"),
        ("pca", "drift"),
    ]
    assert check.verdicts[-1].label == "Multivariate drift: domain_classifier, pca"


def test_infinities_one_row_and_an_id_column_give_a_verdict_or_a_reason():
    """Hostile review (issue 11): infinite values, a single row, and a categorical column with a
    distinct value per row (200,000 ids) are bounded and never raise."""
    rng = np.random.default_rng(0)
    rows = 200_000
    reference = pd.DataFrame(
        {
            "id": [f"user-{i}" for i in range(rows)],
            "x": rng.normal(size=rows),
            "all_inf": np.where(rng.random(rows) < 0.5, np.inf, -np.inf),
        }
    )
    current = reference.assign(x=reference["x"].where(rng.random(rows) < 0.9, np.inf))

    started = time.monotonic()
    tested = run_multivariate(reference, current, permutations=20)
    one = run_multivariate(reference.head(1), current.head(1))

    assert time.monotonic() - started < 60
    assert [(r.status, r.features, r.excluded, r.reference_rows) for r in tested] == [
        ("drift", 2, ("all_inf",), 5000),
        ("drift", 2, ("all_inf",), 5000),
    ]
    assert [r.status for r in one] == ["insufficient_data"] * 2


def test_pca_on_a_single_binary_column_does_not_alarm_on_rounding_noise():
    """Hostile review (issue 11): one binary column's one-hot is of rank 1, so its PCA
    reconstruction is exact up to rounding (~1e-16) and the bounds of that noise alarmed in 1 of
    20 no-drift trials; errors at rounding level now count as 0."""
    statuses, messages = [], set()
    for seed in range(20):
        rng = np.random.default_rng(seed)
        reference = pd.DataFrame({"c": rng.choice(["a", "b"], 600)})
        current = pd.DataFrame({"c": rng.choice(["a", "b"], 600)})
        (result,) = run_multivariate(reference, current, ["pca"])
        statuses.append(result.status)
        messages.add(result.message)
    assert statuses == ["ok"] * 20
    assert messages == {
        "mean reconstruction error 0 inside [0, 0] (1 components keep 65% of the reference variance)"
    }

"""Column rules that must not change verdicts by accident, and the report off the check's path
(issue 11), through the API on the real bike and adult data."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from celery.contrib.testing.worker import start_worker
from django.utils.html import escape

import config.celery
from governance.actions.datasets import do_create_dataset
from monitoring.execute import execute_drift_check
from monitoring.models import Alert, DriftCheck
from monitoring.reports import execute_drift_report
from tests.conftest import ADULT, DRIFT_COLUMNS
from tests.monitoring.conftest import register_frame

pytestmark = pytest.mark.django_db


def _check(client, payload: dict) -> DriftCheck:
    response = client.post("/api/drift-checks/", payload, format="json")
    assert response.status_code == 201, response.json()
    execute_drift_check(response.json()["id"], make_report=False)
    return DriftCheck.objects.get(pk=response.json()["id"])


def _monitor_check(client, payload: dict) -> DriftCheck:
    response = client.post("/api/monitors/", payload, format="json")
    assert response.status_code == 201, response.json()
    run = client.post(f"/api/monitors/{response.json()['id']}/run/")
    assert run.status_code == 201, run.json()
    execute_drift_check(run.json()["id"], make_report=False)
    return DriftCheck.objects.get(pk=run.json()["id"])


def _by_column(check: DriftCheck) -> dict[str, dict]:
    return {result["column"]: result for result in check.results}


def test_an_all_null_column_is_no_data_and_not_counted(
    client, client_for, scientist, registered_version, dataset, bike_frame, tmp_path
):
    # atemp emptied on both sides (e.g. a sensor that was never installed): 2011 vs 2012.
    rows_2011 = bike_frame[bike_frame["yr"] == 0].assign(atemp=np.nan)
    rows_2012 = bike_frame[bike_frame["yr"] == 1].assign(atemp=np.nan)
    reference = register_frame(dataset, rows_2011, tmp_path / "2011.csv", scientist)
    current_dataset = do_create_dataset(team=dataset.team, name="bike-2012-no-atemp", actor=scientist)
    register_frame(current_dataset, rows_2012, tmp_path / "2012.csv", scientist)

    check = _monitor_check(
        client_for(scientist),
        {
            "model_version": registered_version.pk,
            "name": "no-atemp",
            "reference_dataset_version": reference.pk,
            "source": "dataset",
            "current_dataset": current_dataset.pk,
        },
    )

    atemp = _by_column(check)["atemp"]
    assert (atemp["status"], atemp["method"], atemp["message"]) == (
        "no_data",
        None,
        "no values in the reference or the current data",
    )
    # hum and cnt drift among the 11 columns with a verdict (it was 2 of 12 with atemp "ok").
    assert [c["column"] for c in check.drifted_columns] == ["hum", "cnt"]
    assert (check.drifted_count, check.drifted_fraction) == (2, 2 / 11)
    # The check's page says so too: 2 of the 11 tested columns, atemp's row "no_data".
    client.force_login(scientist)
    page = client.get(check.get_absolute_url()).content.decode()
    assert "<strong>2 of 11</strong> columns drifted" in page
    assert "<td>no_data</td>" in page
    assert "no values in the reference or the current data" in page


def test_integer_codes_are_categories_and_the_kind_can_be_overridden(
    client_for, scientist, registered_version, dataset, bike_frame, tmp_path
):
    # mnth holds 12 codes: numbers by evidently's rule (<= 10 values), categories by ours (<= 20).
    rows = bike_frame[bike_frame["yr"] == 1].copy()
    rows.loc[rows.index[rows["mnth"] == 12], "mnth"] = 13  # an upstream recoding: a code never seen
    current = register_frame(dataset, rows, tmp_path / "2012-recoded.csv", scientist)
    client = client_for(scientist)
    payload = {"model_version": registered_version.pk, "current_dataset_version": current.pk}

    codes = _by_column(_check(client, payload))["mnth"]
    numbers = _by_column(_check(client, {**payload, "column_kinds": {"mnth": "numeric"}}))["mnth"]

    december = float((rows["mnth"] == 13).mean())
    assert (codes["kind"], codes["method"]) == ("categorical", "jensenshannon")
    assert codes["unseen_categories"] == [{"value": "13", "share": december}]
    assert codes["unseen_share"] == december
    assert (numbers["kind"], numbers["method"], numbers["unseen_categories"]) == (
        "numeric",
        "wasserstein",
        [],
    )
    # hr holds 24 values: still numbers.
    assert _by_column(DriftCheck.objects.order_by("id").first())["hr"]["kind"] == "numeric"


def test_a_high_cardinality_column_is_tested_on_its_top_values(
    client, client_for, scientist, registered_version, team, tmp_path
):
    # occupation | native country | age | hours a week: 11,208 values in the adult data's 32,561 rows.
    adult = pd.read_csv(ADULT)
    keyed = adult.assign(
        profile=adult[["occupation", "native-country", "age", "hours-per-week"]]
        .astype(str)
        .agg("|".join, axis=1)
    )
    census = do_create_dataset(team=team, name="adult", actor=scientist)
    reference = register_frame(census, keyed, tmp_path / "adult.csv", scientist)
    samples = do_create_dataset(team=team, name="adult-batches", actor=scientist)
    api = client_for(scientist)
    monitor = {
        "model_version": registered_version.pk,
        "reference_dataset_version": reference.pk,
        "source": "dataset",
        "current_dataset": samples.pk,
        "columns": ["profile"],
    }

    register_frame(samples, keyed.sample(10_000, random_state=3), tmp_path / "random.csv", scientist)
    same = _by_column(_monitor_check(api, {**monitor, "name": "random"}))["profile"]
    register_frame(samples, keyed[keyed["age"] > 50], tmp_path / "over-50.csv", scientist)
    older = _by_column(_monitor_check(api, {**monitor, "name": "over 50", "top_k": 20}))["profile"]

    # Skipped before issue 11 ("high cardinality"); now compared on the top 50 (20) values + other.
    assert (same["kind"], same["status"], same["method"], same["top_k"]) == (
        "categorical",
        "ok",
        "jensenshannon",
        50,
    )
    assert (older["kind"], older["status"], older["top_k"]) == ("categorical", "drift", 20)
    assert 0.85 < same["reference_other_share"] < 1.0
    assert older["other_share"] == pytest.approx(
        1 - keyed.loc[keyed["age"] > 50, "profile"].isin(keyed["profile"].value_counts().index[:20]).mean()
    )
    assert "compared on the top 20 values" in older["message"]
    # The page shows the column's method and its message with the share of "other".
    check = DriftCheck.objects.filter(monitor__name="over 50").get()
    client.force_login(scientist)
    page = client.get(check.get_absolute_url()).content.decode()
    assert "<code>profile</code>" in page
    assert escape(older["message"]) in page


def test_benjamini_hochberg_and_weights_decide_the_dataset_verdict(
    client_for, scientist, registered_version, dataset, bike_frame, tmp_path
):
    # Two random halves of 2011: no drift, yet three of twelve p-value tests fall below 0.05.
    rows = bike_frame[bike_frame["yr"] == 0].sample(frac=1.0, random_state=2)
    half = len(rows) // 2
    reference = register_frame(dataset, rows.iloc[:half], tmp_path / "half-a.csv", scientist)
    batches = do_create_dataset(team=dataset.team, name="bike-2011-half", actor=scientist)
    register_frame(batches, rows.iloc[half:], tmp_path / "half-b.csv", scientist)
    categorical = ("season", "mnth", "holiday", "weekday", "workingday", "weathersit")
    monitor = {
        "model_version": registered_version.pk,
        "reference_dataset_version": reference.pk,
        "source": "dataset",
        "current_dataset": batches.pk,
        "methods": {c: "chisquare" if c in categorical else "ks" for c in DRIFT_COLUMNS},
        "drift_share": 0.25,
    }
    client = client_for(scientist)

    plain = _monitor_check(client, {**monitor, "name": "plain"})
    controlled = _monitor_check(client, {**monitor, "name": "bh", "multiple_testing": "bh"})
    weighted = _monitor_check(client, {**monitor, "name": "weighted", "weights": {"temp": 0.0, "atemp": 0.0}})

    assert [c["column"] for c in plain.drifted_columns] == ["temp", "atemp", "cnt"]
    assert (plain.drifted_fraction, plain.is_dataset_drift) == (3 / 12, True)
    assert (controlled.drifted_count, controlled.is_dataset_drift) == (0, False)
    temp = _by_column(controlled)["temp"]
    assert temp["score"] < 0.05 <= temp["adjusted_score"]
    assert "Benjamini-Hochberg adjusted p-value" in temp["message"]
    # Weights: temp and atemp count for nothing, so 1 drifted of the 10 weighed columns.
    assert (weighted.drifted_count, weighted.drifted_fraction, weighted.is_dataset_drift) == (3, 0.1, False)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("methods", {"hum": "nope"}),
        ("thresholds", {"hum": -1}),
        ("min_sample_size", 0),
        ("column_kinds", {"hum": "image"}),
        ("column_kinds", {"no-such-column": "numeric"}),
        ("weights", {"hum": -1}),
        ("multiple_testing", "bonferroni"),
        ("top_k", 0),
        ("top_k", 5000),
    ],
)
def test_bad_check_options_are_400_naming_the_field(
    client_for, scientist, registered_version, current_dataset_version, field, value
):
    response = client_for(scientist).post(
        "/api/drift-checks/",
        {
            "model_version": registered_version.pk,
            "current_dataset_version": current_dataset_version.pk,
            field: value,
        },
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert DriftCheck.objects.count() == 0


def test_the_report_never_fails_or_delays_the_check(
    client_for,
    scientist,
    registered_version,
    current_dataset_version,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.STEWARD_DRIFT_REPORT_TIME_LIMIT_S = 0.01  # evidently cannot even start in 10 ms
    response = client_for(scientist).post(
        "/api/drift-checks/",
        {"model_version": registered_version.pk, "current_dataset_version": current_dataset_version.pk},
        format="json",
    )
    check_id = response.json()["id"]

    with django_capture_on_commit_callbacks(execute=False):
        assert execute_drift_check(check_id) == "succeeded"
    assert execute_drift_report(check_id) == "failed"
    assert execute_drift_report(check_id) == "failed"  # a redelivery changes nothing

    check = DriftCheck.objects.get(pk=check_id)
    assert (check.state, check.drifted_count, check.report_state, check.report) == (
        "succeeded",
        2,
        "failed",
        "",
    )
    assert check.report_error == (
        "the report ran past its time limit of 0.01 s and was stopped; the check's verdicts stand"
    )
    assert Alert.objects.get().drift_check_id == check_id


def test_the_report_can_be_turned_off_by_setting_and_per_check(
    client_for,
    scientist,
    registered_version,
    current_dataset_version,
    settings,
    django_capture_on_commit_callbacks,
):
    client = client_for(scientist)
    payload = {"model_version": registered_version.pk, "current_dataset_version": current_dataset_version.pk}
    unwanted = client.post("/api/drift-checks/", {**payload, "make_report": False}, format="json").json()[
        "id"
    ]
    settings.STEWARD_DRIFT_REPORT_ENABLED = False
    disabled = client.post("/api/drift-checks/", payload, format="json").json()["id"]

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        states = [execute_drift_check(check_id) for check_id in (unwanted, disabled)]

    assert states == ["succeeded", "succeeded"]
    assert list(DriftCheck.objects.order_by("id").values_list("report_state", "report")) == [
        ("not_requested", ""),
        ("not_requested", ""),
    ]
    # The only callback do_finish_drift_check itself registers is the report's task: none here.
    assert [c for c in callbacks if "do_finish_drift_check" in c.__qualname__] == []
    assert execute_drift_report(unwanted) == "not_requested"


def test_a_check_past_its_time_limit_fails_with_the_reason(
    client_for, scientist, registered_version, current_dataset_version, settings
):
    settings.STEWARD_DRIFT_CHECK_TIME_LIMIT_S = 1e-6
    response = client_for(scientist).post(
        "/api/drift-checks/",
        {"model_version": registered_version.pk, "current_dataset_version": current_dataset_version.pk},
        format="json",
    )

    assert execute_drift_check(response.json()["id"]) == "failed"

    check = DriftCheck.objects.get()
    assert check.error.startswith(
        "the check ran past its time limit of 1e-06 s (STEWARD_DRIFT_CHECK_TIME_LIMIT_S)"
    )
    assert (check.progress, check.stage, check.results, Alert.objects.count()) == (1.0, "failed", [], 0)


# Through a real worker ------------------------------------------------------------------------
WORKER_QUEUE = "steward-tests-drift-report"


@pytest.fixture
def report_worker():
    """A real Celery worker (solo pool, in a thread) on the configured broker and a queue of its own."""
    app = config.celery.app
    saved = app.conf.task_routes
    app.conf.update(task_routes={"*": {"queue": WORKER_QUEUE}})
    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_declare(WORKER_QUEUE)
            conn.default_channel.queue_purge(WORKER_QUEUE)
        with start_worker(
            app, pool="solo", perform_ping_check=False, queues=[WORKER_QUEUE], shutdown_timeout=60
        ):
            yield
    finally:
        app.conf.update(task_routes=saved)


def _wait_for(what: str, condition, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {timeout_s} s"
        time.sleep(0.2)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_stores_the_verdict_then_builds_the_report(
    report_worker, client_for, scientist, registered_version, current_dataset_version, settings
):
    response = client_for(scientist).post(
        "/api/drift-checks/",
        {"model_version": registered_version.pk, "current_dataset_version": current_dataset_version.pk},
        format="json",
    )
    check_id = response.json()["id"]

    _wait_for("reported", lambda: DriftCheck.objects.get(pk=check_id).report_state in ("succeeded", "failed"))

    check = DriftCheck.objects.get(pk=check_id)
    assert (check.state, check.drifted_count, check.report_state, check.report_error) == (
        "succeeded",
        2,
        "succeeded",
        "",
    )
    assert (settings.ARTIFACT_ROOT / check.report).read_text().lstrip().lower().startswith("<!doctype html>")
    assert [c["column"] for c in check.evidently_results] == DRIFT_COLUMNS
    # The alert was raised with the verdict, before the report existed, and links to it.
    alert = Alert.objects.get()
    assert alert.drift_check_id == check_id
    assert alert.evidence["report_url"].endswith(f"/drift-checks/{check_id}/report/")


def test_the_report_reads_a_bounded_sample(
    client_for,
    scientist,
    registered_version,
    current_dataset_version,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.STEWARD_DRIFT_REPORT_MAX_ROWS = 2000
    response = client_for(scientist).post(
        "/api/drift-checks/",
        {"model_version": registered_version.pk, "current_dataset_version": current_dataset_version.pk},
        format="json",
    )
    check_id = response.json()["id"]
    with django_capture_on_commit_callbacks(execute=False):
        execute_drift_check(check_id)

    assert execute_drift_report(check_id) == "succeeded"

    check = DriftCheck.objects.get(pk=check_id)
    assert (check.sampled_rows, check.report_error) == (2000, "")
    assert [c["column"] for c in check.evidently_results] == DRIFT_COLUMNS
    # The verdicts are the engine's on every row, whatever the report sampled.
    assert (check.drifted_count, check.window["rows"]) == (2, 8734)

"""Drift by time window and segment (issue 11) through the API, the check page, monitors, the
alert rule and a real worker, on the bike data: 2012 by month and by season against 2011."""

from __future__ import annotations

import pytest

from governance.actions.datasets import do_create_dataset
from monitoring.execute import execute_drift_check
from monitoring.models import Alert, DriftCheck
from tests.conftest import DRIFT_COLUMNS
from tests.monitoring.conftest import register_frame
from tests.monitoring.test_column_rules import _wait_for, report_worker  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

MONTHLY = {"column": "dteday", "every": "month"}
MONTHS_2012 = [f"2012-{month:02d}" for month in range(1, 13)]


def _request(api, version, current, **options):
    payload = {
        "model_version": version.pk,
        "current_dataset_version": current.pk,
        "min_sample_size": 500,
        "make_report": False,
        **options,
    }
    return api.post("/api/drift-checks/", payload, format="json")


def test_a_check_by_month_and_season_stores_shows_and_serves_its_groups(
    client, client_for, scientist, registered_version, current_dataset_version
):
    api = client_for(scientist)
    client.force_login(scientist)
    grouped = _request(
        api, registered_version, current_dataset_version, time_window=MONTHLY, segment_by="season"
    )
    assert grouped.status_code == 201, grouped.json()
    plain = _request(api, registered_version, current_dataset_version).json()
    for check_id in (grouped.json()["id"], plain["id"]):
        assert execute_drift_check(check_id, make_report=False) == "succeeded"

    check = DriftCheck.objects.get(pk=grouped.json()["id"])
    alone = DriftCheck.objects.get(pk=plain["id"])
    assert check.config["groups"] == {
        "time_window": {"column": "dteday", "every": "month", "rolling": None, "max_windows": 100},
        "segment_by": {"column": "season", "top": 10},
        "alert_on_groups": False,
    }
    # The dataset verdict keeps its meaning: the whole window's, as without groups.
    assert (check.is_dataset_drift, check.drifted_count, check.results) == (
        alone.is_dataset_drift,
        alone.drifted_count,
        alone.results,
    )
    windows = check.groups["windows"]["windows"]
    assert [w["label"] for w in windows] == MONTHS_2012
    assert sum(w["rows"] for w in windows) == 8734
    cnt = {w["label"]: w["columns"]["cnt"] for w in windows}
    assert cnt["2012-02"]["status"] == "ok"
    assert {label for label, c in cnt.items() if c["status"] == "drift"} >= {
        "2012-05",
        "2012-06",
        "2012-07",
        "2012-08",
        "2012-09",
    }
    assert cnt["2012-09"]["score"] > 5 * cnt["2012-02"]["score"]
    segments = check.groups["segments"]["segments"]
    assert [(s["key"], s["rows"], s["reference_rows"]) for s in segments] == [
        ("3", 2256, 2240),
        ("2", 2206, 2203),
        ("4", 2098, 2134),
        ("1", 2174, 2068),
    ]
    assert "season" not in segments[0]["columns"]
    assert check.verdicts[-1].kind == "groups"
    assert check.verdicts[-1].status == "warning"  # shown, not alerting (alert_on_groups is off)
    assert not alone.groups
    assert [v.kind for v in alone.verdicts] == ["data", "prediction", "performance"]

    served = api.get(f"/api/drift-checks/{check.pk}/windows/").json()
    assert served["columns"] == [c for c in DRIFT_COLUMNS if c != "dteday"]
    assert [w["label"] for w in served["windows"]["windows"]] == MONTHS_2012
    assert (
        served["windows"]["windows"][5]["share_of_drifted_columns"] == windows[5]["share_of_drifted_columns"]
    )
    assert (served["is_drift"], served["alert_on_groups"]) == (True, False)
    assert api.get(f"/api/drift-checks/{check.pk}/").json()["groups"] == check.groups
    assert api.get(f"/api/drift-checks/{alone.pk}/windows/").json()["windows"] is None

    page = client.get(check.get_absolute_url()).content.decode()
    assert "<h2>Windows and segments</h2>" in page
    assert 'id="window-trend"' in page  # the trend chart, with its table
    assert '<th scope="row">2012-06</th>' in page
    assert '<th scope="row">season = 3</th>' in page
    assert "it does not raise the alert" in page
    assert "Windows and segments" not in client.get(alone.get_absolute_url()).content.decode()


def test_an_outsider_gets_404_for_the_windows(
    client_for, scientist, outsider, registered_version, current_dataset_version
):
    check_id = _request(
        client_for(scientist), registered_version, current_dataset_version, time_window=MONTHLY
    ).json()["id"]

    assert client_for(outsider).get(f"/api/drift-checks/{check_id}/windows/").status_code == 404


@pytest.fixture
def rows_of_2011(dataset, scientist, bike_frame, tmp_path):
    """The reference rows themselves as current data: no column drifts over the year, while
    each month differs from the year (temperatures, the season and month columns)."""
    current = do_create_dataset(team=dataset.team, name="bike-2011-again", actor=scientist)
    rows = bike_frame[bike_frame["yr"] == 0]
    return register_frame(current, rows, tmp_path / "hour-2011.csv", scientist)


@pytest.mark.parametrize("alert_on_groups", [False, True])
def test_a_drifted_window_raises_the_alert_only_when_asked(
    client_for, scientist, registered_version, rows_of_2011, alert_on_groups
):
    response = _request(
        client_for(scientist),
        registered_version,
        rows_of_2011,
        time_window=MONTHLY,
        alert_on_groups=alert_on_groups,
    )
    assert response.status_code == 201, response.json()

    execute_drift_check(response.json()["id"], make_report=False)

    check = DriftCheck.objects.get(pk=response.json()["id"])
    assert (check.drifted_count, check.is_dataset_drift) == (0, False)
    assert [w["label"] for w in check.drifted_groups][:2] == ["2011-01", "2011-02"]
    assert check.is_breach is alert_on_groups
    assert Alert.objects.count() == int(alert_on_groups)
    if alert_on_groups:
        alert = Alert.objects.get()
        assert alert.title.startswith(f"Drift in windows or segments on {registered_version}: 2011-01")


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"time_window": {"column": "dteday", "every": "fortnight"}}, "time_window", "time_window.every"),
        ({"time_window": {"column": "dteday", "max_windows": 0}}, "time_window", "time_window.max_windows"),
        ({"time_window": {"column": "when", "every": "day"}}, "time_window", "'when' is not a column"),
        ({"time_window": "dteday"}, "time_window", "must be an object"),
        ({"time_window": {"column": 5}}, "time_window", "time_window.column"),
        ({"segment_by": "weather"}, "segment_by", "'weather' is not a column of the reference"),
        ({"segment_by": {"column": "season", "top": 500}}, "segment_by", "segment_by.top"),
        ({"segment_by": ["season"]}, "segment_by", "must be an object"),
        ({"alert_on_groups": "maybe"}, "alert_on_groups", None),
    ],
)
def test_bad_window_and_segment_options_are_400_naming_the_field(
    client_for, scientist, registered_version, current_dataset_version, options, field, message
):
    api = client_for(scientist)

    response = _request(api, registered_version, current_dataset_version, **options)
    monitor = api.post(
        "/api/monitors/", {"model_version": registered_version.pk, "name": "groups", **options}, format="json"
    )

    assert (response.status_code, list(response.json())) == (400, [field])
    if message:
        assert message in str(response.json()[field])
    if "'when'" not in (message or ""):  # a monitor's timestamp column is read from its source
        assert (monitor.status_code, list(monitor.json())) == (400, [field])
    assert DriftCheck.objects.count() == 0


def test_a_monitor_judges_its_windows_and_segments(
    client_for, scientist, registered_version, current_dataset_version
):
    api = client_for(scientist)
    created = api.post(
        "/api/monitors/",
        {
            "model_version": registered_version.pk,
            "name": "by-quarter",
            "source": "dataset",
            "current_dataset": current_dataset_version.dataset_id,
            "min_sample_size": 500,
            "make_report": False,
            "time_window": {"column": "dteday", "every": "week", "rolling": 13, "max_windows": 60},
            "segment_by": "weathersit",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["segment_by"] == {"column": "weathersit", "top": 10}

    run = api.post(f"/api/monitors/{created.json()['id']}/run/")
    execute_drift_check(run.json()["id"], make_report=False)

    check = DriftCheck.objects.get(pk=run.json()["id"])
    windows = check.groups["windows"]
    # Weeks from 2011-12-26 to 2012-12-31 (54), 13 at a time, moving by one week.
    assert (len(windows["windows"]), windows["error"]) == (54 - 12, None)
    assert windows["windows"][0]["label"] == "2011-12-26 to 2012-03-19"
    assert [s["key"] for s in check.groups["segments"]["segments"]] == ["1", "2", "3", "4"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_stores_the_windows(
    report_worker,  # noqa: F811
    client_for,
    scientist,
    registered_version,
    current_dataset_version,
):
    response = _request(
        client_for(scientist), registered_version, current_dataset_version, time_window=MONTHLY
    )
    check_id = response.json()["id"]

    _wait_for("finished", lambda: DriftCheck.objects.get(pk=check_id).state in ("succeeded", "failed"))

    check = DriftCheck.objects.get(pk=check_id)
    assert (check.state, check.error) == ("succeeded", "")
    assert [w["label"] for w in check.groups["windows"]["windows"]] == MONTHS_2012


def test_more_windows_than_allowed_leave_the_check_standing_with_the_reason(
    client, client_for, scientist, registered_version, current_dataset_version
):
    client.force_login(scientist)
    response = _request(
        client_for(scientist),
        registered_version,
        current_dataset_version,
        time_window={"column": "dteday", "every": "day", "max_windows": 30},
    )

    assert execute_drift_check(response.json()["id"], make_report=False) == "succeeded"

    check = DriftCheck.objects.get(pk=response.json()["id"])
    assert check.groups["windows"]["windows"] == []
    assert "time_window.max_windows" in check.groups["windows"]["error"]
    assert check.drifted_count == 2  # the whole data's verdict, as always
    page = client.get(check.get_absolute_url()).content.decode()
    assert "raise time_window.max_windows (at most 1000)" in page

"""A monitor's drift history through the API (issue 11): the data behind the trend charts, for
scripts: per succeeded check the dataset verdict and each column's score, threshold and verdict."""

from __future__ import annotations

from monitoring.actions.checks import do_finish_drift_check, do_run_monitor
from tests.monitoring.conftest import BREACH, CLEAN, T0, finish_check, minutes


def _history(client, monitor, **params):
    return client.get(f"/api/monitors/{monitor.pk}/drift-history/", params)


def test_the_history_lists_succeeded_checks_oldest_first_with_each_columns_verdict(
    client_for, monitor, scientist
):
    first = finish_check(monitor, CLEAN, T0, scientist)
    second = finish_check(monitor, BREACH, T0 + minutes(10), scientist)
    failed = do_run_monitor(monitor=monitor, actor=scientist, now=T0 + minutes(20))
    do_finish_drift_check(failed.pk, error="the current data file is unreadable", now=T0 + minutes(21))

    response = _history(client_for(scientist), monitor)

    assert response.status_code == 200
    body = response.json()
    assert [point["check"] for point in body] == [first.pk, second.pk]  # the failed one left out
    assert [point["is_dataset_drift"] for point in body] == [False, True]
    assert [point["drifted_fraction"] for point in body] == [0.0, 0.5]
    assert body[1]["columns"]["hum"] == {
        "method": "wasserstein",
        "score": 0.1713,
        "threshold": 0.1,
        "is_drifted": True,
        "status": "drift",
    }
    assert body[0]["columns"]["hum"]["is_drifted"] is False
    assert set(body[0]["columns"]) == {"temp", "hum"}


def test_the_history_keeps_one_column_and_the_newest_checks(client_for, monitor, scientist):
    checks = [finish_check(monitor, BREACH if i % 2 else CLEAN, T0 + minutes(i), scientist) for i in range(4)]

    response = _history(client_for(scientist), monitor, column="hum", limit=2)

    body = response.json()
    assert [point["check"] for point in body] == [checks[2].pk, checks[3].pk]
    assert [list(point["columns"]) for point in body] == [["hum"], ["hum"]]
    assert [point["columns"]["hum"]["score"] for point in body] == [0.02, 0.1713]


def test_the_history_refuses_bad_parameters_and_other_teams(client_for, monitor, scientist, outsider):
    finish_check(monitor, BREACH, T0, scientist)
    client = client_for(scientist)

    too_many = _history(client, monitor, limit=5000)
    assert too_many.status_code == 400
    assert "limit" in too_many.json()
    assert _history(client, monitor, limit="many").status_code == 400
    assert _history(client_for(outsider), monitor).status_code == 404
    assert _history(client, monitor, column="no-such-column").json()[0]["columns"] == {}

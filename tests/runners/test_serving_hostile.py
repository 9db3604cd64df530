"""Predict requests that must be refused with a 4xx naming what is wrong, never a 500, and with
nothing logged (issue 17)."""

from __future__ import annotations

import json

import pytest

from governance.actions.aliases import do_set_alias
from runners.models import Prediction
from tests.conftest import BIKE_FEATURES

pytestmark = pytest.mark.django_db

URL = "/api/models/bike-demand/aliases/staging/predict"


@pytest.fixture
def client(registered_version, scientist, client_for):
    do_set_alias(model=registered_version.model, alias="staging", version=registered_version, actor=scientist)
    return client_for(scientist)


@pytest.fixture
def row(bike_frame) -> dict:
    return json.loads(bike_frame[BIKE_FEATURES].iloc[:1].to_json(orient="records"))[0]


def refused(client, body, status: int = 400, *, raw: bool = False):
    if raw:
        response = client.post(URL, body, content_type="application/json")
    else:
        response = client.post(URL, body, format="json")
    assert response.status_code == status, response.content
    assert not Prediction.objects.exists()
    return response.json()


def test_missing_extra_and_ill_typed_columns_name_the_row_and_column(client, row):
    without_hr = {k: v for k, v in row.items() if k != "hr"}

    assert refused(client, {"rows": [row, without_hr]})["rows"] == ["row 1: missing column 'hr'"]
    assert refused(client, {"rows": [{**row, "bonus": 1}]})["rows"] == ["row 0: unknown column(s) 'bonus'"]
    typed = refused(client, {"rows": [row, row, {**row, "temp": "warm"}]})["rows"][0]
    assert typed.startswith("row 2, column 'temp': expected a number, got str")
    assert "expected a number, got bool" in refused(client, {"rows": [{**row, "hum": True}]})["rows"][0]
    assert "null" in refused(client, {"rows": [{**row, "windspeed": None}]})["rows"][0]
    assert "empty string" in refused(client, {"rows": [{**row, "season": " "}]})["rows"][0]
    assert "got list" in refused(client, {"rows": [{**row, "season": [1]}]})["rows"][0]


def test_empty_nan_infinity_and_shapes(client, row):
    assert refused(client, {"rows": []})["rows"] == ["rows: empty; send at least one row"]
    assert "required" in refused(client, {})["rows"][0]
    assert "list" in refused(client, {"rows": {"temp": 1}})["rows"][0]
    assert "row 0: expected an object" in refused(client, {"rows": [[1, 2]]})["rows"][0]
    assert "unknown field(s) columns" in refused(client, {"rows": [row], "columns": []})["rows"][0]
    assert "not both" in refused(client, {"rows": [row], "dataframe_records": [row]})["rows"][0]
    refused(client, '{"rows": [{"temp": NaN}]}', raw=True)
    refused(client, '{"rows": [{"temp": Infinity}]}', raw=True)
    refused(client, '{"rows": [', raw=True)
    refused(client, '["rows"]', raw=True)


def test_a_value_that_overflows_the_model_is_a_400_not_logged(client, row):
    """1e38 is a valid JSON number, but standardised into float32 it overflows: the prediction is
    not a number, so the answer is a 400 saying so, and nothing is logged."""
    body = refused(client, {"rows": [row, {**row, "temp": 1e38}]})

    assert body["rows"] == [
        "row(s) 1: the prediction is not a finite number (an input far outside the values the model "
        "was trained on?)"
    ]
    assert not Prediction.objects.exists()


def test_more_rows_than_the_setting_is_413(client, row, settings):
    settings.STEWARD_PREDICT_MAX_ROWS = 3

    body = refused(client, {"rows": [row] * 4}, status=413)

    assert body["rows"] == ["rows: 4 rows; at most 3 per request"]
    assert client.post(URL, {"rows": [row] * 3}, format="json").status_code == 200


def test_hostile_names_in_the_url(client, row):
    for url in (
        "/api/models/%00/aliases/staging/predict",
        "/api/models/bike-demand/aliases/%E2%80%AE/predict",
        "/api/models/bike-demand/versions/99999999999999999999/predict",
        "/api/models/" + "x" * 5000 + "/aliases/staging/predict",
    ):
        assert client.post(url, {"rows": [row]}, format="json").status_code == 404, url
    assert client.post(URL + "?tem=mobility", {"rows": [row]}, format="json").status_code == 400
    assert client.get(URL).status_code == 405
    assert not Prediction.objects.exists()


def test_a_categorical_value_never_seen_still_predicts(client, row):
    # Unseen categories encode as all zeros (runners.training): a value, not an error.
    response = client.post(URL, {"rows": [{**row, "season": "monsoon"}]}, format="json")

    assert response.status_code == 200
    assert Prediction.objects.get().features["season"] == "monsoon"

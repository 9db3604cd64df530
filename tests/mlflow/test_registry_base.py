"""The MLflow API's common answers: credentials, the JSON error shape, unknown endpoints (issue 9)."""

from __future__ import annotations

import base64

import pytest
import requests

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_unknown_endpoint_is_json_endpoint_not_found(steward_server, scientist, api_token):
    headers = {"Authorization": f"Bearer {api_token(scientist)}"}
    for method, path in [
        ("GET", "/api/2.0/mlflow/no-such-thing/get"),
        ("POST", "/api/2.0/mlflow/registered-models/nonsense"),
        ("PUT", "/api/2.0/mlflow/registered-models/create"),
        ("GET", "/api/2.0/mlflow-artifacts/nothing-here"),
        ("GET", "/api/2.0/mlflow"),
        ("DELETE", "/api/2.0/mlflow-artifacts"),
    ]:
        response = requests.request(method, steward_server.url + path, headers=headers, timeout=30)
        assert response.status_code == 404, (method, path)
        assert response.headers["Content-Type"] == "application/json", (method, path)
        assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND", (method, path)
        assert path in response.json()["message"]


def test_missing_or_wrong_credentials_are_401_json(steward_server):
    url = steward_server.url + "/api/2.0/mlflow/registered-models/search"
    anonymous = requests.get(url, timeout=30)
    wrong = requests.get(url, headers={"Authorization": "Bearer stw_not-a-token"}, timeout=30)
    assert (anonymous.status_code, anonymous.json()["error_code"]) == (401, "UNAUTHENTICATED")
    assert "MLFLOW_TRACKING_TOKEN" in anonymous.json()["message"]
    assert (wrong.status_code, wrong.json()) == (
        401,
        {"error_code": "UNAUTHENTICATED", "message": "Invalid token."},
    )


def test_failed_basic_logins_count_towards_the_lockout(steward_server, scientist, settings):
    settings.AXES_FAILURE_LIMIT = 2
    url = steward_server.url + "/api/2.0/mlflow/registered-models/search"

    def basic(password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"dana:{password}".encode()).decode()}

    assert requests.get(url, headers=basic(PASSWORD), timeout=30).status_code == 200
    first = requests.get(url, headers=basic("wrong"), timeout=30)
    assert (first.status_code, first.json()["error_code"]) == (401, "UNAUTHENTICATED")
    second = requests.get(url, headers=basic("wrong"), timeout=30)
    # The second failure reaches the limit: locked out, even with the right password now.
    assert (second.status_code, second.json()["error_code"]) == (429, "REQUEST_LIMIT_EXCEEDED")
    locked = requests.get(url, headers=basic(PASSWORD), timeout=30)
    assert (locked.status_code, locked.json()["error_code"]) == (429, "REQUEST_LIMIT_EXCEEDED")


def test_a_request_refused_before_any_view_is_still_json(client, settings):
    # A Host header not in ALLOWED_HOSTS is refused by Django's middleware, before URL routing.
    settings.DEBUG = False
    response = client.get("/api/2.0/mlflow/registered-models/search", HTTP_HOST="evil.example")
    assert (response.status_code, response["Content-Type"]) == (400, "application/json")
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # Elsewhere Django answers as before.
    assert client.get("/models/", HTTP_HOST="evil.example")["Content-Type"].startswith("text/html")

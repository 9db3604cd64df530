"""The registry endpoints under the hostile tester's requests (issue 9, hostile tests F4 to F8)."""

from __future__ import annotations

import base64
import json
import threading

import pytest
import requests
from mlflow.exceptions import MlflowException

from governance.actions.model_versions import do_register_model_version_from_source
from governance.actions.promotions import do_approve_promotion, do_request_promotion
from governance.actions.registered_models import do_create_registered_model
from governance.models import ModelAlias, ModelVersion, RegisteredModel

pytestmark = pytest.mark.django_db(transaction=True)


def _call(server, env, method: str, endpoint: str, **kwargs) -> tuple[int, dict]:
    response = requests.request(
        method,
        f"{server.url}/api/2.0/mlflow/{endpoint}",
        headers={"Authorization": f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"},
        timeout=60,
        **kwargs,
    )
    return response.status_code, response.json()


@pytest.fixture
def model(team, scientist, import_root) -> RegisteredModel:
    """bike with two versions."""
    made = do_create_registered_model(team=team, name="bike", owner=scientist, actor=scientist)
    for _ in range(2):
        do_register_model_version_from_source(model=made, source=str(import_root / "model"), actor=scientist)
    return made


@pytest.mark.filterwarnings("ignore:.*deprecated since 2.9.0:FutureWarning")
def test_production_does_not_go_with_its_version_or_model(mlflow_client, model, scientist, approver):
    first = ModelVersion.objects.get(model=model, version=1)
    request = do_request_promotion(model_version=first, alias="production", actor=scientist)
    do_approve_promotion(promotion_request=request, actor=approver)

    for attempt in (
        lambda: mlflow_client.delete_model_version("bike", "1"),
        lambda: mlflow_client.transition_model_version_stage("bike", "1", "Archived"),
        lambda: mlflow_client.delete_registered_model("bike"),
    ):
        with pytest.raises(MlflowException) as refused:
            attempt()
        assert refused.value.error_code == "PERMISSION_DENIED"
        assert "protected alias 'production'" in refused.value.message
        assert "promote another version to 'production' first" in refused.value.message
    assert ModelAlias.objects.get(name="production").model_version == first
    assert ModelVersion.objects.get(pk=first.pk).status == ModelVersion.Status.READY
    # The other version, holding nothing protected, goes as before.
    mlflow_client.delete_model_version("bike", "2")
    assert ModelVersion.objects.get(model=model, version=2).status == ModelVersion.Status.DELETED


def test_every_loser_of_a_create_race_gets_resource_already_exists(steward_server, mlflow_env):
    # Released together so that on PostgreSQL (CI) several pass the name check before any
    # commits, and the unique constraint refuses the losers; SQLite serialises the writes, so
    # there the check refuses them. Either way each loser must get MLflow's code for a taken name.
    racers = 6
    barrier = threading.Barrier(racers)
    answers: list[tuple[int, dict]] = []

    def create() -> None:
        barrier.wait()
        answers.append(
            _call(steward_server, mlflow_env, "POST", "registered-models/create", json={"name": "raced"})
        )

    threads = [threading.Thread(target=create) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(status for status, _ in answers) == [200] + [400] * (racers - 1)
    losers = [body for status, body in answers if status == 400]
    assert {body["error_code"] for body in losers} == {"RESOURCE_ALREADY_EXISTS"}
    assert RegisteredModel.objects.filter(name="raced").count() == 1


def test_a_taken_name_is_resource_already_exists_on_create_and_rename(mlflow_client, model):
    mlflow_client.create_registered_model("taxi")
    for attempt in (
        lambda: mlflow_client.create_registered_model("BIKE"),
        lambda: mlflow_client.rename_registered_model("taxi", "bike"),
    ):
        with pytest.raises(MlflowException) as taken:
            attempt()
        assert taken.value.error_code == "RESOURCE_ALREADY_EXISTS"


@pytest.mark.parametrize("name", ["\ud800", " bike", "a/b", "a:b"])
def test_a_name_breaking_the_rule_is_a_400_before_any_query(steward_server, mlflow_env, model, name):
    # json.dumps writes a lone surrogate as the escape "\ud800", as the tester sent it.
    status, body = _call(
        steward_server, mlflow_env, "POST", "registered-models/create", data=json.dumps({"name": name})
    )

    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


@pytest.mark.parametrize("version", ["\u00b2", "\u00b9", "\u0661", "\uff11", "+1", " 1"])
def test_a_version_in_other_digits_is_invalid(steward_server, mlflow_env, model, version):
    status, body = _call(
        steward_server, mlflow_env, "GET", "model-versions/get", params={"name": "bike", "version": version}
    )

    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


@pytest.mark.parametrize("query", ["run_id = '\u00b2'", "run_id IN ('\u00b2', '\u0661')"])
def test_a_run_id_in_other_digits_matches_nothing(steward_server, mlflow_env, model, query):
    ModelVersion.objects.filter(model=model).update(source_job_id=1)

    status, body = _call(steward_server, mlflow_env, "GET", "model-versions/search", params={"filter": query})

    assert (status, body.get("model_versions", [])) == (200, [])


def _token(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


MODEL_ORDER = [["name", False], ["id", False]]
VERSION_ORDER = [["updated_at", True], ["model__name", False], ["version", True], ["id", False]]


@pytest.mark.parametrize(
    ("endpoint", "payload"),
    [
        ("registered-models/search", {"o": MODEL_ORDER, "v": [None, None]}),
        ("registered-models/search", {"o": MODEL_ORDER, "v": [1, "x"]}),
        ("registered-models/search", {"o": MODEL_ORDER, "v": [[1], {"a": 1}]}),
        ("registered-models/search", {"o": MODEL_ORDER, "v": ["a", 1e300]}),
        ("registered-models/search", {"o": MODEL_ORDER, "v": ["a", 2**70]}),
        ("registered-models/search", {"o": MODEL_ORDER, "v": ["a", True]}),
        ("registered-models/search", {"o": MODEL_ORDER, "v": ["\ud800", 1]}),
        ("registered-models/search", {"o": [["name", 0], ["id", 0]], "v": ["a", 1]}),
        ("registered-models/search", {"o": MODEL_ORDER, "v": ["a", 1], "x": 1}),
        ("registered-models/search", [1, 2]),
        ("registered-models/search", "text"),
        ("model-versions/search", {"o": VERSION_ORDER, "v": [{"t": "2026-12-06T11:34:21"}, None, "x", {}]}),
        (
            "model-versions/search",
            {"o": VERSION_ORDER, "v": [{"t": "2026-12-06T11:34:21+00:00"}, "b", "1", 1]},
        ),
        ("model-versions/search", {"o": VERSION_ORDER, "v": [{"t": "not a time"}, "b", 1, 1]}),
        ("model-versions/search", {"o": VERSION_ORDER, "v": [{"t": 5}, "b", 1, 1]}),
    ],
)
def test_a_forged_page_token_is_invalid(steward_server, mlflow_env, model, endpoint, payload):
    status, body = _call(steward_server, mlflow_env, "GET", endpoint, params={"page_token": _token(payload)})

    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "not a page token of this search" in body["message"] or "another order_by" in body["message"]


def test_a_real_page_token_still_pages(mlflow_client, model):
    first = mlflow_client.search_model_versions("name = 'bike'", max_results=1)
    rest = mlflow_client.search_model_versions("name = 'bike'", max_results=1, page_token=first.token)

    assert [v.version for v in first] + [v.version for v in rest] == ["2", "1"]

"""Searching registered models and versions through the real MLflow client: MLflow's filter
grammar, order_by, max_results and keyset page tokens (issue 9)."""

from __future__ import annotations

import pytest
import requests
from mlflow.exceptions import MlflowException

from governance.actions.model_versions import do_register_model_version_from_source
from governance.actions.registered_models import do_create_registered_model, do_set_registered_model_tag
from governance.models import ModelVersion, RegisteredModel

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def models(team, scientist) -> list[RegisteredModel]:
    """Seven models: bike-00..bike-04 (even ones tagged kind=tabular), taxi and Bikes-upper."""
    made = []
    for name in ["bike-03", "bike-00", "taxi", "bike-04", "bike-01", "Bikes-upper", "bike-02"]:
        model = do_create_registered_model(team=team, name=name, owner=scientist, actor=scientist)
        if name.startswith("bike-") and int(name[-1]) % 2 == 0:
            model = do_set_registered_model_tag(model=model, key="kind", value="tabular", actor=scientist)
        made.append(model)
    return made


def names(results) -> list[str]:
    return [model.name for model in results]


def test_filter_by_name_and_tags(mlflow_client, models):
    assert names(mlflow_client.search_registered_models()) == sorted(m.name for m in models)
    assert names(mlflow_client.search_registered_models("name = 'taxi'")) == ["taxi"]
    assert names(mlflow_client.search_registered_models("name LIKE 'bike-0%'")) == [
        "bike-00",
        "bike-01",
        "bike-02",
        "bike-03",
        "bike-04",
    ]
    assert names(mlflow_client.search_registered_models("name ILIKE 'BIKES%'")) == ["Bikes-upper"]
    assert names(mlflow_client.search_registered_models("name LIKE 'bike-0_'")) == [
        "bike-00",
        "bike-01",
        "bike-02",
        "bike-03",
        "bike-04",
    ]
    assert names(mlflow_client.search_registered_models("tags.kind = 'tabular'")) == [
        "bike-00",
        "bike-02",
        "bike-04",
    ]
    # A missing tag satisfies != (the client adds such a clause for prompts to every search).
    assert names(mlflow_client.search_registered_models("tags.`kind` != 'tabular' AND name != 'taxi'")) == [
        "Bikes-upper",
        "bike-01",
        "bike-03",
    ]


def test_order_by_and_paging_through_all(mlflow_client, models):
    descending = mlflow_client.search_registered_models(order_by=["name DESC"])
    assert names(descending) == sorted((m.name for m in models), reverse=True)
    seen, token, pages = [], None, 0
    while True:
        found = mlflow_client.search_registered_models(
            max_results=3, order_by=["last_updated_timestamp ASC"], page_token=token
        )
        seen += names(found)
        pages += 1
        token = found.token
        if not token:
            break
    assert pages == 3
    by_update = sorted(RegisteredModel.objects.all(), key=lambda m: (m.updated_at, m.name))
    assert seen == [m.name for m in by_update]


def test_pages_are_stable_under_inserts(mlflow_client, models, team, scientist):
    first = mlflow_client.search_registered_models(max_results=4)
    assert names(first) == ["Bikes-upper", "bike-00", "bike-01", "bike-02"]
    # Someone inserts rows sorting before and inside the next page: none repeats, none is lost.
    for name in ["Aardvark", "bike-015", "bike-035"]:
        do_create_registered_model(team=team, name=name, owner=scientist, actor=scientist)
    rest = mlflow_client.search_registered_models(max_results=100, page_token=first.token)
    assert names(rest) == ["bike-03", "bike-035", "bike-04", "taxi"]


def test_bad_searches_are_invalid_parameter_value(mlflow_client, models):
    for bad, named in [
        ("name = 'x' OR name = 'y'", "OR"),
        ("colour = 'red'", "colour"),
        ("name > 'x'", ">"),
        ("name = ", "found 'AND'"),  # the client appends its prompt clause: "name =  AND tag..."
        ("name = 'x' AND", "AND"),
    ]:
        with pytest.raises(MlflowException) as refused:
            mlflow_client.search_registered_models(bad)
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE", bad
        assert named in refused.value.message, (bad, refused.value.message)
    with pytest.raises(MlflowException) as duplicate:
        mlflow_client.search_registered_models(order_by=["name ASC", "name DESC"])
    assert duplicate.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as too_many:
        mlflow_client.search_registered_models(max_results=1001)
    assert too_many.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as token:
        mlflow_client.search_registered_models(page_token="not-a-token")
    assert token.value.error_code == "INVALID_PARAMETER_VALUE"


def test_search_model_versions(mlflow_client, import_root, team, scientist, use_token, outsider):
    model = do_create_registered_model(team=team, name="bike", owner=scientist, actor=scientist)
    other = do_create_registered_model(team=team, name="taxi", owner=scientist, actor=scientist)
    source = str(import_root / "model")
    for target in (model, model, model, other):
        do_register_model_version_from_source(model=target, source=source, actor=scientist)
    ModelVersion.objects.filter(model=model, version=2).update(source_job_id=42)

    def found(query: str, **kwargs) -> list[tuple[str, str]]:
        return [(v.name, v.version) for v in mlflow_client.search_model_versions(query, **kwargs)]

    assert sorted(found("name = 'bike'")) == [("bike", "1"), ("bike", "2"), ("bike", "3")]
    assert found("name = 'bike' AND version_number >= 2", order_by=["version_number ASC"]) == [
        ("bike", "2"),
        ("bike", "3"),
    ]
    assert found("run_id IN ('42', '7')") == [("bike", "2")]
    assert found("run_id = '42'") == [("bike", "2")]
    assert len(found(f"source_path = '{source}'")) == 4
    assert found("name LIKE 'tax%'") == [("taxi", "1")]
    paged = mlflow_client.search_model_versions(
        "name = 'bike'", max_results=2, order_by=["version_number DESC"]
    )
    assert [v.version for v in paged] == ["3", "2"]
    rest = mlflow_client.search_model_versions(
        "name = 'bike'", max_results=2, order_by=["version_number DESC"], page_token=paged.token
    )
    assert [v.version for v in rest] == ["1"]
    assert not rest.token
    with pytest.raises(MlflowException) as refused:
        mlflow_client.search_model_versions("name IN ('bike')")
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    use_token(outsider)
    assert found("name = 'bike'") == []


def test_search_answers_raw_get_with_repeated_order_by(steward_server, mlflow_env, models):
    response = requests.get(
        steward_server.url + "/api/2.0/mlflow/registered-models/search",
        params=[("max_results", "2"), ("order_by", "name DESC"), ("filter", "name LIKE 'bike%'")],
        headers={"Authorization": f"Bearer {mlflow_env['MLFLOW_TRACKING_TOKEN']}"},
        timeout=30,
    )
    body = response.json()
    assert response.status_code == 200
    assert [m["name"] for m in body["registered_models"]] == ["bike-04", "bike-03"]
    assert body["next_page_token"]

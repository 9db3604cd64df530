"""The MLflow API's read path stays at a fixed number of queries (issue 9: it is benchmarked
against MLflow's own server). Django's test client, not the live server, so the queries are counted."""

from __future__ import annotations

import pytest

from governance.actions.registered_models import do_create_registered_model, do_set_registered_model_tag
from governance.actions.tokens import do_create_api_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def bearer(scientist) -> dict[str, str]:
    _, secret = do_create_api_token(user=scientist, name="reads", is_read_only=True, actor=scientist)
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def test_get_and_search_take_a_fixed_number_of_queries(
    client, bearer, team, scientist, django_assert_num_queries
):
    for index in range(12):
        model = do_create_registered_model(team=team, name=f"m-{index:02}", owner=scientist, actor=scientist)
        do_set_registered_model_tag(model=model, key="k", value=str(index), actor=scientist)
    # The token's first use records last_used_at (one UPDATE, then at most once a minute).
    assert client.get("/api/2.0/mlflow/registered-models/get?name=m-00", **bearer).status_code == 200

    # token + user (1), the user's platform and team roles (2), the model (3), its versions (4),
    # its aliases (5)
    with django_assert_num_queries(5):
        response = client.get("/api/2.0/mlflow/registered-models/get?name=m-03", **bearer)
    assert response.json()["registered_model"]["tags"] == [
        {"key": "k", "value": "3"},
        {"key": "steward.team", "value": team.slug},
    ]
    # The same five for a page of ten models with a tag filter and the client's prompt clause.
    with django_assert_num_queries(5):
        response = client.get(
            "/api/2.0/mlflow/registered-models/search",
            {"filter": "name LIKE 'm-%' AND tag.`mlflow.prompt.is_prompt` != 'true'", "max_results": "10"},
            **bearer,
        )
    assert [m["name"] for m in response.json()["registered_models"]] == [f"m-{i:02}" for i in range(10)]

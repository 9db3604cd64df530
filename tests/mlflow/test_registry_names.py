"""MLflow names a model by name alone; Steward's names are unique per team. Which model a name
means to a user who sees several teams (issue 9)."""

from __future__ import annotations

import pytest

from governance.actions.registered_models import do_create_registered_model
from governance.actions.teams import do_set_membership
from governance.actions.tokens import do_create_api_token
from governance.models import TeamRole

pytestmark = pytest.mark.django_db


def bearer(user) -> dict[str, str]:
    _, secret = do_create_api_token(user=user, name="t", is_read_only=True, actor=user)
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


@pytest.fixture
def two_models(team, other_team, scientist, outsider):
    mine = do_create_registered_model(team=team, name="shared", owner=scientist, actor=scientist)
    theirs = do_create_registered_model(
        team=other_team, name="shared", owner=outsider, description="fraud's", actor=outsider
    )
    return mine, theirs


def test_the_default_teams_model_wins(client, two_models, scientist, other_team, admin):
    do_set_membership(user=scientist, team=other_team, role=TeamRole.VIEWER, actor=admin)
    response = client.get("/api/2.0/mlflow/registered-models/get?name=shared", **bearer(scientist))
    assert response.status_code == 200
    assert response.json()["registered_model"]["description"] == ""


def test_no_default_team_names_the_rule(client, two_models, compliance_officer, team, other_team):
    response = client.get("/api/2.0/mlflow/registered-models/get?name=shared", **bearer(compliance_officer))
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert team.slug in body["message"]
    assert other_team.slug in body["message"]
    # Search lists both: names are unique per team, the team tag tells them apart.
    found = client.get("/api/2.0/mlflow/registered-models/search", **bearer(compliance_officer)).json()
    assert sorted(
        next(tag["value"] for tag in model["tags"] if tag["key"] == "steward.team")
        for model in found["registered_models"]
    ) == sorted([team.slug, other_team.slug])


def test_name_lookup_folds_case_and_width(client, two_models, scientist):
    fullwidth_upper = "".join(chr(ord(c) - ord("a") + 0xFF21) for c in "shared")
    response = client.get(
        "/api/2.0/mlflow/registered-models/get", {"name": fullwidth_upper}, **bearer(scientist)
    )
    assert response.json()["registered_model"]["name"] == "shared"


def test_values_no_column_can_hold_are_invalid_parameter_value(client, two_models, scientist):
    _, secret = do_create_api_token(user=scientist, name="rw", is_read_only=False, actor=scientist)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    answers = [
        client.get("/api/2.0/mlflow/model-versions/get", {"name": "shared", "version": "9" * 30}, **headers),
        client.get("/api/2.0/mlflow/registered-models/get", {"name": "sha\x00red"}, **headers),
        client.get(
            "/api/2.0/mlflow/model-versions/search", {"filter": f"version_number > {'9' * 30}"}, **headers
        ),
        client.post(
            "/api/2.0/mlflow/registered-models/create",
            '{"name": "a\\u0000b"}',
            content_type="application/json",
            **headers,
        ),
        client.post(
            "/api/2.0/mlflow/registered-models/create", "[1, 2]", content_type="application/json", **headers
        ),
        client.post(
            "/api/2.0/mlflow/registered-models/create", "{", content_type="application/json", **headers
        ),
    ]
    assert [(a.status_code, a.json()["error_code"]) for a in answers] == [
        (400, "INVALID_PARAMETER_VALUE")
    ] * 6

"""Registered models through the real MLflow client against a live Steward (issue 9, flow 2)."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException

from governance.models import AuditEvent, RegisteredModel

pytestmark = pytest.mark.django_db(transaction=True)


def events(action: str) -> int:
    return AuditEvent.objects.filter(action=action).count()


def test_create_get_update_rename_delete(mlflow_client, team, scientist):
    created = mlflow_client.create_registered_model(
        "bike-demand", tags={"owner": "mobility"}, description="hourly demand"
    )
    assert created.name == "bike-demand"
    assert created.description == "hourly demand"
    # The team is shown as a tag; it was chosen (the scientist's only team), not stored as one.
    assert created.tags == {"owner": "mobility", "steward.team": team.slug}
    model = RegisteredModel.objects.get(name="bike-demand")
    assert (model.team, model.owner, model.tags) == (team, scientist, {"owner": "mobility"})
    assert created.creation_timestamp == int(model.created_at.timestamp() * 1000)
    assert events("registered_model.create") == 1

    fetched = mlflow_client.get_registered_model("bike-demand")
    assert (fetched.name, fetched.description, fetched.latest_versions, fetched.aliases) == (
        "bike-demand",
        "hourly demand",
        [],
        {},
    )

    updated = mlflow_client.update_registered_model("bike-demand", description="v2 of the text")
    assert updated.description == "v2 of the text"
    assert events("registered_model.update") == 1

    mlflow_client.rename_registered_model("bike-demand", "bike-demand-hourly")
    assert mlflow_client.get_registered_model("bike-demand-hourly").description == "v2 of the text"
    assert events("registered_model.rename") == 1
    with pytest.raises(MlflowException) as missing:
        mlflow_client.get_registered_model("bike-demand")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    mlflow_client.delete_registered_model("bike-demand-hourly")
    assert RegisteredModel.objects.get(pk=model.pk).deleted_at is not None
    assert events("registered_model.delete") == 1
    with pytest.raises(MlflowException) as gone:
        mlflow_client.get_registered_model("bike-demand-hourly")
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_existing_name_is_resource_already_exists(mlflow_client, scientist):
    mlflow_client.create_registered_model("churn")
    with pytest.raises(MlflowException) as taken:
        mlflow_client.create_registered_model("churn")
    assert taken.value.error_code == "RESOURCE_ALREADY_EXISTS"
    mlflow_client.create_registered_model("other")
    with pytest.raises(MlflowException) as rename:
        mlflow_client.rename_registered_model("other", "churn")
    assert rename.value.error_code == "RESOURCE_ALREADY_EXISTS"
    assert RegisteredModel.objects.filter(name="churn").count() == 1


def test_name_rule_and_limits_are_invalid_parameter_value(mlflow_client, scientist):
    with pytest.raises(MlflowException) as spaced:
        mlflow_client.create_registered_model("model ")
    assert spaced.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "name" in spaced.value.message
    mlflow_client.create_registered_model("ok")
    with pytest.raises(MlflowException) as long_tag:
        mlflow_client.set_registered_model_tag("ok", "k", "x" * 5001)
    assert long_tag.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "5000" in long_tag.value.message
    assert RegisteredModel.objects.get(name="ok").tags == {}
    assert not RegisteredModel.objects.filter(name__startswith="model").exists()


def test_tags_set_and_delete(mlflow_client, scientist):
    mlflow_client.create_registered_model("tagged")
    mlflow_client.set_registered_model_tag("tagged", "stage", "canary")
    assert mlflow_client.get_registered_model("tagged").tags["stage"] == "canary"
    mlflow_client.delete_registered_model_tag("tagged", "stage")
    mlflow_client.delete_registered_model_tag("tagged", "never-set")  # a no-op, as in MLflow
    assert "stage" not in mlflow_client.get_registered_model("tagged").tags
    assert (events("registered_model.tag.set"), events("registered_model.tag.delete")) == (1, 1)
    with pytest.raises(MlflowException) as team_tag:
        mlflow_client.set_registered_model_tag("tagged", "steward.team", "fraud")
    assert team_tag.value.error_code == "INVALID_PARAMETER_VALUE"


def test_another_teams_model_does_not_exist_for_an_outsider(
    mlflow_client, use_token, outsider, other_team, team
):
    mlflow_client.create_registered_model("secret-model")
    use_token(outsider)
    for call in (
        lambda: mlflow_client.get_registered_model("secret-model"),
        lambda: mlflow_client.update_registered_model("secret-model", description="mine"),
        lambda: mlflow_client.delete_registered_model("secret-model"),
        lambda: mlflow_client.set_registered_model_tag("secret-model", "k", "v"),
    ):
        with pytest.raises(MlflowException) as hidden:
            call()
        assert hidden.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert mlflow_client.search_registered_models() == []
    # The outsider's own model of the same name lives in their team: no cross-team oracle.
    created = mlflow_client.create_registered_model("secret-model")
    assert created.tags["steward.team"] == other_team.slug
    assert RegisteredModel.objects.filter(name="secret-model", team=team, description="").exists()


def test_steward_team_tag_chooses_among_several_teams(mlflow_client, scientist, other_team, admin):
    from governance.actions.teams import do_set_membership
    from governance.models import TeamRole

    do_set_membership(user=scientist, team=other_team, role=TeamRole.DATA_SCIENTIST, actor=admin)
    with pytest.raises(MlflowException) as ambiguous:
        mlflow_client.create_registered_model("where")
    assert ambiguous.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "steward.team" in ambiguous.value.message
    assert other_team.slug in ambiguous.value.message
    created = mlflow_client.create_registered_model("where", tags={"steward.team": other_team.slug})
    assert RegisteredModel.objects.get(name="where").team == other_team
    assert created.tags == {"steward.team": other_team.slug}


def test_read_only_token_cannot_write(mlflow_client, use_token, scientist):
    mlflow_client.create_registered_model("readable")
    use_token(scientist, read_only=True)
    assert mlflow_client.get_registered_model("readable").name == "readable"
    with pytest.raises(MlflowException) as refused:
        mlflow_client.update_registered_model("readable", description="no")
    assert refused.value.error_code == "PERMISSION_DENIED"
    assert "read-only" in refused.value.message
    assert RegisteredModel.objects.get(name="readable").description == ""


def test_viewer_may_read_but_not_write(mlflow_client, use_token, viewer):
    mlflow_client.create_registered_model("viewed")
    use_token(viewer)
    assert mlflow_client.get_registered_model("viewed").name == "viewed"
    with pytest.raises(MlflowException) as refused:
        mlflow_client.set_registered_model_tag("viewed", "k", "v")
    assert refused.value.error_code == "PERMISSION_DENIED"
    assert RegisteredModel.objects.get(name="viewed").tags == {}
    # Creating is refused as a permission (no steward.team tag would help a viewer).
    with pytest.raises(MlflowException) as no_team:
        mlflow_client.create_registered_model("by-a-viewer")
    assert no_team.value.error_code == "PERMISSION_DENIED"
    assert "no role that may create objects in any team" in no_team.value.message
    assert not RegisteredModel.objects.filter(name="by-a-viewer").exists()


def test_basic_auth_works(mlflow_client, mlflow_env, monkeypatch, scientist):
    from tests.conftest import PASSWORD

    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", scientist.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    assert mlflow_client.create_registered_model("by-password").name == "by-password"
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    with pytest.raises(MlflowException) as refused:
        mlflow_client.get_registered_model("by-password")
    assert refused.value.error_code == "UNAUTHENTICATED"


def test_wrong_token_is_unauthenticated(mlflow_client, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "stw_wrong")
    with pytest.raises(MlflowException) as refused:
        mlflow_client.search_registered_models()
    assert refused.value.error_code == "UNAUTHENTICATED"

"""Model versions and aliases through the real MLflow client against a live Steward (issue 9,
flows 2 and 3). Sources are a real ``mlflow.sklearn.save_model`` directory inside an import root."""

from __future__ import annotations

import pytest
import requests
from mlflow.exceptions import MlflowException

from governance.models import AuditEvent, ModelAlias, ModelVersion, PromotionRequest

pytestmark = pytest.mark.django_db(transaction=True)


def events(action: str) -> int:
    return AuditEvent.objects.filter(action=action).count()


@pytest.fixture
def source(import_root) -> str:
    return str(import_root / "model")


@pytest.fixture
def model_name(mlflow_client) -> str:
    mlflow_client.create_registered_model("bike-demand")
    return "bike-demand"


def test_create_get_update_delete_version(mlflow_client, model_name, source, scientist):
    created = mlflow_client.create_model_version(
        model_name, source, tags={"framework": "sklearn"}, description="first"
    )
    assert (created.name, created.version, created.status, created.current_stage) == (
        model_name,
        "1",
        "READY",
        "None",
    )
    assert (created.source, created.run_id, created.tags) == (source, "", {"framework": "sklearn"})
    stored = ModelVersion.objects.get(model__name=model_name, version=1)
    assert (stored.flavor, stored.executes_code, stored.is_directory) == ("mlflow_model", True, True)
    assert stored.created_by == scientist
    assert events("model_version.register") == 1

    second = mlflow_client.create_model_version(model_name, source)
    assert second.version == "2"
    fetched = mlflow_client.get_model_version(model_name, "1")
    assert (fetched.description, fetched.aliases) == ("first", [])
    assert [v.version for v in mlflow_client.get_registered_model(model_name).latest_versions] == ["2"]

    updated = mlflow_client.update_model_version(model_name, "1", description="better text")
    assert updated.description == "better text"
    assert events("model_version.update") == 1

    mlflow_client.delete_model_version(model_name, "2")
    assert ModelVersion.objects.get(model__name=model_name, version=2).status == "deleted"
    assert events("model_version.delete") == 1
    with pytest.raises(MlflowException) as gone:
        mlflow_client.get_model_version(model_name, "2")
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    # A deleted version's number is never given again.
    assert mlflow_client.create_model_version(model_name, source).version == "3"
    with pytest.raises(MlflowException) as not_a_number:
        mlflow_client.get_model_version(model_name, "one")
    assert not_a_number.value.error_code == "INVALID_PARAMETER_VALUE"


def test_source_outside_the_import_roots_is_refused(mlflow_client, model_name, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(MlflowException) as refused:
        mlflow_client.create_model_version(model_name, str(tmp_path / "elsewhere"))
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "source" in refused.value.message
    assert not ModelVersion.objects.exists()


def test_version_tags(mlflow_client, model_name, source):
    mlflow_client.create_model_version(model_name, source)
    mlflow_client.set_model_version_tag(model_name, "1", "validated", "yes")
    assert mlflow_client.get_model_version(model_name, "1").tags == {"validated": "yes"}
    mlflow_client.delete_model_version_tag(model_name, "1", "validated")
    assert mlflow_client.get_model_version(model_name, "1").tags == {}
    assert (events("model_version.tag.set"), events("model_version.tag.delete")) == (1, 1)


def test_download_uri_names_the_artifact_proxy(mlflow_client, model_name, source):
    mlflow_client.create_model_version(model_name, source)
    pk = ModelVersion.objects.get(model__name=model_name).pk
    assert mlflow_client.get_model_version_download_uri(model_name, "1") == (
        f"mlflow-artifacts:/steward/model-versions/{pk}"
    )


def test_unprotected_alias_moves_at_once(mlflow_client, model_name, source):
    mlflow_client.create_model_version(model_name, source)
    mlflow_client.create_model_version(model_name, source)
    mlflow_client.set_registered_model_alias(model_name, "champion", "1")
    assert mlflow_client.get_model_version_by_alias(model_name, "champion").version == "1"
    mlflow_client.set_registered_model_alias(model_name, "champion", "2")
    by_alias = mlflow_client.get_model_version_by_alias(model_name, "champion")
    assert (by_alias.version, by_alias.aliases) == ("2", ["champion"])
    assert mlflow_client.get_registered_model(model_name).aliases == {"champion": "2"}
    mlflow_client.delete_registered_model_alias(model_name, "champion")
    with pytest.raises(MlflowException) as missing:
        mlflow_client.get_model_version_by_alias(model_name, "champion")
    # MLflow's own answer for a missing alias.
    assert missing.value.error_code == "INVALID_PARAMETER_VALUE"
    assert not ModelAlias.objects.exists()
    assert events("model_alias.move") == 2
    assert events("model_alias.delete") == 1
    with pytest.raises(MlflowException) as bad_name:
        mlflow_client.set_registered_model_alias(model_name, "latest", "1")
    assert bad_name.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as no_version:
        mlflow_client.set_registered_model_alias(model_name, "champion", "9")
    assert no_version.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_production_alias_needs_an_approved_promotion(
    mlflow_client, model_name, source, approver, client_for, steward_server
):
    version = mlflow_client.create_model_version(model_name, source)
    with pytest.raises(MlflowException) as protected:
        mlflow_client.set_registered_model_alias(model_name, "production", version.version)
    assert protected.value.error_code == "PERMISSION_DENIED"
    request = PromotionRequest.objects.get()
    assert (request.alias, request.state, request.model_version.version) == ("production", "pending", 1)
    assert f"#{request.pk}" in protected.value.message
    assert approver.username in protected.value.message
    assert not ModelAlias.objects.exists()
    with pytest.raises(MlflowException):
        mlflow_client.get_model_version_by_alias(model_name, "production")

    # The approver decides through Steward's own API.
    answer = client_for(approver).post(f"/api/promotion-requests/{request.pk}/approve/", {}, format="json")
    assert answer.status_code == 200, answer.content
    by_alias = mlflow_client.get_model_version_by_alias(model_name, "production")
    assert (by_alias.version, by_alias.aliases) == ("1", ["production"])
    # Nor can the MLflow API remove it behind the approvers' back.
    with pytest.raises(MlflowException) as kept:
        mlflow_client.delete_registered_model_alias(model_name, "production")
    assert kept.value.error_code == "PERMISSION_DENIED"
    assert ModelAlias.objects.filter(name="production").count() == 1


@pytest.mark.filterwarnings("ignore:.*deprecated since 2.9.0:FutureWarning")
def test_transition_stage_archives_or_names_the_alias(mlflow_client, model_name, source):
    mlflow_client.create_model_version(model_name, source)
    archived = mlflow_client.transition_model_version_stage(model_name, "1", "Archived")
    assert archived.current_stage == "Archived"
    assert ModelVersion.objects.get().status == "archived"
    assert mlflow_client.get_latest_versions(model_name, stages=["Archived"])[0].version == "1"
    assert mlflow_client.get_latest_versions(model_name, stages=["None"]) == []
    assert mlflow_client.transition_model_version_stage(model_name, "1", "None").current_stage == "None"
    with pytest.raises(MlflowException) as staged:
        mlflow_client.transition_model_version_stage(model_name, "1", "Production")
    assert staged.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "alias" in staged.value.message


def test_get_latest_versions_answers_get_and_post(
    steward_server, mlflow_env, model_name, source, mlflow_client, api_token, scientist
):
    mlflow_client.create_model_version(model_name, source)
    url = steward_server.url + "/api/2.0/mlflow/registered-models/get-latest-versions"
    headers = {"Authorization": f"Bearer {mlflow_env['MLFLOW_TRACKING_TOKEN']}"}
    by_get = requests.get(url, params={"name": model_name}, headers=headers, timeout=30)
    by_post = requests.post(url, json={"name": model_name, "stages": ["None"]}, headers=headers, timeout=30)
    assert [v["version"] for v in by_get.json()["model_versions"]] == ["1"]
    assert by_post.json()["model_versions"] == by_get.json()["model_versions"]
    # A read even as POST: a read-only token may call it.
    read_only = {"Authorization": f"Bearer {api_token(scientist, read_only=True)}"}
    assert requests.post(url, json={"name": model_name}, headers=read_only, timeout=30).status_code == 200


def test_outsider_sees_no_versions(mlflow_client, model_name, source, use_token, outsider):
    mlflow_client.create_model_version(model_name, source)
    use_token(outsider)
    with pytest.raises(MlflowException) as hidden:
        mlflow_client.get_model_version(model_name, "1")
    assert hidden.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as no_alias:
        mlflow_client.set_registered_model_alias(model_name, "champion", "1")
    assert no_alias.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert mlflow_client.search_model_versions(f"name = '{model_name}'") == []
    assert not ModelAlias.objects.exists()


def test_register_model_creates_the_model_once_then_versions(mlflow_env, source, scientist):
    import mlflow

    first = mlflow.register_model(source, "registered-by-fluent")
    # The second call meets RESOURCE_ALREADY_EXISTS on create, which the client tolerates.
    second = mlflow.register_model(source, "registered-by-fluent")
    assert (first.version, second.version) == ("1", "2")
    assert ModelVersion.objects.filter(model__name="registered-by-fluent").count() == 2

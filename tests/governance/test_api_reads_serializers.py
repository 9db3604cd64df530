"""The registry serializers write their fields out by hand (the lists' hot path, issue 9's speed
goal): their answer must stay exactly DRF's generic one, row for row, through the API."""

from rest_framework import serializers

from governance.actions.aliases import do_set_alias
from governance.actions.model_versions import do_archive_model_version, do_set_model_version_tag
from governance.actions.registered_models import (
    do_archive_registered_model,
    do_create_registered_model,
    do_set_registered_model_tag,
)
from governance.api.serializers import ModelVersionSerializer, RegisteredModelSerializer
from governance.api.views import ModelVersionViewSet, RegisteredModelViewSet
from governance.models import ModelVersion


def _generic(serializer_class, instance) -> dict:
    """What DRF's ModelSerializer answers for ``instance``, field by field."""
    return serializers.ModelSerializer.to_representation(serializer_class(), instance)


def test_model_and_version_rows_are_drf_answers_field_for_field(
    client_for, fresh, scientist, owner, team, registered_version
):
    model = registered_version.model
    do_set_registered_model_tag(model=model, key="stage", value="canary", actor=scientist)
    do_set_model_version_tag(version=registered_version, key="reviewed", value="yes", actor=scientist)
    do_set_alias(model=model, alias="staging", version=registered_version, actor=scientist)
    do_set_alias(model=model, alias="canary", version=registered_version, actor=scientist)
    archived = do_create_registered_model(
        team=team, name="zz-archived", owner=owner, description="old, é", actor=scientist
    )
    do_archive_registered_model(model=archived, actor=scientist)
    client = client_for(fresh(scientist))

    models = client.get("/api/models/", {"page_size": 100}).json()["results"]
    versions = client.get("/api/model-versions/", {"page_size": 100}).json()["results"]

    expected_models = [
        _generic(RegisteredModelSerializer, RegisteredModelViewSet.queryset.get(pk=pk))
        for pk in (model.pk, archived.pk)
    ]
    assert models == expected_models
    assert models[0]["aliases"] == {
        "canary": registered_version.version,
        "staging": registered_version.version,
    }
    assert models[1]["status"] == "archived"
    assert models[1]["archived_at"].endswith("Z")
    assert versions == [
        _generic(ModelVersionSerializer, ModelVersionViewSet.queryset.get(pk=registered_version.pk))
    ]
    assert versions[0]["aliases"] == ["canary", "staging"]
    assert versions[0]["created_by"] == scientist.username

    do_archive_model_version(version=registered_version, actor=scientist)
    # As after its creator's account is deleted (SET_NULL): no creator to name.
    ModelVersion.objects.filter(pk=registered_version.pk).update(created_by=None)
    detail = client.get(f"/api/model-versions/{registered_version.pk}/").json()
    assert detail == _generic(
        ModelVersionSerializer, ModelVersionViewSet.queryset.get(pk=registered_version.pk)
    )
    assert (detail["status"], detail["created_by"]) == ("archived", None)

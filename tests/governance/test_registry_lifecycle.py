"""Models and versions through the API: update, archive, soft delete, tags, audit (issue 9)."""

from django.core.files.uploadedfile import SimpleUploadedFile

from governance.models import AuditEvent, ModelAlias, ModelVersion, RegisteredModel


def upload_version(client, model, content: bytes = b"not a model", name: str = "weights.bin", **extra):
    """POST a version of ``model`` from an uploaded file; the response."""
    return client.post(
        "/api/model-versions/",
        {"model": model.pk, "artifact": SimpleUploadedFile(name, content), **extra},
        format="multipart",
    )


def _actions(since: int) -> list[str]:
    return list(AuditEvent.objects.filter(pk__gt=since).order_by("pk").values_list("action", flat=True))


def _last() -> int:
    return AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def test_a_version_is_registered_from_an_upload_with_tags_and_description(
    client_for, scientist, registered_model
):
    response = upload_version(
        client_for(scientist),
        registered_model,
        b"\x00\x01",
        description="first try",
        tags='{"stage": "candidate"}',
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["version"], body["description"], body["tags"]) == (1, "first try", {"stage": "candidate"})
    assert (body["flavor"], body["executes_code"], body["is_directory"]) == ("unknown", False, False)
    assert body["source"] == "upload:weights.bin"
    assert body["sha256"] == "b413f47d13ee2fe6c845b2ee141af81de858df4ec549a58b7970bb96645bc8d2"
    assert AuditEvent.objects.filter(action="model_version.register").count() == 1


def test_deleting_a_version_is_soft_its_number_never_reused_its_aliases_removed(
    client_for, scientist, registered_model
):
    client = client_for(scientist)
    first = upload_version(client, registered_model).json()
    upload_version(client, registered_model, b"two")
    client.put(f"/api/models/{registered_model.pk}/aliases/champion/", {"version": 2}, format="json")
    client.put(f"/api/models/{registered_model.pk}/aliases/candidate/", {"version": 2}, format="json")
    second_id = ModelVersion.objects.get(version=2).pk
    since = _last()

    deleted = client.delete(f"/api/model-versions/{second_id}/")
    third = upload_version(client, registered_model, b"three").json()

    assert deleted.status_code == 204
    assert _actions(since)[:3] == ["model_alias.delete", "model_alias.delete", "model_version.delete"]
    assert ModelVersion.objects.get(pk=second_id).status == "deleted"
    assert not ModelAlias.objects.exists()
    assert third["version"] == 3
    assert client.get(f"/api/model-versions/{second_id}/").status_code == 404
    listed = [
        v["version"]
        for v in client.get("/api/model-versions/", {"model": registered_model.pk}).json()["results"]
    ]
    assert sorted(listed) == [first["version"], 3]
    assert client.delete(f"/api/model-versions/{second_id}/").status_code == 404


def test_a_model_with_live_versions_is_deleted_only_with_the_flag(
    client_for, scientist, registered_model, team
):
    client = client_for(scientist)
    upload_version(client, registered_model)
    client.put(f"/api/models/{registered_model.pk}/aliases/candidate/", {"version": 1}, format="json")
    since = _last()

    refused = client.delete(f"/api/models/{registered_model.pk}/")
    still = client.get(f"/api/models/{registered_model.pk}/")
    deleted = client.delete(f"/api/models/{registered_model.pk}/?with_versions=true")
    gone = client.get(f"/api/models/{registered_model.pk}/")
    events = _actions(since)
    reused = client.post("/api/models/", {"team": team.pk, "name": "bike-demand"}, format="json")

    assert refused.status_code == 400
    assert refused.json() == {
        "with_versions": [
            "model bike-demand has 1 live version(s); delete them first or ask to delete them with the model "
            "(with_versions=true)"
        ]
    }
    assert still.status_code == 200
    assert deleted.status_code == 204
    assert events == ["model_alias.delete", "model_version.delete", "registered_model.delete"]
    assert gone.status_code == 404
    assert RegisteredModel.objects.get(pk=registered_model.pk).deleted_at is not None
    assert reused.status_code == 201


def test_a_model_without_versions_is_deleted_without_the_flag(client_for, scientist, registered_model):
    response = client_for(scientist).delete(f"/api/models/{registered_model.pk}/")

    assert response.status_code == 204
    assert AuditEvent.objects.filter(action="registered_model.delete").count() == 1


def test_an_archived_model_takes_no_version_and_no_alias_until_unarchived(
    client_for, scientist, registered_model
):
    client = client_for(scientist)
    upload_version(client, registered_model)

    archived = client.post(f"/api/models/{registered_model.pk}/archive/")
    no_version = upload_version(client, registered_model, b"2")
    no_alias = client.put(
        f"/api/models/{registered_model.pk}/aliases/candidate/", {"version": 1}, format="json"
    )
    unarchived = client.post(f"/api/models/{registered_model.pk}/unarchive/")
    version = upload_version(client, registered_model, b"2")

    assert archived.status_code == 200
    assert (archived.json()["status"], bool(archived.json()["archived_at"])) == ("archived", True)
    assert no_version.json() == {"model": ["model bike-demand is archived; unarchive it to add versions"]}
    assert no_alias.json() == {
        "model": ["model bike-demand is archived; an archived model takes no new alias"]
    }
    assert (unarchived.json()["status"], unarchived.json()["archived_at"]) == ("ready", None)
    assert version.status_code == 201
    assert (
        AuditEvent.objects.filter(
            action__in=["registered_model.archive", "registered_model.unarchive"]
        ).count()
        == 2
    )


def test_an_archived_version_takes_no_alias(client_for, scientist, registered_model):
    client = client_for(scientist)
    version = upload_version(client, registered_model).json()

    archived = client.post(f"/api/model-versions/{version['id']}/archive/")
    refused = client.put(
        f"/api/models/{registered_model.pk}/aliases/candidate/", {"version": 1}, format="json"
    )
    unarchived = client.post(f"/api/model-versions/{version['id']}/unarchive/")
    allowed = client.put(
        f"/api/models/{registered_model.pk}/aliases/candidate/", {"version": 1}, format="json"
    )

    assert archived.json()["status"] == "archived"
    assert refused.json() == {"model_version": ["bike-demand v1 is archived, not ready"]}
    assert unarchived.json()["status"] == "ready"
    assert allowed.json()["aliases"] == {"candidate": 1}


def test_updates_and_tags_bump_updated_at_and_are_audited(client_for, scientist, registered_model):
    client = client_for(scientist)
    version = upload_version(client, registered_model).json()
    before = client.get(f"/api/models/{registered_model.pk}/").json()["updated_at"]
    since = _last()

    described = client.patch(
        f"/api/models/{registered_model.pk}/", {"description": "hourly demand"}, format="json"
    )
    tagged = client.put(
        f"/api/models/{registered_model.pk}/tags/owner.team/", {"value": "mobility"}, format="json"
    )
    untagged = client.delete(f"/api/models/{registered_model.pk}/tags/owner.team/")
    missing = client.delete(f"/api/models/{registered_model.pk}/tags/never-set/")
    version_described = client.patch(
        f"/api/model-versions/{version['id']}/", {"description": "v1"}, format="json"
    )
    version_tagged = client.put(
        f"/api/model-versions/{version['id']}/tags/validated/", {"value": "yes"}, format="json"
    )
    version_untagged = client.delete(f"/api/model-versions/{version['id']}/tags/validated/")

    assert described.json()["description"] == "hourly demand"
    assert described.json()["updated_at"] > before
    assert tagged.json()["tags"] == {"owner.team": "mobility"}
    assert (untagged.status_code, missing.status_code) == (204, 204)
    assert version_described.json()["description"] == "v1"
    assert version_described.json()["updated_at"] > version["updated_at"]
    assert version_tagged.json()["tags"] == {"validated": "yes"}
    assert version_untagged.status_code == 204
    assert client.get(f"/api/model-versions/{version['id']}/").json()["tags"] == {}
    assert _actions(since) == [
        "registered_model.update",
        "registered_model.tag.set",
        "registered_model.tag.delete",
        "model_version.update",
        "model_version.tag.set",
        "model_version.tag.delete",
    ]


def test_viewers_and_other_teams_change_nothing(client_for, viewer, outsider, scientist, registered_model):
    version = upload_version(client_for(scientist), registered_model).json()
    since = _last()

    viewer_client, outsider_client = client_for(viewer), client_for(outsider)
    answers = [
        viewer_client.patch(
            f"/api/models/{registered_model.pk}/", {"description": "x"}, format="json"
        ).status_code,
        viewer_client.delete(f"/api/models/{registered_model.pk}/?with_versions=true").status_code,
        viewer_client.put(
            f"/api/models/{registered_model.pk}/tags/a/", {"value": "b"}, format="json"
        ).status_code,
        viewer_client.delete(f"/api/model-versions/{version['id']}/").status_code,
        upload_version(viewer_client, registered_model).status_code,
        outsider_client.patch(
            f"/api/models/{registered_model.pk}/", {"description": "x"}, format="json"
        ).status_code,
        outsider_client.delete(f"/api/model-versions/{version['id']}/").status_code,
    ]

    assert answers == [403, 403, 403, 403, 403, 404, 404]
    assert _actions(since) == []


def test_a_patch_of_a_field_that_cannot_change_is_refused_naming_it(
    client_for, owner, outsider, registered_model
):
    response = client_for(owner).patch(
        f"/api/models/{registered_model.pk}/", {"description": "x", "owner": outsider.username}, format="json"
    )

    assert (response.status_code, response.json()) == (
        400,
        {"owner": ["not a field that can be changed here"]},
    )
    assert RegisteredModel.objects.get().description == ""

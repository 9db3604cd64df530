"""Protected aliases cannot be taken away without four eyes (issue 9, hostile tests F1, F4, F11)."""

import io
import tarfile

import pytest

from governance.models import ModelAlias, ModelVersion, PromotionRequest, RegisteredModel
from tests.governance.test_registry_lifecycle import upload_version


def _protect(client, team, aliases):
    return client.put(
        f"/api/teams/{team.pk}/protected-aliases/", {"protected_aliases": aliases}, format="json"
    )


def _in_production(client_for, scientist, approver, model) -> list[dict]:
    """Two versions of ``model``, the first holding production (through an approved request)."""
    client = client_for(scientist)
    versions = [upload_version(client, model).json(), upload_version(client, model, b"2").json()]
    client.put(f"/api/models/{model.pk}/aliases/production/", {"version": 1}, format="json")
    request = PromotionRequest.objects.get()
    client_for(approver).post(f"/api/promotion-requests/{request.pk}/approve/", {}, format="json")
    assert ModelAlias.objects.get(name="production").model_version_id == versions[0]["id"]
    return versions


@pytest.mark.parametrize("manager", ["owner", "admin"])
def test_a_held_protected_alias_cannot_be_unprotected_by_a_model_owner_or_an_admin(
    request, client_for, scientist, approver, registered_model, team, manager
):
    _in_production(client_for, scientist, approver, registered_model)
    client = client_for(request.getfixturevalue(manager))

    removed = _protect(client, team, [])
    added = _protect(client, team, ["production", "staging"])

    assert removed.status_code == 400
    assert "bike-demand@production" in removed.json()["protected_aliases"][0]
    assert added.status_code == 200
    assert added.json()["protected_aliases"] == ["production", "staging"]


def test_an_unheld_protected_alias_can_be_unprotected(client_for, owner, team):
    assert _protect(client_for(owner), team, []).json()["protected_aliases"] == []


def test_a_version_holding_a_protected_alias_cannot_be_deleted_or_archived(
    client_for, scientist, approver, registered_model
):
    first, _ = _in_production(client_for, scientist, approver, registered_model)
    client = client_for(scientist)

    deleted = client.delete(f"/api/model-versions/{first['id']}/")
    archived = client.post(f"/api/model-versions/{first['id']}/archive/", {}, format="json")
    model_deleted = client.delete(f"/api/models/{registered_model.pk}/?with_versions=true")

    for response in (deleted, archived, model_deleted):
        assert response.status_code == 403
        assert "protected alias 'production'" in response.json()["detail"]
        assert "promote another version to 'production' first" in response.json()["detail"]
    assert ModelAlias.objects.get(name="production").model_version_id == first["id"]
    assert ModelVersion.objects.get(pk=first["id"]).status == ModelVersion.Status.READY
    assert RegisteredModel.objects.get(pk=registered_model.pk).deleted_at is None


def test_a_version_holding_only_an_unprotected_alias_is_deleted_with_it(
    client_for, scientist, registered_model
):
    client = client_for(scientist)
    version = upload_version(client, registered_model).json()
    client.put(f"/api/models/{registered_model.pk}/aliases/champion/", {"version": 1}, format="json")

    assert client.delete(f"/api/model-versions/{version['id']}/").status_code == 204
    assert not ModelAlias.objects.exists()


@pytest.mark.parametrize(
    "alias", ["Production", "PRODUCTION", "\uff50\uff52\uff4f\uff44\uff55\uff43\uff54\uff49\uff4f\uff4e"]
)
def test_a_protected_alias_is_protected_in_every_case_and_width(
    client_for, scientist, registered_model, alias
):
    client = client_for(scientist)
    upload_version(client, registered_model)

    response = client.put(
        f"/api/models/{registered_model.pk}/aliases/{alias}/", {"version": 1}, format="json"
    )

    assert response.status_code == 403
    assert PromotionRequest.objects.get().alias == alias
    assert not ModelAlias.objects.exists()


@pytest.mark.parametrize("name", ["/", "a/b", "a:b", "models:/x"])
def test_model_names_with_a_slash_or_colon_are_refused(client_for, scientist, team, name):
    response = client_for(scientist).post("/api/models/", {"team": team.pk, "name": name}, format="json")

    assert response.status_code == 400
    assert "it breaks models:/ URIs" in response.json()["name"][0]


def test_a_dataset_name_may_hold_a_slash(client_for, scientist, team):
    response = client_for(scientist).post("/api/datasets/", {"team": team.pk, "name": "a/b"}, format="json")

    assert response.status_code == 201


def _tar(*members: tuple[str, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.mark.parametrize("members", [(), (("empty-folder", None),)])
def test_an_archive_without_a_file_is_refused(client_for, scientist, registered_model, members):
    response = upload_version(client_for(scientist), registered_model, _tar(*members), "model.tar")

    assert response.status_code == 400
    assert "the archive holds no file: nothing to register" in str(response.json())
    assert not ModelVersion.objects.exists()


def test_an_unwritable_archive_does_not_show_server_paths(client_for, scientist, registered_model):
    # "a" a file, then "a/b" under it: extracting fails on the server's temporary folder.
    response = upload_version(
        client_for(scientist), registered_model, _tar(("a", b"1"), ("a/b", b"2")), "dup.tar"
    )

    assert response.status_code == 400
    assert "/tmp" not in str(response.json())
    assert "steward-upload-" not in str(response.json())

"""Aliases through the API: any name, protected ones only through four eyes (issue 9)."""

from governance.models import AuditEvent, ModelAlias, PromotionRequest
from tests.governance.test_registry_lifecycle import upload_version


def _set(client, model, alias, version):
    return client.put(f"/api/models/{model.pk}/aliases/{alias}/", {"version": version}, format="json")


def test_an_unprotected_alias_moves_at_once_for_a_data_scientist(client_for, scientist, registered_model):
    client = client_for(scientist)
    upload_version(client, registered_model)
    upload_version(client, registered_model, b"2")

    first = _set(client, registered_model, "champion", 1)
    moved = _set(client, registered_model, "champion", 2)
    removed = client.delete(f"/api/models/{registered_model.pk}/aliases/champion/")
    missing = client.delete(f"/api/models/{registered_model.pk}/aliases/champion/")

    assert first.json()["aliases"] == {"champion": 1}
    assert moved.json()["aliases"] == {"champion": 2}
    assert (removed.status_code, missing.status_code) == (204, 204)
    assert list(
        AuditEvent.objects.filter(action__startswith="model_alias.").values_list("action", flat=True)
    ) == [
        "model_alias.delete",
        "model_alias.move",
        "model_alias.move",
    ]


def test_alias_names_follow_mlflows_rule(client_for, scientist, registered_model):
    client = client_for(scientist)
    upload_version(client, registered_model)

    latest = _set(client, registered_model, "latest", 1)
    numbered = _set(client, registered_model, "v3", 1)
    dotted = _set(client, registered_model, "my.alias", 1)
    unknown_version = _set(client, registered_model, "champion", 9)

    reserved = "is reserved: 'latest' and 'v<number>' name versions"
    assert latest.json() == {"alias": [f"alias 'latest' {reserved}"]}
    assert numbered.json() == {"alias": [f"alias 'v3' {reserved}"]}
    assert dotted.json() == {
        "alias": ["alias 'my.alias' may contain only letters, digits, underscores and hyphens"]
    }
    assert unknown_version.json() == {"version": ["model bike-demand has no version 9"]}
    assert not ModelAlias.objects.exists()


def test_a_protected_alias_opens_a_promotion_request_then_moves_on_approval(
    client_for, scientist, approver, registered_model
):
    client = client_for(scientist)
    upload_version(client, registered_model)

    refused = _set(client, registered_model, "production", 1)
    again = _set(client, registered_model, "production", 1)
    request = PromotionRequest.objects.get()
    approved = client_for(approver).post(f"/api/promotion-requests/{request.pk}/approve/", {}, format="json")
    model = client.get(f"/api/models/{registered_model.pk}/").json()

    assert refused.status_code == 403
    body = refused.json()
    assert body["promotion_request"] == request.pk
    assert body["approvers"] == ["aaron"]
    assert f"promotion request #{request.pk} (bike-demand v1 -> production) is pending" in body["detail"]
    assert "who may approve it: aaron" in body["detail"]
    assert again.json()["promotion_request"] == request.pk
    assert PromotionRequest.objects.count() == 1
    assert approved.json()["state"] == "approved"
    assert model["aliases"] == {"production": 1}
    assert _set(client, registered_model, "production", 1).status_code == 200


def test_a_protected_alias_cannot_be_deleted_directly(client_for, scientist, registered_model):
    response = client_for(scientist).delete(f"/api/models/{registered_model.pk}/aliases/production/")

    assert response.status_code == 403
    assert response.json() == {
        "detail": "alias 'production' is protected in team Mobility: it moves only through an approved "
        "promotion request and cannot be deleted directly"
    }


def test_viewers_and_approvers_cannot_move_aliases(client_for, scientist, viewer, approver, registered_model):
    upload_version(client_for(scientist), registered_model)

    by_viewer = _set(client_for(viewer), registered_model, "champion", 1)
    by_viewer_protected = _set(client_for(viewer), registered_model, "production", 1)
    by_approver = _set(client_for(approver), registered_model, "champion", 1)

    assert (by_viewer.status_code, by_viewer_protected.status_code, by_approver.status_code) == (
        403,
        403,
        403,
    )
    assert not ModelAlias.objects.exists()
    assert not PromotionRequest.objects.exists()


def test_a_team_manager_chooses_the_protected_aliases(client_for, owner, scientist, registered_model, team):
    upload_version(client_for(scientist), registered_model)

    by_scientist = client_for(scientist).put(
        f"/api/teams/{team.pk}/protected-aliases/",
        {"protected_aliases": ["production", "staging"]},
        format="json",
    )
    invalid = client_for(owner).put(
        f"/api/teams/{team.pk}/protected-aliases/", {"protected_aliases": ["latest"]}, format="json"
    )
    by_owner = client_for(owner).put(
        f"/api/teams/{team.pk}/protected-aliases/",
        {"protected_aliases": ["staging", "production"]},
        format="json",
    )
    staging = _set(client_for(scientist), registered_model, "staging", 1)

    assert by_scientist.status_code == 403
    assert invalid.status_code == 400
    assert by_owner.json()["protected_aliases"] == ["production", "staging"]
    assert AuditEvent.objects.filter(action="team.set_protected_aliases").count() == 1
    assert staging.status_code == 403
    assert PromotionRequest.objects.get().alias == "staging"


def test_promotion_requests_take_any_valid_alias(client_for, scientist, approver, registered_model):
    client = client_for(scientist)
    version = upload_version(client, registered_model).json()

    created = client.post(
        "/api/promotion-requests/", {"model_version": version["id"], "alias": "canary"}, format="json"
    )
    client_for(approver).post(f"/api/promotion-requests/{created.json()['id']}/approve/", {}, format="json")

    assert created.status_code == 201
    assert client.get(f"/api/models/{registered_model.pk}/").json()["aliases"] == {"canary": 1}

"""The registry API: datasets and their versions, models, model versions, teams, memberships, audit."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.contrib.auth import get_user_model

from governance.actions.model_versions import do_register_model_version
from governance.actions.promotions import do_request_promotion
from governance.actions.registered_models import do_create_registered_model
from governance.actions.tokens import do_create_api_token
from governance.models import (
    AuditEvent,
    Dataset,
    Membership,
    PlatformRoleGrant,
    RegisteredModel,
    Team,
    TeamRole,
)
from tests.governance.conftest import fingerprint, result_ids

# Models and model versions


def test_create_model_for_a_team_member(client_for, scientist, owner, team):
    response = client_for(scientist).post(
        "/api/models/", {"team": team.pk, "name": "bike-demand", "owner": "olivia"}, format="json"
    )

    assert response.status_code == 201
    model = RegisteredModel.objects.get()
    body = response.json()
    assert body == {
        "id": model.pk,
        "team": team.pk,
        "name": "bike-demand",
        "owner": "olivia",
        "description": "",
        "tags": {},
        "status": "ready",
        "archived_at": None,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
        "latest_version": None,
        "aliases": {},
    }
    event = AuditEvent.objects.get(action="registered_model.create")
    assert (event.actor, event.after["owner_id"]) == (scientist, owner.pk)


def test_model_without_owner_is_owned_by_its_creator(client_for, scientist, team):
    response = client_for(scientist).post("/api/models/", {"team": team.pk, "name": "m"}, format="json")

    assert response.status_code == 201
    assert response.json()["owner"] == "dana"


def test_model_owner_from_another_team_is_refused(client_for, scientist, team, outsider):
    events = AuditEvent.objects.count()

    response = client_for(scientist).post(
        "/api/models/", {"team": team.pk, "name": "m", "owner": "oscar"}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"owner": ["oscar is not a member of team Mobility"]}
    assert RegisteredModel.objects.count() == 0
    assert AuditEvent.objects.count() == events


def test_list_models_in_constant_queries(
    client_for, fresh, scientist, owner, team, registered_version, django_assert_num_queries
):
    for name in ("a", "b"):
        do_create_registered_model(team=team, name=f"model-{name}", owner=scientist, actor=scientist)
    client = client_for(fresh(owner))

    # 1 platform and team roles (one UNION), 2 the page (owner joined, latest version annotated;
    # a cursor page: no COUNT), 3 the page's aliases (their versions joined)
    with django_assert_num_queries(3):
        response = client.get("/api/models/")

    assert [(row["name"], row["owner"], row["latest_version"]) for row in response.json()["results"]] == [
        ("bike-demand", "olivia", 1),
        ("model-a", "dana", None),
        ("model-b", "dana", None),
    ]


def test_model_version_detail(client_for, viewer, registered_version, dataset_version, bike_training_result):
    response = client_for(viewer).get(f"/api/model-versions/{registered_version.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "id": registered_version.pk,
        "model": registered_version.model_id,
        "model_name": "bike-demand",
        "version": 1,
        "status": "ready",
        "sha256": hashlib.sha256(bike_training_result.artifact).hexdigest(),
        "size_bytes": len(bike_training_result.artifact),
        "metrics": bike_training_result.metrics,
        "signature": bike_training_result.signature,
        "training_spec": registered_version.training_spec,
        "training_dataset_version": dataset_version.pk,
        "source_job_id": None,
        "flavor": "steward_tabular",
        "flavor_details": {},
        "executes_code": False,
        "is_directory": False,
        "source": "",
        "description": "",
        "intended_purpose": "",
        "known_limitations": "",
        "tags": {},
        "aliases": [],
        "created_by": "dana",
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert body["training_spec"]["where"] == {"yr": 0}


def test_list_model_versions_in_constant_queries(
    client_for, fresh, viewer, registered_version, scientist, bike_training_result, django_assert_num_queries
):
    for _ in range(2):
        do_register_model_version(
            model=registered_version.model,
            artifact_bytes=bike_training_result.artifact,
            metrics={},
            signature={},
            training_spec={},
            training_dataset_version=None,
            source_job_id=None,
            actor=scientist,
        )
    client = client_for(fresh(viewer))

    # 1 platform and team roles (one UNION), 2 the page (model and creator joined),
    # 4 the page's aliases
    with django_assert_num_queries(3):
        response = client.get("/api/model-versions/")

    assert [(row["model_name"], row["version"]) for row in response.json()["results"]] == [
        ("bike-demand", 3),
        ("bike-demand", 2),
        ("bike-demand", 1),
    ]


# Teams and memberships


def test_admin_creates_a_team(client_for, admin):
    response = client_for(admin).post(
        "/api/teams/", {"name": "Risk Models", "slug": "ignored", "description": "Credit"}, format="json"
    )

    assert response.status_code == 201
    team = Team.objects.get()
    assert response.json() == {
        "id": team.pk,
        "name": "Risk Models",
        "slug": "risk-models",
        "description": "Credit",
        "protected_aliases": ["production"],
        "created_at": response.json()["created_at"],
    }
    assert AuditEvent.objects.filter(action="team.create", object_id=str(team.pk)).count() == 1


def test_duplicate_team_name_is_400(client_for, admin, team):
    response = client_for(admin).post("/api/teams/", {"name": "Mobility"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"name": ["team with this name already exists."]}
    assert Team.objects.count() == 1


def test_teams_list_shows_a_member_only_their_teams(
    client_for, fresh, admin, scientist, team, other_team, django_assert_num_queries
):
    client = client_for(fresh(scientist))

    # 1 platform and team roles (one UNION), 2 the page
    with django_assert_num_queries(2):
        response = client.get("/api/teams/")

    assert [row["name"] for row in response.json()["results"]] == ["Mobility"]
    assert [row["name"] for row in client_for(admin).get("/api/teams/").json()["results"]] == [
        "Fraud",
        "Mobility",
    ]


def test_memberships_list_and_filter(
    client_for, fresh, owner, scientist, viewer, outsider, django_assert_num_queries
):
    client = client_for(fresh(viewer))

    # 1 platform and team roles (one UNION), 2 the page (user and team joined)
    with django_assert_num_queries(2):
        response = client.get("/api/memberships/")

    assert [(row["username"], row["role"]) for row in response.json()["results"]] == [
        ("dana", "data_scientist"),
        ("olivia", "model_owner"),
        ("vera", "viewer"),
    ]
    filtered = client.get("/api/memberships/", {"role": TeamRole.MODEL_OWNER})
    assert [row["username"] for row in filtered.json()["results"]] == ["olivia"]


# Audit events


def test_audit_events_endpoint_is_read_only(client_for, admin, dataset):
    event = AuditEvent.objects.get(action="dataset.create")
    count = AuditEvent.objects.count()
    client = client_for(admin)

    answers = [
        client.post("/api/audit-events/", {"action": "forged"}, format="json").status_code,
        client.put(f"/api/audit-events/{event.pk}/", {"action": "forged"}, format="json").status_code,
        client.patch(f"/api/audit-events/{event.pk}/", {"action": "forged"}, format="json").status_code,
        client.delete(f"/api/audit-events/{event.pk}/").status_code,
    ]

    assert answers == [405, 405, 405, 405]
    assert AuditEvent.objects.count() == count
    assert AuditEvent.objects.get(pk=event.pk).action == "dataset.create"


def test_audit_events_list_in_constant_queries(
    client_for, fresh, scientist, compliance_officer, dataset_version, django_assert_num_queries
):
    client = client_for(fresh(compliance_officer))

    # 1 platform and team roles (compliance officer: every team), 2 the page
    # (cursor pagination: no COUNT over the log)
    with django_assert_num_queries(2):
        response = client.get("/api/audit-events/")

    assert len(response.json()["results"]) == AuditEvent.objects.count()
    member = client_for(fresh(scientist))
    # 1 platform and team roles (one UNION), 2 the page
    with django_assert_num_queries(2):
        response = member.get("/api/audit-events/")
    assert {row["team"] for row in response.json()["results"]} == {dataset_version.dataset.team_id}


def test_audit_events_filters(client_for, compliance_officer, admin, scientist, owner, dataset_version):
    client = client_for(compliance_officer)
    everything = list(AuditEvent.objects.order_by("-timestamp", "-id"))

    def ids(**params) -> list[int]:
        response = client.get("/api/audit-events/", params)
        assert response.status_code == 200
        return result_ids(response)

    assert ids(actor="dana") == [e.pk for e in everything if e.actor_label == "dana"]
    assert [e.action for e in AuditEvent.objects.filter(pk__in=ids(actor="dana"))] == [
        "dataset_version.register",
        "dataset.create",
    ]
    assert ids(action="membership") == [e.pk for e in everything if e.action == "membership.grant"]
    assert len(ids(action="membership")) == 2
    assert ids(object_type="datasetversion") == [AuditEvent.objects.get(action="dataset_version.register").pk]
    assert ids(object_type="dataset", object_id=str(dataset_version.dataset_id)) == [
        AuditEvent.objects.get(action="dataset.create").pk
    ]
    middle = everything[2]
    assert ids(since=middle.timestamp.isoformat()) == [
        e.pk for e in everything if e.timestamp >= middle.timestamp
    ]
    assert ids(until=middle.timestamp.isoformat()) == [
        e.pk for e in everything if e.timestamp < middle.timestamp
    ]
    later = everything[0].timestamp + timedelta(seconds=1)
    assert ids(since=later.isoformat()) == []
    assert ids(q="OLIVIA") == [AuditEvent.objects.get(action="membership.grant", after__user="olivia").pk]
    assert ids(q="bike-sharing-hourly v1") == [AuditEvent.objects.get(action="dataset_version.register").pk]


def test_audit_events_bad_filter_value_is_400(client_for, compliance_officer):
    response = client_for(compliance_officer).get("/api/audit-events/", {"since": "yesterday"})

    assert response.status_code == 400
    assert response.json() == {"since": ["Enter a valid date/time."]}


def test_unknown_ids_are_404(client_for, scientist, team):
    client = client_for(scientist)

    answers = {
        url: (response.status_code, response.json()["detail"])
        for url in (
            "/api/datasets/999/",
            "/api/dataset-versions/999/",
            "/api/dataset-versions/999/download/",
            "/api/models/999/",
            "/api/model-versions/999/",
            "/api/teams/999/",
            "/api/memberships/999/",
            "/api/audit-events/999/",
        )
        for response in [client.get(url)]
    }

    assert answers == {
        "/api/datasets/999/": (404, "No Dataset matches the given query."),
        "/api/dataset-versions/999/": (404, "No DatasetVersion matches the given query."),
        "/api/dataset-versions/999/download/": (404, "No DatasetVersion matches the given query."),
        "/api/models/999/": (404, "No RegisteredModel matches the given query."),
        "/api/model-versions/999/": (404, "No ModelVersion matches the given query."),
        "/api/teams/999/": (404, "No Team matches the given query."),
        "/api/memberships/999/": (404, "No Membership matches the given query."),
        "/api/audit-events/999/": (404, "No AuditEvent matches the given query."),
    }


# Mass assignment: fields the server owns are refused (405: no such method) or ignored.


def test_server_owned_fields_cannot_be_patched_in(
    client_for, world, admin, scientist, outsider, compliance_officer
):
    token, _ = do_create_api_token(user=scientist, name="ro", actor=scientist)
    promotion = do_request_promotion(model_version=world.model_version, actor=scientist)
    grant = PlatformRoleGrant.objects.get(user=compliance_officer)
    membership = Membership.objects.get(user=scientist)
    before = fingerprint()
    evil = {
        "owner": outsider.pk,
        "team": world.other_team.pk,
        "is_staff": True,
        "is_superuser": True,
        "role": "admin",
        "created_by": outsider.pk,
        "state": "approved",
        "is_read_only": False,
        "user": outsider.pk,
    }

    refused = {
        url: client_for(user).patch(url, evil, format="json").status_code
        for url, user in [
            (f"/api/models/{world.model.pk}/", admin),
            (f"/api/datasets/{world.dataset.pk}/", admin),
            (f"/api/teams/{world.team.pk}/", admin),
            (f"/api/users/{scientist.pk}/", admin),
            (f"/api/platform-roles/{grant.pk}/", admin),
            (f"/api/promotion-requests/{promotion.pk}/", admin),
            (f"/api/tokens/{token.pk}/", scientist),
            (f"/api/jobs/{world.job.pk}/", admin),
        ]
    }
    # Models and datasets take a PATCH of their description (issue 9): other keys are a 400.
    patchable = {f"/api/models/{world.model.pk}/", f"/api/datasets/{world.dataset.pk}/"}
    assert {url: code for url, code in refused.items() if url in patchable} == dict.fromkeys(patchable, 400)
    assert {code for url, code in refused.items() if url not in patchable} == {405}
    assert fingerprint() == before

    # A membership's role is changeable; its user and team are not, and "admin" is no team role.
    bad_role = client_for(admin).patch(f"/api/memberships/{membership.pk}/", evil, format="json")
    assert (bad_role.status_code, bad_role.json()) == (400, {"role": ['"admin" is not a valid choice.']})
    changed = client_for(admin).patch(
        f"/api/memberships/{membership.pk}/", {**evil, "role": "viewer"}, format="json"
    )
    membership.refresh_from_db()
    assert changed.status_code == 200
    assert (membership.user, membership.team, membership.role) == (scientist, world.team, "viewer")
    # PATCH is partial (issue 13): without a role it changes nothing and records nothing.
    events = AuditEvent.objects.count()
    unchanged = client_for(admin).patch(f"/api/memberships/{membership.pk}/", {}, format="json")
    assert (unchanged.status_code, unchanged.json()["role"]) == (200, "viewer")
    assert AuditEvent.objects.count() == events
    assert list(get_user_model().objects.filter(is_staff=True)) == [admin]


def test_posting_server_owned_fields_is_ignored(client_for, admin):
    response = client_for(admin).post(
        "/api/teams/",
        {"name": "Risk", "slug": "chosen", "created_at": "2001-01-01T00:00:00Z", "id": 999},
        format="json",
    )

    team = Team.objects.get(name="Risk")
    assert response.status_code == 201
    assert (team.slug, team.pk != 999, team.created_at.year > 2001) == ("risk", True, True)


def test_a_model_cannot_be_registered_with_an_owner_outside_the_team(client_for, world, scientist, outsider):
    before = RegisteredModel.objects.count()

    response = client_for(scientist).post(
        "/api/models/", {"team": world.team.pk, "name": "planted", "owner": "oscar"}, format="json"
    )

    assert (response.status_code, response.json()) == (
        400,
        {"owner": ["oscar is not a member of team Mobility"]},
    )
    assert RegisteredModel.objects.count() == before
    assert not Dataset.objects.filter(name="planted").exists()

"""Who may see and do what, persona by persona, through the API."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from governance import tokens
from governance.actions.tokens import do_create_api_token
from governance.models import ApiToken, AuditEvent, Dataset, DatasetVersion, Team
from monitoring.models import Alert, AlertState, DriftCheck
from runners.models import Job, JobState
from tests.conftest import PASSWORD
from tests.governance.conftest import PERSONAS

EVERY_TEAM = {"admin", "compliance_officer"}
MOBILITY = {"owner", "scientist", "approver", "viewer"}

# resource -> (URL, the Mobility objects, the Fraud objects), as attribute names of ``world``.
RESOURCES = {
    "datasets": ("/api/datasets/", ["dataset", "current_dataset_version.dataset"], ["fraud_dataset"]),
    "dataset-versions": (
        "/api/dataset-versions/",
        ["dataset_version", "current_dataset_version"],
        ["fraud_version"],
    ),
    "models": ("/api/models/", ["model"], ["fraud_model"]),
    "model-versions": ("/api/model-versions/", ["model_version"], ["fraud_model_version"]),
    "jobs": ("/api/jobs/", ["job"], ["fraud_job"]),
    "drift-checks": ("/api/drift-checks/", ["check"], []),
    "alerts": ("/api/alerts/", ["alert"], []),
}
NOT_FOUND = {
    "datasets": "Dataset",
    "dataset-versions": "DatasetVersion",
    "models": "RegisteredModel",
    "model-versions": "ModelVersion",
    "jobs": "Job",
    "drift-checks": "DriftCheck",
    "alerts": "Alert",
}


def _pk(world, path: str) -> int:
    obj = world
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj.pk


def _visible(persona: str, world, resource: str) -> set[int]:
    _, mobility, fraud = RESOURCES[resource]
    if persona in EVERY_TEAM:
        names = mobility + fraud
    elif persona in MOBILITY:
        names = mobility
    else:
        names = fraud
    return {_pk(world, name) for name in names}


@pytest.mark.parametrize("resource", list(RESOURCES))
@pytest.mark.parametrize("persona", PERSONAS)
def test_lists_show_exactly_the_personas_teams(request, client_for, world, persona, resource):
    client = client_for(request.getfixturevalue(persona))

    response = client.get(RESOURCES[resource][0])

    assert response.status_code == 200
    assert {row["id"] for row in response.json()["results"]} == _visible(persona, world, resource)
    assert len(response.json()["results"]) == len(_visible(persona, world, resource))  # no duplicates


@pytest.mark.parametrize("resource", list(RESOURCES))
@pytest.mark.parametrize("persona", PERSONAS)
def test_retrieving_another_teams_object_is_404(request, client_for, world, persona, resource):
    url, mobility, _ = RESOURCES[resource]
    client = client_for(request.getfixturevalue(persona))

    response = client.get(f"{url}{_pk(world, mobility[0])}/")

    if persona == "outsider":
        assert response.status_code == 404
        assert response.json() == {"detail": f"No {NOT_FOUND[resource]} matches the given query."}
    else:
        assert response.status_code == 200
        assert response.json()["id"] == _pk(world, mobility[0])


@pytest.mark.parametrize("persona", PERSONAS)
def test_audit_trail_shows_the_personas_teams(request, client_for, world, persona):
    client = client_for(request.getfixturevalue(persona))
    mobility_event = AuditEvent.objects.get(action="dataset.create", object_id=str(world.dataset.pk))
    if persona in EVERY_TEAM:
        expected = AuditEvent.objects.all()
    else:
        expected = AuditEvent.objects.filter(team=world.other_team if persona == "outsider" else world.team)

    listed = client.get("/api/audit-events/")
    detail = client.get(f"/api/audit-events/{mobility_event.pk}/")

    assert listed.json()["next"] is None  # one cursor page holds them all
    assert [row["id"] for row in listed.json()["results"]] == [event.pk for event in expected[:50]]
    assert detail.status_code == (404 if persona == "outsider" else 200)


def test_team_less_events_are_for_platform_wide_readers_only(client_for, world, scientist, admin):
    """Platform-role grants belong to no team: only admins and compliance officers see them."""
    event = AuditEvent.objects.get(team=None)

    assert event.action == "platform_role.grant"
    assert client_for(scientist).get(f"/api/audit-events/{event.pk}/").status_code == 404
    assert client_for(admin).get(f"/api/audit-events/{event.pk}/").status_code == 200


# Writes: persona x action -> the status, and on denial nothing changes.

ALLOWED = {"admin", "owner", "scientist"}
WRITES = ["create_dataset", "upload_version", "submit_job", "cancel_job", "request_drift_check"]
ALERT_WRITES = ["acknowledge_alert", "resolve_alert"]
SUCCESS = {
    "create_dataset": (201, "dataset.create"),
    "upload_version": (201, "dataset_version.register"),
    "submit_job": (201, "job.submit"),
    "cancel_job": (200, "job.cancel"),
    "request_drift_check": (201, "drift_check.request"),
    "acknowledge_alert": (200, "alert.acknowledge"),
    "resolve_alert": (200, "alert.resolve"),
}


def _write(client, world, action: str, training_spec: dict):
    if action == "create_dataset":
        return client.post("/api/datasets/", {"team": world.team.pk, "name": "new-data"}, format="json")
    if action == "upload_version":
        upload = SimpleUploadedFile("tiny.csv", b"hr,cnt\n0,16\n1,40\n")
        return client.post(
            "/api/dataset-versions/", {"dataset": world.dataset.pk, "file": upload}, format="multipart"
        )
    if action == "submit_job":
        return client.post(
            "/api/jobs/",
            {
                "kind": "train",
                "dataset_version": world.dataset_version.pk,
                "registered_model": world.model.pk,
                "spec": training_spec,
            },
            format="json",
        )
    if action == "cancel_job":
        return client.post(f"/api/jobs/{world.job.pk}/cancel/")
    if action == "request_drift_check":
        return client.post(
            "/api/drift-checks/",
            {
                "model_version": world.model_version.pk,
                "current_dataset_version": world.current_dataset_version.pk,
            },
            format="json",
        )
    if action == "acknowledge_alert":
        return client.post(f"/api/alerts/{world.alert.pk}/acknowledge/")
    return client.post(f"/api/alerts/{world.alert.pk}/resolve/")


def _state(world) -> dict:
    return {
        "datasets": Dataset.objects.count(),
        "dataset versions": DatasetVersion.objects.count(),
        "jobs": Job.objects.count(),
        "job state": Job.objects.get(pk=world.job.pk).state,
        "cancel requested": Job.objects.get(pk=world.job.pk).is_cancel_requested,
        "drift checks": DriftCheck.objects.count(),
        "alert": Alert.objects.filter(pk=world.alert.pk).values("state", "acknowledged_by", "resolved_by")[0],
        "audit events": AuditEvent.objects.count(),
    }


def _outsider_answer(world, action: str) -> tuple[int, dict]:
    def invisible(pk: int) -> list[str]:
        return [f'Invalid pk "{pk}" - object does not exist.']

    return {
        "create_dataset": (400, {"team": invisible(world.team.pk)}),
        "upload_version": (400, {"dataset": invisible(world.dataset.pk)}),
        "submit_job": (
            400,
            {
                "dataset_version": invisible(world.dataset_version.pk),
                "registered_model": invisible(world.model.pk),
            },
        ),
        "cancel_job": (404, {"detail": "No Job matches the given query."}),
        "request_drift_check": (
            400,
            {
                "model_version": invisible(world.model_version.pk),
                "current_dataset_version": invisible(world.current_dataset_version.pk),
            },
        ),
        "acknowledge_alert": (404, {"detail": "No Alert matches the given query."}),
        "resolve_alert": (404, {"detail": "No Alert matches the given query."}),
    }[action]


@pytest.mark.parametrize("action", WRITES + ALERT_WRITES)
@pytest.mark.parametrize("persona", PERSONAS)
def test_writes_by_persona(request, client_for, world, training_spec, persona, action):
    before = _state(world)
    last_event = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()

    response = _write(client_for(request.getfixturevalue(persona)), world, action, training_spec)

    if persona in ALLOWED:
        status, audit_action = SUCCESS[action]
        assert response.status_code == status
        assert list(AuditEvent.objects.filter(id__gt=last_event).values_list("action", "actor_label")) == [
            (audit_action, request.getfixturevalue(persona).username)
        ]
        return
    if persona == "outsider":
        assert (response.status_code, response.json()) == _outsider_answer(world, action)
    else:
        detail = (
            "only the model's owner or the team's model owners and data scientists may do this"
            if action in ALERT_WRITES
            else "you may not change objects of this team"
        )
        assert (response.status_code, response.json()) == (403, {"detail": detail})
    assert _state(world) == before


def test_allowed_writes_have_their_effect(client_for, world, scientist, owner, training_spec):
    client = client_for(scientist)

    for action in WRITES:
        assert _write(client, world, action, training_spec).status_code == SUCCESS[action][0]
    acknowledged = _write(client_for(owner), world, "acknowledge_alert", training_spec)

    assert Dataset.objects.filter(name="new-data", team=world.team, created_by=scientist).count() == 1
    assert [v.version for v in world.dataset.versions.all()] == [2, 1]
    assert Job.objects.filter(created_by=scientist, team=world.team).count() == 2
    assert Job.objects.get(pk=world.job.pk).state == JobState.CANCELLED
    assert DriftCheck.objects.filter(created_by=scientist).count() == 2
    assert acknowledged.json()["acknowledged_by"] == "olivia"
    assert Alert.objects.get(pk=world.alert.pk).state == AlertState.ACKNOWLEDGED


def test_only_admins_create_teams(client_for, world, owner, compliance_officer, admin):
    teams = Team.objects.count()

    for user in (owner, compliance_officer):
        response = client_for(user).post("/api/teams/", {"name": "Shadow"}, format="json")
        assert (response.status_code, response.json()) == (
            403,
            {"detail": "only a platform admin may do this"},
        )
    assert Team.objects.count() == teams
    assert client_for(admin).post("/api/teams/", {"name": "Shadow"}, format="json").status_code == 201


def test_filtering_by_another_teams_object_looks_like_an_unknown_id(client_for, world, outsider, scientist):
    client = client_for(outsider)
    unknown = {"dataset": ["Select a valid choice. That choice is not one of the available choices."]}

    hidden = client.get("/api/dataset-versions/", {"dataset": world.dataset.pk})
    missing = client.get("/api/dataset-versions/", {"dataset": 999_999})
    own = client.get("/api/dataset-versions/", {"dataset": world.fraud_dataset.pk})

    assert (hidden.status_code, hidden.json()) == (400, unknown)
    assert (missing.status_code, missing.json()) == (400, unknown)
    assert [row["id"] for row in own.json()["results"]] == [world.fraud_version.pk]
    member = client_for(scientist).get("/api/dataset-versions/", {"dataset": world.dataset.pk})
    assert [row["id"] for row in member.json()["results"]] == [world.dataset_version.pk]


# Mass assignment: fields the server owns are ignored, relations outside the user's scope refused.


def test_dataset_body_cannot_set_creator_or_id(client_for, world, scientist, outsider):
    response = client_for(scientist).post(
        "/api/datasets/",
        {
            "id": 4242,
            "team": world.team.pk,
            "name": "owned",
            "created_by": outsider.pk,
            "created_at": "2001-01-01T00:00:00Z",
            "latest_version": 9,
        },
        format="json",
    )

    dataset = Dataset.objects.get(name="owned")
    assert response.status_code == 201
    assert dataset.pk != 4242
    assert dataset.created_by == scientist
    assert dataset.created_at.year > 2001
    assert response.json()["latest_version"] is None


def test_dataset_cannot_be_created_in_a_team_one_only_sees(client_for, world, scientist, viewer):
    """A viewer of Mobility is refused (403); Fraud, which dana cannot see, reads as unknown (400)."""
    count = Dataset.objects.count()

    hidden = client_for(scientist).post(
        "/api/datasets/", {"team": world.other_team.pk, "name": "planted"}, format="json"
    )
    viewing = client_for(viewer).post(
        "/api/datasets/", {"team": world.team.pk, "name": "planted"}, format="json"
    )

    assert (hidden.status_code, hidden.json()) == (
        400,
        {"team": [f'Invalid pk "{world.other_team.pk}" - object does not exist.']},
    )
    assert viewing.status_code == 403
    assert Dataset.objects.count() == count


def test_dataset_version_body_cannot_set_number_hash_or_source(client_for, world, scientist, outsider):
    response = client_for(scientist).post(
        "/api/dataset-versions/",
        {
            "dataset": world.dataset.pk,
            "file": SimpleUploadedFile("tiny.csv", b"hr,cnt\n0,16\n"),
            "version": 7,
            "sha256": "0" * 64,
            "row_count": 1000,
            "source": "job",
            "created_by": outsider.pk,
        },
        format="multipart",
    )

    body = response.json()
    assert response.status_code == 201
    assert (body["version"], body["row_count"], body["source"], body["created_by"]) == (
        2,
        1,
        "upload",
        "dana",
    )
    assert body["sha256"] != "0" * 64


def test_job_body_cannot_set_state_team_creator_or_outputs(
    client_for, world, scientist, outsider, training_spec
):
    """Fields the submission does not read are refused by name (a 400, no job), never applied."""
    body = {
        "kind": "train",
        "dataset_version": world.dataset_version.pk,
        "registered_model": world.model.pk,
        "spec": training_spec,
    }
    forged = {
        "state": "succeeded",
        "team": world.other_team.pk,
        "created_by": outsider.pk,
        "output_model_version": world.model_version.pk,
        "is_cancel_requested": True,
        "progress": 1,
    }
    jobs = Job.objects.count()
    refused = client_for(scientist).post("/api/jobs/", body | forged, format="json")

    assert refused.status_code == 400
    assert sorted(refused.json()) == sorted(forged)
    assert Job.objects.count() == jobs
    response = client_for(scientist).post("/api/jobs/", body, format="json")
    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.state, job.team, job.created_by) == (JobState.QUEUED, world.team, scientist)
    assert (job.output_model_version, job.is_cancel_requested, job.progress) == (None, False, 0.0)


def test_job_cannot_train_into_a_model_of_another_team(client_for, world, outsider):
    """Oscar sees his own data but not Mobility's model: refused as unknown, no job."""
    jobs = Job.objects.count()

    response = client_for(outsider).post(
        "/api/jobs/",
        {
            "kind": "train",
            "dataset_version": world.fraud_version.pk,
            "registered_model": world.model.pk,
            "spec": {"target": "is_fraud", "features": ["amount"]},
        },
        format="json",
    )

    assert (response.status_code, response.json()) == (
        400,
        {"registered_model": [f'Invalid pk "{world.model.pk}" - object does not exist.']},
    )
    assert Job.objects.count() == jobs


def test_drift_check_body_cannot_set_results_or_team(client_for, world, scientist):
    response = client_for(scientist).post(
        "/api/drift-checks/",
        {
            "model_version": world.model_version.pk,
            "current_dataset_version": world.current_dataset_version.pk,
            "team": world.other_team.pk,
            "state": "succeeded",
            "results": [{"column": "cnt", "is_drifted": False}],
            "is_dataset_drift": False,
        },
        format="json",
    )

    check = DriftCheck.objects.get(pk=response.json()["id"])
    assert response.status_code == 201
    assert (check.team, check.state, check.results, check.is_dataset_drift) == (
        world.team,
        "queued",
        [],
        None,
    )


def test_acknowledge_body_cannot_choose_state_or_person(client_for, world, owner, outsider):
    response = client_for(owner).post(
        f"/api/alerts/{world.alert.pk}/acknowledge/",
        {"state": "resolved", "acknowledged_by": outsider.pk, "owner": outsider.pk},
        format="json",
    )

    alert = Alert.objects.get(pk=world.alert.pk)
    assert response.status_code == 200
    assert (alert.state, alert.acknowledged_by, alert.owner) == (AlertState.ACKNOWLEDGED, owner, owner)


# Authentication (tokens in detail: tests/governance/test_tokens.py)


def test_token_authenticated_requests_work(world, scientist):
    _, secret = do_create_api_token(user=scientist, name="ci", is_read_only=False, actor=scientist)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    listed = client.get("/api/datasets/")
    created = client.post("/api/datasets/", {"team": world.team.pk, "name": "by-token"}, format="json")

    assert listed.status_code == 200
    assert {row["name"] for row in listed.json()["results"]} == {"bike-sharing-hourly", "bike-sharing-2012"}
    assert created.status_code == 201
    assert Dataset.objects.get(name="by-token").created_by == scientist


def test_token_endpoint_trades_a_password_for_a_new_named_token(scientist):
    client = APIClient()

    issued = client.post(
        "/api/auth/token/",
        {"username": "dana", "password": PASSWORD, "name": "nightly", "is_read_only": False},
        format="json",
    )
    refused = client.post("/api/auth/token/", {"username": "dana", "password": "guess"}, format="json")

    token = ApiToken.objects.get()
    assert issued.status_code == 201
    assert issued.json() == {
        "token": issued.json()["token"],
        "id": token.pk,
        "name": "nightly",
        "prefix": issued.json()["token"][:12],
        "is_read_only": False,
        "scope": "user",
        "registered_model": None,
        "state": "active",
        "expires_at": issued.json()["expires_at"],
        "last_used_at": None,
        "revoked_at": None,
        "created_at": issued.json()["created_at"],
    }
    # No expiry asked for: STEWARD_API_TOKEN_DAYS (90) days (issue 14).
    assert round((token.expires_at - token.created_at).total_seconds() / 86400) == 90
    assert (token.user, token.key_hash) == (scientist, tokens.hash_secret(issued.json()["token"]))
    assert (refused.status_code, refused.json()) == (
        400,
        {"non_field_errors": ["Unable to log in with provided credentials."]},
    )
    assert ApiToken.objects.count() == 1


def test_requests_without_valid_credentials_are_refused(world):
    """The token class comes first, so DRF answers 401 with ``WWW-Authenticate: Bearer``."""
    anonymous = APIClient()
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION="Bearer stw_" + "f" * 43)
    count = Dataset.objects.count()

    answers = [
        anonymous.get("/api/datasets/"),
        anonymous.post("/api/datasets/", {"team": world.team.pk, "name": "anon"}, format="json"),
        forged.get("/api/datasets/"),
    ]

    assert [(r.status_code, r.json(), r["WWW-Authenticate"]) for r in answers] == [
        (401, {"detail": "Authentication credentials were not provided."}, 'Bearer realm="api"'),
        (401, {"detail": "Authentication credentials were not provided."}, 'Bearer realm="api"'),
        (401, {"detail": "Invalid token."}, 'Bearer realm="api"'),
    ]
    assert Dataset.objects.count() == count

"""docs/permissions.md's matrix, checked cell by cell through the API.

The test parses the markdown table, so the documentation and the behaviour cannot drift: each
row names a check below, each column a persona. A check performs its action as the persona and
answers ``yes``, ``no`` or ``hidden`` (the table's vocabulary). Every persona runs inside a
savepoint that is rolled back, so each starts from the same world; on ``no`` and ``hidden`` the
whole database must be unchanged, no audit event included.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.test import APIClient

from governance.actions.aliases import do_set_alias
from governance.actions.model_versions import do_register_model_version
from governance.actions.promotions import do_request_promotion
from governance.actions.teams import do_set_membership
from governance.actions.tokens import do_create_api_token
from governance.audit.sequencer import sequence_audit_events
from governance.models import (
    ApiToken,
    AuditEvent,
    Dataset,
    DatasetVersion,
    Membership,
    ModelAlias,
    ModelVersion,
    PlatformRole,
    PlatformRoleGrant,
    PromotionRequest,
    RegisteredModel,
    Team,
    TeamRole,
)
from monitoring.models import Alert, DriftCheck
from runners.actions import do_submit_job
from runners.budgets import do_create_budget, do_delete_budget
from runners.code_versions import do_create_code_project, do_register_code_version
from runners.models import Budget, CodeProject, CodeVersion, Job, Prediction, ServingPolicy
from tests.conftest import PASSWORD
from tests.governance.conftest import PERSONAS
from tests.runners.code_helpers import FILES, upload, zip_of

DOC = Path(settings.BASE_DIR) / "docs" / "permissions.md"
COLUMNS = {
    "platform admin": "admin",
    "model owner": "owner",
    "data scientist": "scientist",
    "approver": "approver",
    "viewer": "viewer",
    "compliance officer": "compliance_officer",
    "outsider": "outsider",
}
OUTCOMES = {"yes", "no", "hidden"}


def parse_matrix(markdown: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The table under ``## The matrix``: (its header cells, {row id: {persona: outcome}})."""
    section = markdown.split("## The matrix", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        row_id = re.match(r"`(\w+)`", cells[0]).group(1)
        rows[row_id] = {COLUMNS[name]: outcome for name, outcome in zip(header[2:], cells[2:], strict=True)}
    return header, rows


HEADER, MATRIX = parse_matrix(DOC.read_text())


@dataclass
class Ctx:
    persona: str
    user: object
    client: APIClient
    world: SimpleNamespace


CHECKS: dict[str, Callable[[Ctx], str]] = {}


def check(function: Callable[[Ctx], str]) -> Callable[[Ctx], str]:
    CHECKS[function.__name__] = function
    return function


# The world: the registry of tests/governance/conftest.py plus what the rows act on.


@pytest.fixture
def matrix_world(world, admin, scientist, bike_training_result):
    """``world``, and: sam (a Mobility data scientist who is no persona) with pending requests
    to promote v1 to production and v2 to staging; nina, who belongs to no team, with a token."""
    sam = get_user_model().objects.create_user("sam", "sam@example.com", PASSWORD)
    do_set_membership(user=sam, team=world.team, role=TeamRole.DATA_SCIENTIST, actor=admin)
    version_2 = do_register_model_version(
        model=world.model,
        artifact_bytes=bike_training_result.artifact,
        metrics={},
        signature={},
        training_spec={},
        training_dataset_version=None,
        source_job_id=None,
        actor=scientist,
    )
    nina = get_user_model().objects.create_user("nina", "nina@example.com", PASSWORD)
    world.production_request = do_request_promotion(
        model_version=world.model_version, alias="production", actor=sam
    )
    world.staging_request = do_request_promotion(model_version=version_2, alias="staging", actor=sam)
    world.nina = nina
    # An unprotected alias of v1 for the serving rows (issue 17).
    do_set_alias(model=world.model, alias="live", version=world.model_version, actor=scientist)
    world.nina_token, _ = do_create_api_token(user=nina, name="nina's", actor=nina)
    # A job held by a spent budget (a limit of 0), then the budget removed: other rows submit freely.
    budget = do_create_budget(team=world.team, monthly_limit="0", actor=admin)
    world.held_job = do_submit_job(
        kind="train",
        dataset_version=world.dataset_version,
        registered_model=world.model,
        spec={"target": "cnt", "features": ["temp", "hr"], "epochs": 1},
        actor=scientist,
    )
    assert world.held_job.state == "held"
    do_delete_budget(budget=budget, actor=admin)
    world.code_project = do_create_code_project(team=world.team, name="trainer", actor=scientist)
    world.code_version = do_register_code_version(world.code_project, archive=zip_of(FILES), actor=scientist)
    return world


def _fingerprint() -> dict[str, list[dict]]:
    """Every row of every table a check could touch."""
    models = [
        get_user_model(),
        Team,
        Membership,
        PlatformRoleGrant,
        Dataset,
        DatasetVersion,
        RegisteredModel,
        ModelVersion,
        ModelAlias,
        PromotionRequest,
        ApiToken,
        AuditEvent,
        Job,
        DriftCheck,
        Alert,
        Budget,
        CodeProject,
        CodeVersion,
        ServingPolicy,
        Prediction,
    ]
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in models}


# Classifying answers.


def _events_since(last_id: int) -> list[tuple[str, str]]:
    return list(AuditEvent.objects.filter(id__gt=last_id).order_by("id").values_list("action", "actor_label"))


def _last_event_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _refusal(response) -> str:
    """``no`` or ``hidden`` for a refused write, else a description of the surprise."""
    body = response.json() if response.content else None
    if response.status_code in (403, 405):
        return "no"
    if response.status_code == 404:
        return "hidden"
    if response.status_code == 400 and "does not exist" in str(body):
        return "hidden"
    return f"unexpected {response.status_code} {body}"


def _write(ctx: Ctx, send: Callable[[], object], status: int, event: str) -> str:
    """Send a write; ``yes`` only with ``status`` and exactly the audit event ``event`` by the persona."""
    last = _last_event_id()
    response = send()
    if response.status_code != status:
        return _refusal(response)
    events = _events_since(last)
    assert events == [(event, ctx.user.username)], events
    return "yes"


def _same(outcomes: list[str]) -> str:
    return outcomes[0] if len(set(outcomes)) == 1 else f"inconsistent {outcomes}"


def _visibility(ctx: Ctx, targets: dict[str, list[int]]) -> str:
    """``yes`` if every target is listed and opens, ``hidden`` if none is listed and each is 404."""
    outcomes = []
    for url, ids in targets.items():
        listed = ctx.client.get(url)
        assert listed.status_code == 200, (url, listed.status_code)
        listed_ids = {row["id"] for row in listed.json()["results"]}
        for pk in ids:
            status = ctx.client.get(f"{url}{pk}/").status_code
            if pk in listed_ids and status == 200:
                outcomes.append("yes")
            elif pk not in listed_ids and status == 404:
                outcomes.append("hidden")
            else:
                outcomes.append(f"{url}{pk}: listed={pk in listed_ids} detail={status}")
    return _same(outcomes)


def _detail_visibility(ctx: Ctx, urls: list[str]) -> str:
    statuses = [ctx.client.get(url).status_code for url in urls]
    return _same(["yes" if s == 200 else "hidden" if s == 404 else f"unexpected {s}" for s in statuses])


# Reading.


@check
def view_registry(ctx: Ctx) -> str:
    w = ctx.world
    return _visibility(
        ctx,
        {
            "/api/datasets/": [w.dataset.pk],
            "/api/dataset-versions/": [w.dataset_version.pk],
            "/api/models/": [w.model.pk],
            "/api/model-versions/": [w.model_version.pk],
            "/api/code-projects/": [w.code_project.pk],
            "/api/code-versions/": [w.code_version.pk],
            "/api/promotion-requests/": [w.production_request.pk],
        },
    )


@check
def view_operations(ctx: Ctx) -> str:
    w = ctx.world
    return _visibility(
        ctx, {"/api/jobs/": [w.job.pk], "/api/drift-checks/": [w.check.pk], "/api/alerts/": [w.alert.pk]}
    )


@check
def view_team_audit_events(ctx: Ctx) -> str:
    events = AuditEvent.objects.filter(team=ctx.world.team).values_list("pk", flat=True)[:5]
    return _detail_visibility(ctx, [f"/api/audit-events/{pk}/" for pk in events])


@check
def view_members(ctx: Ctx) -> str:
    w = ctx.world
    vera = get_user_model().objects.get(username="vera")
    return _visibility(
        ctx,
        {"/api/memberships/": [Membership.objects.get(user=vera, team=w.team).pk], "/api/users/": [vera.pk]},
    )


@check
def view_platform_roles(ctx: Ctx) -> str:
    grant = PlatformRoleGrant.objects.get(role=PlatformRole.COMPLIANCE_OFFICER)
    return _visibility(ctx, {"/api/platform-roles/": [grant.pk]})


@check
def view_all_users(ctx: Ctx) -> str:
    return _visibility(ctx, {"/api/users/": [ctx.world.nina.pk]})


@check
def view_platform_audit_events(ctx: Ctx) -> str:
    events = AuditEvent.objects.filter(team=None).values_list("pk", flat=True)[:5]
    return _detail_visibility(ctx, [f"/api/audit-events/{pk}/" for pk in events])


# Registry and operations.


@check
def create_dataset(ctx: Ctx) -> str:
    body = {"team": ctx.world.team.pk, "name": "new-data"}
    return _write(ctx, lambda: ctx.client.post("/api/datasets/", body, format="json"), 201, "dataset.create")


@check
def register_model(ctx: Ctx) -> str:
    body = {"team": ctx.world.team.pk, "name": "new-model", "owner": "olivia"}
    return _write(
        ctx, lambda: ctx.client.post("/api/models/", body, format="json"), 201, "registered_model.create"
    )


@check
def create_code_project(ctx: Ctx) -> str:
    body = {"team": ctx.world.team.pk, "name": "new-code"}
    return _write(
        ctx, lambda: ctx.client.post("/api/code-projects/", body, format="json"), 201, "code_project.create"
    )


@check
def register_code_version(ctx: Ctx) -> str:
    archive = zip_of({**FILES, "train.py": f"print({ctx.persona!r})\n".encode()})
    return _write(
        ctx, lambda: upload(ctx.client, ctx.world.code_project.pk, archive), 201, "code_version.register"
    )


@check
def submit_job(ctx: Ctx) -> str:
    w = ctx.world
    body = {
        "kind": "train",
        "dataset_version": w.dataset_version.pk,
        "registered_model": w.model.pk,
        "spec": {"target": "cnt", "features": ["temp", "hr"], "epochs": 1},
    }
    return _write(ctx, lambda: ctx.client.post("/api/jobs/", body, format="json"), 201, "job.submit")


@check
def predict(ctx: Ctx) -> str:
    """Online prediction (issue 17): telemetry, not a change, so a Prediction row and no audit event."""
    w = ctx.world
    row = {feature: 1 for feature in w.model_version.signature["features"]}
    url = f"/api/models/{w.model.name}/versions/{w.model_version.version}/predict"
    last, logged = _last_event_id(), Prediction.objects.count()
    response = ctx.client.post(url, {"rows": [row]}, format="json")
    if response.status_code != 200:
        return _refusal(response)
    assert _events_since(last) == []
    assert Prediction.objects.count() == logged + 1
    return "yes"


@check
def set_serving_policy(ctx: Ctx) -> str:
    w = ctx.world
    body = {"registered_model": w.model.pk, "alias": "live", "shadow_version": w.model_version.pk}
    return _write(
        ctx, lambda: ctx.client.post("/api/serving-policies/", body, format="json"), 201, "serving_policy.set"
    )


@check
def create_prediction_token(ctx: Ctx) -> str:
    url = f"/api/models/{ctx.world.model.pk}/prediction-tokens/"
    return _write(
        ctx,
        lambda: ctx.client.post(url, {"name": "checkout"}, format="json"),
        201,
        "api_token.create_prediction_token",
    )


@check
def post_labels(ctx: Ctx) -> str:
    url = f"/api/models/{ctx.world.model.pk}/labels/"
    body = {"labels": [{"key": "17", "label": 3}]}
    return _write(ctx, lambda: ctx.client.post(url, body, format="json"), 200, "labels.receive")


@check
def request_drift_check(ctx: Ctx) -> str:
    w = ctx.world
    body = {"model_version": w.model_version.pk, "current_dataset_version": w.current_dataset_version.pk}
    return _write(
        ctx, lambda: ctx.client.post("/api/drift-checks/", body, format="json"), 201, "drift_check.request"
    )


@check
def handle_alert(ctx: Ctx) -> str:
    url = f"/api/alerts/{ctx.world.alert.pk}/acknowledge/"
    return _write(ctx, lambda: ctx.client.post(url), 200, "alert.acknowledge")


@check
def create_job_schedule(ctx: Ctx) -> str:
    w = ctx.world
    body = {
        "name": f"nightly by {ctx.persona}",
        "kind": "train",
        "dataset": w.dataset_version.dataset_id,
        "registered_model": w.model.pk,
        "spec": {"target": "cnt", "features": ["temp", "hr"], "epochs": 1},
        "cron": "0 2 * * *",
    }
    return _write(
        ctx, lambda: ctx.client.post("/api/job-schedules/", body, format="json"), 201, "job_schedule.create"
    )


@check
def set_budget(ctx: Ctx) -> str:
    body = {"team": ctx.world.team.pk, "monthly_limit": "100.00"}
    return _write(ctx, lambda: ctx.client.post("/api/budgets/", body, format="json"), 201, "budget.create")


@check
def release_held_job(ctx: Ctx) -> str:
    url = f"/api/jobs/{ctx.world.held_job.pk}/release/"
    return _write(ctx, lambda: ctx.client.post(url), 200, "job.release")


# Promotions.


def _request_staging(ctx: Ctx):
    body = {"model_version": ctx.world.model_version.pk, "alias": "staging", "reason": "better rmse"}
    return ctx.client.post("/api/promotion-requests/", body, format="json")


@check
def request_promotion(ctx: Ctx) -> str:
    return _write(ctx, lambda: _request_staging(ctx), 201, "promotion_request.create")


@check
def cancel_own_promotion(ctx: Ctx) -> str:
    created = _request_staging(ctx)
    if created.status_code != 201:
        return _refusal(created)
    url = f"/api/promotion-requests/{created.json()['id']}/cancel/"
    return _write(ctx, lambda: ctx.client.post(url), 200, "promotion_request.cancel")


@check
def cancel_others_promotion(ctx: Ctx) -> str:
    url = f"/api/promotion-requests/{ctx.world.production_request.pk}/cancel/"
    return _write(ctx, lambda: ctx.client.post(url), 200, "promotion_request.cancel")


@check
def decide_promotion(ctx: Ctx) -> str:
    w = ctx.world
    last = _last_event_id()
    approved = ctx.client.post(
        f"/api/promotion-requests/{w.production_request.pk}/approve/", {}, format="json"
    )
    rejected = ctx.client.post(
        f"/api/promotion-requests/{w.staging_request.pk}/reject/",
        {"reason": "no drift check yet"},
        format="json",
    )
    if (approved.status_code, rejected.status_code) != (200, 200):
        return _same([_refusal(approved), _refusal(rejected)])
    user = ctx.user.username
    assert _events_since(last) == [
        ("promotion_request.approve", user),
        ("model_alias.move", user),
        ("promotion_request.reject", user),
    ]
    return "yes"


# Team roles.


@check
def grant_team_role(ctx: Ctx) -> str:
    body = {"username": "nina", "team": ctx.world.team.pk, "role": TeamRole.VIEWER}
    return _write(
        ctx, lambda: ctx.client.post("/api/memberships/", body, format="json"), 201, "membership.grant"
    )


@check
def revoke_team_role(ctx: Ctx) -> str:
    membership = Membership.objects.get(user__username="vera", team=ctx.world.team)
    url = f"/api/memberships/{membership.pk}/"
    return _write(ctx, lambda: ctx.client.delete(url), 204, "membership.revoke")


@check
def change_own_roles(ctx: Ctx) -> str:
    own_team = ctx.world.other_team if ctx.persona == "outsider" else ctx.world.team
    body = {"username": ctx.user.username, "team": own_team.pk, "role": TeamRole.MODEL_OWNER}
    as_owner = _write(
        ctx, lambda: ctx.client.post("/api/memberships/", body, format="json"), 201, "membership.grant"
    )
    body = {"username": ctx.user.username, "role": PlatformRole.ADMIN}
    as_admin = _write(
        ctx, lambda: ctx.client.post("/api/platform-roles/", body, format="json"), 201, "platform_role.grant"
    )
    return _same([as_owner, as_admin])


# API tokens.


@check
def manage_own_tokens(ctx: Ctx) -> str:
    created = _write(
        ctx,
        lambda: ctx.client.post("/api/tokens/", {"name": "mine"}, format="json"),
        201,
        "api_token.create",
    )
    if created != "yes":
        return created
    token = ApiToken.objects.get(user=ctx.user, name="mine")
    listed = [row["id"] for row in ctx.client.get("/api/tokens/").json()["results"]]
    assert listed == [token.pk]
    return _write(ctx, lambda: ctx.client.post(f"/api/tokens/{token.pk}/revoke/"), 200, "api_token.revoke")


@check
def use_others_tokens(ctx: Ctx) -> str:
    pk = ctx.world.nina_token.pk
    opened = ctx.client.get(f"/api/tokens/{pk}/")
    listed = pk in {row["id"] for row in ctx.client.get("/api/tokens/").json()["results"]}
    revoked = _write(ctx, lambda: ctx.client.post(f"/api/tokens/{pk}/revoke/"), 200, "api_token.revoke")
    return _same(["hidden" if opened.status_code == 404 and not listed else "visible", revoked])


# Platform.


@check
def create_team(ctx: Ctx) -> str:
    return _write(
        ctx, lambda: ctx.client.post("/api/teams/", {"name": "Risk"}, format="json"), 201, "team.create"
    )


@check
def create_user(ctx: Ctx) -> str:
    body = {"username": "newbie", "email": "newbie@example.com"}
    return _write(ctx, lambda: ctx.client.post("/api/users/", body, format="json"), 201, "user.create")


@check
def deactivate_user(ctx: Ctx) -> str:
    vera = get_user_model().objects.get(username="vera")
    return _write(ctx, lambda: ctx.client.post(f"/api/users/{vera.pk}/deactivate/"), 200, "user.deactivate")


@check
def grant_platform_role(ctx: Ctx) -> str:
    body = {"username": "vera", "role": PlatformRole.COMPLIANCE_OFFICER}
    return _write(
        ctx, lambda: ctx.client.post("/api/platform-roles/", body, format="json"), 201, "platform_role.grant"
    )


@check
def revoke_platform_role(ctx: Ctx) -> str:
    grant = PlatformRoleGrant.objects.get(role=PlatformRole.COMPLIANCE_OFFICER)
    url = f"/api/platform-roles/{grant.pk}/"
    return _write(ctx, lambda: ctx.client.delete(url), 204, "platform_role.revoke")


@check
def export_audit_csv(ctx: Ctx) -> str:
    response = ctx.client.get("/api/audit-events/export.csv")
    assert response.status_code == 200, response.status_code
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    exported = {int(row[0]) for row in rows[1:]}
    team_events = set(AuditEvent.objects.filter(team=ctx.world.team).values_list("pk", flat=True))
    if team_events <= exported:
        return "yes"
    return "hidden" if not team_events & exported else f"partly {len(team_events & exported)}"


@check
def export_audit_bundle(ctx: Ctx) -> str:
    sequence_audit_events()
    response = ctx.client.get("/api/audit-events/export.json")
    if response.status_code != 200:
        return _refusal(response)
    bundle = json.loads(b"".join(response.streaming_content))
    team_events = set(AuditEvent.objects.filter(team=ctx.world.team).values_list("pk", flat=True))
    assert team_events <= {event["event_id"] for event in bundle["events"]}
    return "yes"


@check
def write_audit_events(ctx: Ctx) -> str:
    event = AuditEvent.objects.filter(team=ctx.world.team).first()
    url = f"/api/audit-events/{event.pk}/"
    body = {"action": "dataset.delete", "object_repr": "nothing happened"}
    answers = [
        ctx.client.post("/api/audit-events/", body, format="json"),
        ctx.client.put(url, body, format="json"),
        ctx.client.patch(url, body, format="json"),
        ctx.client.delete(url),
    ]
    return _same([_refusal(answer) for answer in answers])


# The tests.


def test_the_matrix_has_one_column_per_persona_and_a_known_outcome_in_every_cell():
    assert ["action", "scope", *COLUMNS] == HEADER
    assert sorted(COLUMNS.values()) == sorted(PERSONAS)
    assert {outcome for row in MATRIX.values() for outcome in row.values()} <= OUTCOMES


def test_every_row_has_a_check_and_every_check_a_row():
    assert sorted(MATRIX) == sorted(CHECKS)


@pytest.mark.parametrize("row", sorted(MATRIX))
def test_matrix_row(request, matrix_world, row):
    """Every persona's cell of ``row``; denials leave every table as it was."""
    actual = {}
    for persona in PERSONAS:
        user = get_user_model().objects.get(pk=request.getfixturevalue(persona).pk)
        client = APIClient()
        client.force_authenticate(user)
        with transaction.atomic():
            before = _fingerprint()
            outcome = CHECKS[row](Ctx(persona, user, client, matrix_world))
            if outcome in ("no", "hidden"):
                assert _fingerprint() == before, (row, persona)
            transaction.set_rollback(True)
        actual[persona] = outcome
    assert actual == MATRIX[row]

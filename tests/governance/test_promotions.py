"""Four-eyes promotion: request, approval by another approver, rejection, cancel, the alias move."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse

from governance.actions.model_versions import do_register_model_version
from governance.actions.promotions import (
    do_approve_promotion,
    do_cancel_promotion,
    do_reject_promotion,
    do_request_promotion,
)
from governance.actions.teams import do_grant_platform_role, do_set_membership
from governance.charts import format_number
from governance.models import AuditEvent, ModelAlias, PlatformRole, PromotionRequest, TeamRole
from monitoring.models import Alert
from tests.conftest import PASSWORD

FOUR_EYES = "four eyes: the requester may not decide their own promotion request"
NOT_APPROVER = "only an approver of team Mobility may decide promotions"


@pytest.fixture
def version_2(registered_version, scientist, bike_training_result):
    return do_register_model_version(
        model=registered_version.model,
        artifact_bytes=bike_training_result.artifact,
        metrics={"rmse": 1.0},
        signature={},
        training_spec={},
        training_dataset_version=None,
        source_job_id=None,
        actor=scientist,
    )


def _events(last_id: int) -> list[tuple]:
    return list(
        AuditEvent.objects.filter(id__gt=last_id)
        .order_by("id")
        .values_list("action", "actor_label", "team__name", "before", "after")
    )


def _last_id() -> int:
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _state() -> dict:
    return {
        "requests": list(
            PromotionRequest.objects.order_by("pk").values_list("state", "decided_by", "decision_reason")
        ),
        "aliases": list(
            ModelAlias.objects.order_by("pk").values_list("model_id", "name", "model_version_id")
        ),
        "events": AuditEvent.objects.count(),
    }


def test_request_then_approval_by_another_approver_moves_the_alias(
    client_for, scientist, approver, registered_version
):
    model = registered_version.model
    last = _last_id()

    requested = client_for(scientist).post(
        "/api/promotion-requests/",
        {"model_version": registered_version.pk, "reason": "rmse 0.9 on 2011 hold-out"},
        format="json",
    )
    promotion = PromotionRequest.objects.get()
    approved = client_for(approver).post(
        f"/api/promotion-requests/{promotion.pk}/approve/",
        {"reason": "checked the drift report"},
        format="json",
    )

    assert requested.status_code == 201
    assert requested.json() == {
        "id": promotion.pk,
        "model_version": registered_version.pk,
        "model": model.pk,
        "model_name": "bike-demand",
        "version": 1,
        "alias": "production",
        "state": "pending",
        "reason": "rmse 0.9 on 2011 hold-out",
        "acknowledged_alerts": [],
        "requested_by": "dana",
        "created_at": requested.json()["created_at"],
        "decided_by": None,
        "decided_at": None,
        "decision_reason": "",
    }
    assert approved.status_code == 200
    assert (approved.json()["state"], approved.json()["decided_by"], approved.json()["decision_reason"]) == (
        "approved",
        "aaron",
        "checked the drift report",
    )
    alias = ModelAlias.objects.get()
    assert (alias.model, alias.name, alias.model_version) == (model, "production", registered_version)
    request_snapshot = {
        "model_version_id": registered_version.pk,
        "alias": "production",
        "state": "pending",
        "reason": "rmse 0.9 on 2011 hold-out",
        "requested_by_id": scientist.pk,
        "decided_by_id": None,
        "decision_reason": "",
        "acknowledged_alerts": [],
    }
    approved_snapshot = {
        **request_snapshot,
        "state": "approved",
        "decided_by_id": approver.pk,
        "decision_reason": "checked the drift report",
    }
    assert _events(last) == [
        ("promotion_request.create", "dana", "Mobility", None, request_snapshot),
        ("promotion_request.approve", "aaron", "Mobility", request_snapshot, approved_snapshot),
        (
            "model_alias.move",
            "aaron",
            "Mobility",
            None,
            {"model_id": model.pk, "name": "production", "model_version_id": registered_version.pk},
        ),
    ]
    assert client_for(scientist).get(f"/api/models/{model.pk}/").json()["aliases"] == {"production": 1}
    assert client_for(scientist).get(f"/api/model-versions/{registered_version.pk}/").json()["aliases"] == [
        "production"
    ]


def test_promoting_a_newer_version_moves_the_one_alias(
    client_for, scientist, owner, approver, registered_version, version_2
):
    first = do_request_promotion(model_version=registered_version, actor=scientist)
    do_approve_promotion(promotion_request=first, actor=approver)
    second = do_request_promotion(model_version=version_2, actor=owner)
    last = _last_id()

    do_approve_promotion(promotion_request=second, actor=approver)

    alias = ModelAlias.objects.get()
    assert alias.model_version == version_2
    move = _events(last)[1]
    assert move[:3] == ("model_alias.move", "aaron", "Mobility")
    assert (move[3]["model_version_id"], move[4]["model_version_id"]) == (registered_version.pk, version_2.pk)
    client = client_for(scientist)
    assert client.get(f"/api/model-versions/{registered_version.pk}/").json()["aliases"] == []
    assert client.get(f"/api/model-versions/{version_2.pk}/").json()["aliases"] == ["production"]
    assert client.get(f"/api/models/{alias.model_id}/").json()["aliases"] == {"production": 2}


def test_production_and_staging_are_separate_aliases(scientist, approver, registered_version, version_2):
    for version, alias in ((registered_version, "production"), (version_2, "staging")):
        request = do_request_promotion(model_version=version, alias=alias, actor=scientist)
        do_approve_promotion(promotion_request=request, actor=approver)

    assert sorted(ModelAlias.objects.values_list("name", "model_version__version")) == [
        ("production", 1),
        ("staging", 2),
    ]


def test_approving_your_own_promotion_is_refused_even_for_an_admin_approver(
    client_for, admin, registered_version
):
    """An admin who is also the team's approver requested: the four-eyes rule still holds."""
    root = get_user_model().objects.create_user("root", "root@example.com", PASSWORD)
    do_grant_platform_role(user=root, role=PlatformRole.ADMIN, actor=admin)
    do_set_membership(user=admin, team=registered_version.model.team, role=TeamRole.APPROVER, actor=root)
    promotion = do_request_promotion(model_version=registered_version, actor=admin)
    before = _state()

    response = client_for(admin).post(f"/api/promotion-requests/{promotion.pk}/approve/", {}, format="json")
    rejected = client_for(admin).post(
        f"/api/promotion-requests/{promotion.pk}/reject/", {"reason": "changed my mind"}, format="json"
    )

    assert (response.status_code, response.json()) == (403, {"detail": FOUR_EYES})
    assert (rejected.status_code, rejected.json()) == (403, {"detail": FOUR_EYES})
    assert _state() == before


def test_a_requester_made_approver_later_still_cannot_approve_their_request(
    client_for, owner, scientist, registered_version
):
    promotion = do_request_promotion(model_version=registered_version, actor=scientist)
    do_set_membership(user=scientist, team=registered_version.model.team, role=TeamRole.APPROVER, actor=owner)
    before = _state()

    response = client_for(scientist).post(
        f"/api/promotion-requests/{promotion.pk}/approve/", {}, format="json"
    )

    assert (response.status_code, response.json()) == (403, {"detail": FOUR_EYES})
    assert _state() == before


@pytest.mark.parametrize("persona", ["admin", "owner", "viewer", "compliance_officer"])
def test_only_approvers_decide(request, client_for, scientist, registered_version, persona):
    promotion = do_request_promotion(model_version=registered_version, actor=scientist)
    client = client_for(request.getfixturevalue(persona))
    before = _state()

    approved = client.post(f"/api/promotion-requests/{promotion.pk}/approve/", {}, format="json")
    rejected = client.post(f"/api/promotion-requests/{promotion.pk}/reject/", {"reason": "no"}, format="json")

    assert [(a.status_code, a.json()) for a in (approved, rejected)] == [(403, {"detail": NOT_APPROVER})] * 2
    assert _state() == before


def test_rejection_needs_a_reason_and_keeps_it(client_for, scientist, approver, registered_version):
    promotion = do_request_promotion(model_version=registered_version, actor=scientist)
    client = client_for(approver)
    before = _state()

    missing = client.post(f"/api/promotion-requests/{promotion.pk}/reject/", {}, format="json")
    blank = client.post(f"/api/promotion-requests/{promotion.pk}/reject/", {"reason": "   "}, format="json")

    assert (missing.status_code, missing.json()) == (400, {"reason": ["This field is required."]})
    assert (blank.status_code, blank.json()) == (400, {"reason": ["This field may not be blank."]})
    assert _state() == before
    with pytest.raises(ValidationError, match="a rejection needs a reason"):
        do_reject_promotion(promotion_request=promotion, decision_reason=" ", actor=approver)

    rejected = client.post(
        f"/api/promotion-requests/{promotion.pk}/reject/",
        {"reason": "no drift check on 2012 data"},
        format="json",
    )

    assert (rejected.status_code, rejected.json()["state"], rejected.json()["decision_reason"]) == (
        200,
        "rejected",
        "no drift check on 2012 data",
    )
    assert not ModelAlias.objects.exists()
    event = AuditEvent.objects.get(action="promotion_request.reject")
    assert (event.actor, event.after["decision_reason"]) == (approver, "no drift check on 2012 data")


def test_only_the_requester_cancels(client_for, scientist, owner, approver, registered_version):
    promotion = do_request_promotion(model_version=registered_version, actor=scientist)
    before = _state()

    others = [
        client_for(user).post(f"/api/promotion-requests/{promotion.pk}/cancel/") for user in (owner, approver)
    ]

    assert [(a.status_code, a.json()) for a in others] == [
        (403, {"detail": "only the requester may cancel a promotion request"})
    ] * 2
    assert _state() == before
    cancelled = client_for(scientist).post(f"/api/promotion-requests/{promotion.pk}/cancel/")
    assert (cancelled.status_code, cancelled.json()["state"]) == (200, "cancelled")
    assert AuditEvent.objects.filter(action="promotion_request.cancel", actor=scientist).count() == 1


def test_a_decided_request_cannot_be_decided_again(client_for, scientist, approver, registered_version):
    promotion = do_request_promotion(model_version=registered_version, actor=scientist)
    do_cancel_promotion(promotion_request=promotion, actor=scientist)
    before = _state()

    approved = client_for(approver).post(
        f"/api/promotion-requests/{promotion.pk}/approve/", {}, format="json"
    )
    cancelled = client_for(scientist).post(f"/api/promotion-requests/{promotion.pk}/cancel/")

    expected = (400, {"state": [f"promotion request #{promotion.pk} is cancelled, not pending"]})
    assert (approved.status_code, approved.json()) == expected
    assert (cancelled.status_code, cancelled.json()) == expected
    assert _state() == before


def test_requests_are_validated(client_for, scientist, approver, registered_version):
    client = client_for(scientist)
    first = client.post("/api/promotion-requests/", {"model_version": registered_version.pk}, format="json")
    before = _state()

    invalid = client.post(
        "/api/promotion-requests/", {"model_version": registered_version.pk, "alias": "v2"}, format="json"
    )
    duplicate = client.post(
        "/api/promotion-requests/", {"model_version": registered_version.pk}, format="json"
    )

    assert first.status_code == 201
    # Any alias name under MLflow's rule (issue 9); "v<number>" names a version, so it is not one.
    assert (invalid.status_code, invalid.json()) == (
        400,
        {"alias": ["alias 'v2' is reserved: 'latest' and 'v<number>' name versions"]},
    )
    assert (duplicate.status_code, duplicate.json()) == (
        400,
        {"alias": [f"promotion request #{first.json()['id']} for bike-demand v1 to production is pending"]},
    )
    assert _state() == before
    do_approve_promotion(promotion_request=PromotionRequest.objects.get(), actor=approver)
    holds = client.post("/api/promotion-requests/", {"model_version": registered_version.pk}, format="json")
    assert (holds.status_code, holds.json()) == (400, {"alias": ["bike-demand v1 already holds production"]})


def test_the_body_cannot_set_state_people_or_decision(
    client_for, scientist, approver, outsider, registered_version
):
    response = client_for(scientist).post(
        "/api/promotion-requests/",
        {
            "model_version": registered_version.pk,
            "state": "approved",
            "requested_by": "aaron",
            "decided_by": "aaron",
            "decision_reason": "rubber stamp",
            "decided_at": "2001-01-01T00:00:00Z",
            "created_by": outsider.pk,
        },
        format="json",
    )

    promotion = PromotionRequest.objects.get()
    assert response.status_code == 201
    assert (promotion.state, promotion.requested_by, promotion.decided_by) == ("pending", scientist, None)
    assert (promotion.decision_reason, promotion.decided_at) == ("", None)
    assert not ModelAlias.objects.exists()


def test_requests_list_filters_by_state(client_for, scientist, approver, registered_version, version_2):
    done = do_request_promotion(model_version=registered_version, actor=scientist)
    do_approve_promotion(promotion_request=done, actor=approver)
    open_ = do_request_promotion(model_version=version_2, actor=scientist)

    response = client_for(approver).get("/api/promotion-requests/", {"state": "pending"})

    assert [row["id"] for row in response.json()["results"]] == [open_.pk]


@pytest.mark.django_db(transaction=True)
def test_concurrent_approvals_of_one_alias_apply_one_after_the_other(
    admin, team, registered_version, version_2, scientist
):
    """The model row lock serialises the moves: one alias row, and each move's before is the
    previous move's after (without the lock both would create it and one would fail)."""
    approvers = []
    for name in ("aaron", "abe"):
        user = get_user_model().objects.create_user(name, f"{name}@example.com", PASSWORD)
        do_set_membership(user=user, team=team, role=TeamRole.APPROVER, actor=admin)
        approvers.append(user)
    requests = [
        do_request_promotion(model_version=version, actor=scientist)
        for version in (registered_version, version_2)
    ]
    barrier = threading.Barrier(2)
    outcomes = []

    def approve(promotion, approver) -> None:
        try:
            barrier.wait(timeout=10)
            do_approve_promotion(promotion_request=promotion, actor=approver)
            outcomes.append("approved")
        except Exception as exc:  # reported in the assertion below
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=pair) for pair in zip(requests, approvers, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert outcomes == ["approved", "approved"]
    alias = ModelAlias.objects.get(name="production")
    moves = list(
        AuditEvent.objects.filter(action="model_alias.move").order_by("id").values_list("before", "after")
    )
    assert len(moves) == 2
    assert moves[0][0] is None
    assert moves[1][0] == moves[0][1]
    assert moves[1][1]["model_version_id"] == alias.model_version_id


# The web UI.


def test_request_from_the_version_page_then_approve_on_the_promotions_page(
    client, scientist, approver, registered_version
):
    client.force_login(scientist)
    page = client.get(registered_version.get_absolute_url()).content.decode()
    assert f'action="/model-versions/{registered_version.pk}/promote/"' in page
    assert "No alias of bike-demand points at a version yet." in page

    requested = client.post(
        reverse("promotion_request_create", args=[registered_version.pk]),
        {"alias": "production", "reason": "good"},
    )
    promotion = PromotionRequest.objects.get()
    assert (requested.status_code, requested["Location"]) == (302, f"/promotions/{promotion.pk}/")
    own = client.get(requested["Location"]).content.decode()
    assert "Cancel this request" in own
    assert "Approve</button>" not in own

    client.force_login(approver)
    listing = client.get(reverse("promotion_list"))
    assert [p.pk for p in listing.context["awaiting"]] == [promotion.pk]
    detail = client.get(reverse("promotion_detail", args=[promotion.pk])).content.decode()
    assert "Approve</button>" in detail
    approved = client.post(reverse("promotion_approve", args=[promotion.pk]), {"reason": "ok"})
    assert (approved.status_code, approved["Location"]) == (302, f"/promotions/{promotion.pk}/")
    assert ModelAlias.objects.get().model_version == registered_version
    page = client.get(registered_version.get_absolute_url()).content.decode()
    assert "<code>production</code> → <strong>this version</strong>" in page
    assert list(client.get(reverse("promotion_list")).context["awaiting"]) == []


def test_rejecting_in_the_ui_without_a_reason_shows_why(client, scientist, approver, registered_version):
    promotion = do_request_promotion(model_version=registered_version, actor=scientist)
    client.force_login(approver)

    response = client.post(reverse("promotion_reject", args=[promotion.pk]), {"reason": ""})

    assert response.status_code == 400
    assert "a rejection needs a reason" in response.content.decode()
    promotion.refresh_from_db()
    assert promotion.state == "pending"


def test_approving_ones_own_request_in_the_ui_is_403(client, admin, registered_version):
    root = get_user_model().objects.create_user("root", "root@example.com", PASSWORD)
    do_grant_platform_role(user=root, role=PlatformRole.ADMIN, actor=admin)
    do_set_membership(user=admin, team=registered_version.model.team, role=TeamRole.APPROVER, actor=root)
    promotion = do_request_promotion(model_version=registered_version, actor=admin)
    client.force_login(admin)

    page = client.get(reverse("promotion_detail", args=[promotion.pk])).content.decode()
    response = client.post(reverse("promotion_approve", args=[promotion.pk]), {"reason": ""})

    assert "Approve</button>" not in page
    assert response.status_code == 403
    assert "four eyes" in response.content.decode()
    assert not ModelAlias.objects.exists()


def test_a_viewer_gets_no_request_form(client, viewer, registered_version):
    client.force_login(viewer)
    page = client.get(registered_version.get_absolute_url()).content.decode()
    response = client.post(
        reverse("promotion_request_create", args=[registered_version.pk]), {"alias": "production"}
    )

    assert "Request promotion" not in page
    assert response.status_code == 403
    assert not PromotionRequest.objects.exists()


def test_the_approver_sees_the_candidate_beside_production_with_its_open_alerts(
    client, scientist, owner, approver, registered_version, version_2, drifted_check
):
    held = do_request_promotion(model_version=version_2, actor=scientist)
    do_approve_promotion(promotion_request=held, actor=approver)
    candidate = do_request_promotion(model_version=registered_version, actor=owner)
    alert = Alert.objects.get(drift_check=drifted_check)  # opened on the candidate by the check
    client.force_login(approver)

    page = client.get(reverse("promotion_detail", args=[candidate.pk])).content.decode()

    assert "The candidate and production now" in page
    assert f"production now: {version_2}" in page
    metric = next(iter(registered_version.metrics))
    assert f"<code>{metric}</code>" in page
    # Metrics read to four significant digits, as the charts write them, not a float's 16.
    rmse = registered_version.metrics["rmse"]
    assert f"<td>{format_number(rmse)}</td><td>1</td>" in page
    assert str(rmse) not in page
    assert "<th>unresolved alerts</th><td>1</td><td>0</td>" in page
    # The newest drift check of each, with its verdicts, and the signatures side by side.
    assert f'<a href="{drifted_check.get_absolute_url()}">#{drifted_check.pk}</a>' in page
    assert "Data drift: 2 of 12 columns" in page
    assert "<th>drift, newest check</th>" in page
    assert "no check yet" in page  # production's version has none
    assert registered_version.signature
    for key in registered_version.signature:
        assert f"signature: <code>{key}</code>" in page
    assert alert.title in page
    assert f"?a={registered_version.pk}&amp;b={version_2.pk}" in page


def test_a_first_promotion_has_nothing_to_compare_with(client, scientist, approver, registered_version):
    first = do_request_promotion(model_version=registered_version, actor=scientist)
    client.force_login(approver)
    page = client.get(reverse("promotion_detail", args=[first.pk])).content.decode()
    assert "No version holds production yet" in page
    # Still, the approver reads the candidate's own figures: one column, no "differs".
    metric, value = next(iter(registered_version.metrics.items()))
    assert f"<th><code>{metric}</code></th><td>{format_number(value)}</td></tr>" in page
    assert '<th>drift, newest check</th><td><span class="muted">no check yet</span></td></tr>' in page
    assert "differs" not in page
    # Once approved, the version holds the alias: the page says so, not that nobody does.
    do_approve_promotion(promotion_request=first, actor=approver)
    page = client.get(reverse("promotion_detail", args=[first.pk])).content.decode()
    assert f"{registered_version} holds production now: nothing to compare with." in page
    assert "No version holds production yet" not in page


def test_an_approvers_dashboard_lists_the_requests_waiting_for_them(
    client, scientist, approver, registered_version
):
    waiting = do_request_promotion(model_version=registered_version, actor=scientist)
    client.force_login(approver)
    page = client.get("/").content.decode()
    assert "Promotion requests waiting for your decision" in page
    assert f'href="{reverse("promotion_detail", args=[waiting.pk])}"' in page
    client.force_login(scientist)  # the requester decides nothing of their own
    assert "Promotion requests waiting for your decision" not in client.get("/").content.decode()
    do_approve_promotion(promotion_request=waiting, actor=approver)
    client.force_login(approver)
    assert "Promotion requests waiting for your decision" not in client.get("/").content.decode()

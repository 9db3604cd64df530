"""Evaluation, promotion and gate-policy pages and the read API (issue 15), with the engine's real
figures; another team gets 404."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from governance.actions.gates import do_set_gate_policy
from governance.actions.promotions import do_approve_promotion, do_request_promotion
from governance.charts import format_number
from governance.models import AuditEvent, ModelAlias, PromotionGatePolicy, PromotionRequest
from tests.conftest import PASSWORD
from tests.governance.test_promotion_gates import CONDITIONS


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def full_evaluation(adult_versions, team, owner, scientist, approver, record_adult_evaluation):
    request = do_request_promotion(model_version=adult_versions["mitigated"], actor=scientist)
    do_approve_promotion(promotion_request=request, actor=approver)
    do_set_gate_policy(team=team, alias="production", conditions=CONDITIONS, actor=owner)
    return record_adult_evaluation("full")


def test_the_evaluation_page_shows_the_engines_figures(
    full_evaluation, scientist, compliance_officer, outsider
):
    results = full_evaluation.results
    url = reverse("evaluation_detail", args=[full_evaluation.pk])

    page = _client(scientist).get(url)
    html = page.content.decode()
    assert page.status_code == 200
    f1 = results["metrics"]["f1"]
    assert (
        f'<th><code>f1</code></th><td class="number">{format_number(f1["value"])}</td>'
        f'<td class="number">{format_number(f1["ci_low"])}</td>'
        f'<td class="number">{format_number(f1["ci_high"])}</td>'
    ) in html
    for chart_id in ("roc", "pr", "calibration", "fairness-0", "robustness", "importance"):
        assert f'id="{chart_id}"' in html
    # The fairness chart's table: a row per sex group with its selection rate and the 0.8 line.
    groups = results["fairness"]["sex"]["groups"]
    highest = max(group["selection_rate"] for group in groups)
    for group in groups:
        assert (
            f'<th scope="row">{group["group"]}</th>'
            f'<td class="number">{format_number(group["selection_rate"])}</td>'
            f'<td class="number">{format_number(0.8 * highest)}</td><td class="number">{group["rows"]}</td>'
        ) in html
    # Slices worst first, as the engine ordered them.
    worst = results["slices"]["items"][0]
    assert html.index(f"<td>{worst['value']}</td>") < html.index(
        f"<td>{results['slices']['items'][1]['value']}</td>"
    )
    accuracy = full_evaluation.comparison["accuracy"]
    assert f'<td class="number">{format_number(accuracy["champion"])}</td>' in html
    assert "income v1" in html  # the champion, side by side

    assert _client(compliance_officer).get(url).status_code == 200
    assert _client(outsider).get(url).status_code == 404


def test_the_model_version_page_lists_its_evaluations(full_evaluation, adult_versions, viewer, outsider):
    url = reverse("model_version_detail", args=[adult_versions["full"].pk])
    html = _client(viewer).get(url).content.decode()
    assert f'<a href="/evaluations/{full_evaluation.pk}/">#{full_evaluation.pk}</a>' in html
    assert _client(outsider).get(url).status_code == 404


def test_the_promotion_page_shows_gates_and_the_web_override_needs_two_approvers(
    full_evaluation, adult_versions, scientist, approver, admin, team
):
    from django.contrib.auth import get_user_model

    from governance.actions.teams import do_set_membership
    from governance.models import TeamRole

    second = get_user_model().objects.create_user("bea", "bea@example.com", PASSWORD)
    do_set_membership(user=second, team=team, role=TeamRole.APPROVER, actor=admin)
    promotion = do_request_promotion(model_version=adult_versions["full"], actor=scientist)
    detail = reverse("promotion_detail", args=[promotion.pk])
    approve = reverse("promotion_approve", args=[promotion.pk])

    html = _client(approver).get(detail).content.decode()
    assert "demographic-parity ratio below 0.8 on sex (sex 0.2934)" in html
    assert 'name="override_reason"' in html
    assert "candidate income v2" in html
    assert "champion income v1" in html

    first = _client(approver)
    blocked = first.post(approve, {"reason": ""})
    assert blocked.status_code == 400
    assert "gate fairness_ratio_at_least fails" in blocked.content.decode()
    assert first.post(approve, {"override_reason": "board decision 42"}).status_code == 302
    assert PromotionRequest.objects.get(pk=promotion.pk).override_by == approver
    assert first.post(approve, {}).status_code == 403
    assert _client(second).post(approve, {}).status_code == 302
    assert ModelAlias.objects.get(name="production").model_version == adult_versions["full"]
    assert list(
        AuditEvent.objects.filter(action__in=["promotion_request.override", "promotion_request.approve"])
        .filter(object_id=str(promotion.pk))
        .values_list("action", "actor_label")
    ) == [("promotion_request.approve", "bea"), ("promotion_request.override", "aaron")]


def test_the_api_lists_evaluations_by_version_and_sets_gates(
    full_evaluation, adult_versions, client_for, scientist, owner, outsider, team
):
    answer = client_for(scientist).get("/api/evaluations/", {"model_version": adult_versions["full"].pk})
    assert answer.status_code == 200
    (row,) = answer.json()["results"]
    assert (row["id"], row["source"], row["champion_version"], row["model_name"], row["version"]) == (
        full_evaluation.pk,
        "steward",
        adult_versions["mitigated"].pk,
        "income",
        2,
    )
    assert row["results"]["fairness"]["sex"]["demographic_parity_ratio"] == pytest.approx(0.2934, abs=1e-4)
    assert client_for(outsider).get(f"/api/evaluations/{full_evaluation.pk}/").status_code == 404
    assert client_for(outsider).get("/api/evaluations/").json()["results"] == []

    body = {"team": team.pk, "alias": "production", "conditions": [{"kind": "no_open_critical_alert"}]}
    denied = client_for(scientist).put("/api/gate-policies/set/", body, format="json")
    assert (denied.status_code, denied.json()) == (403, {"detail": "you may not manage objects of this team"})
    refused = client_for(owner).put(
        "/api/gate-policies/set/", {**body, "conditions": [{"kind": "vibes"}]}, format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["conditions"][0].startswith("condition 1: unknown kind 'vibes'")
    done = client_for(owner).put("/api/gate-policies/set/", body, format="json")
    assert (done.status_code, done.json()["conditions"], done.json()["updated_by"]) == (
        200,
        [{"kind": "no_open_critical_alert"}],
        "olivia",
    )
    assert PromotionGatePolicy.objects.get().conditions == [{"kind": "no_open_critical_alert"}]
    assert client_for(outsider).get("/api/gate-policies/").json()["results"] == []


def test_gate_policy_pages(full_evaluation, owner, viewer, outsider):
    policy = PromotionGatePolicy.objects.get()
    html = _client(viewer).get(reverse("gate_policy_detail", args=[policy.pk])).content.decode()
    assert "<td><code>fairness_ratio_at_least</code></td><td>value = 0.8</td>" in html
    assert 'name="conditions"' not in html
    assert 'name="conditions"' in _client(owner).get(reverse("gate_policy_list")).content.decode()
    assert _client(outsider).get(reverse("gate_policy_detail", args=[policy.pk])).status_code == 404


def test_an_owner_sets_the_gates_on_the_policys_page(full_evaluation, owner, team):
    policy = PromotionGatePolicy.objects.get()
    saved = _client(owner).post(
        reverse("gate_policy_detail", args=[policy.pk]),
        {
            "team": team.pk,
            "alias": policy.alias,
            "conditions": json.dumps([{"kind": "no_open_critical_alert"}]),
            "evaluation": "",
        },
    )
    assert saved.status_code == 302, saved.content.decode()[-2000:]
    policy.refresh_from_db()
    assert (policy.conditions, policy.updated_by) == ([{"kind": "no_open_critical_alert"}], owner)

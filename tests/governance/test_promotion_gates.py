"""Promotion gates (issue 15) on real evaluations of adult-income models: a failing gate blocks
approval, naming the gate; the override needs two approvers and is audited; a version that passes
is approved by one; the alias doors say which gate fails."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client

from governance.actions.gates import EVALUATION_METRICS, do_set_gate_policy, gate_results, policy_evaluation
from governance.actions.promotions import do_approve_promotion, do_request_promotion
from governance.actions.teams import do_set_membership
from governance.actions.tokens import do_create_api_token
from governance.models import AuditEvent, ModelAlias, PromotionGatePolicy, PromotionRequest, TeamRole
from runners.evaluation_records import record_evaluation
from tests.conftest import PASSWORD

CONDITIONS = [
    {"kind": "metric_bound", "metric": "f1", "min": 0.5},
    {"kind": "not_worse_than_champion", "metrics": ["accuracy", "precision"]},
    {"kind": "fairness_ratio_at_least", "value": 0.8},
    {"kind": "robustness_drop_at_most", "value": 0.05},
    {"kind": "no_open_critical_alert"},
    {"kind": "evaluation_max_age_days", "days": 30},
]


@pytest.fixture
def second_approver(admin, team):
    user = get_user_model().objects.create_user("bea", "bea@example.com", PASSWORD)
    do_set_membership(user=user, team=team, role=TeamRole.APPROVER, actor=admin)
    return user


@pytest.fixture
def gated(adult_versions, team, owner, scientist, approver):
    """The champion (``mitigated``) holds production, promoted before the team had gates; then
    the owner sets the production gates."""
    request = do_request_promotion(model_version=adult_versions["mitigated"], actor=scientist)
    do_approve_promotion(promotion_request=request, actor=approver)
    return do_set_gate_policy(team=team, alias="production", conditions=CONDITIONS, actor=owner)


def _alias_holder(versions) -> str:
    held = ModelAlias.objects.get(name="production").model_version_id
    return next(name for name, version in versions.items() if version.pk == held)


def test_the_engines_metric_names_are_the_gates(adult_evaluations):
    from runners.evaluation.spec import CLASSIFICATION_METRICS, REGRESSION_METRICS

    assert set(EVALUATION_METRICS) == set(REGRESSION_METRICS + CLASSIFICATION_METRICS)


def test_a_version_that_passes_every_gate_is_approved_by_one_approver(
    gated, adult_versions, record_adult_evaluation, scientist, approver
):
    evaluation = record_adult_evaluation("mitigated_again")
    request = do_request_promotion(model_version=adult_versions["mitigated_again"], actor=scientist)

    assert request.evaluation == evaluation
    assert [(gate["kind"], gate["passed"]) for gate in request.gate_results] == [
        (condition["kind"], True) for condition in CONDITIONS
    ]
    fairness = request.gate_results[2]["detail"]
    assert fairness == "demographic-parity ratio at least 0.8 on each attribute (sex 0.9041)"
    do_approve_promotion(promotion_request=request, decision_reason="fair and as good", actor=approver)

    assert _alias_holder(adult_versions) == "mitigated_again"
    event = AuditEvent.objects.get(action="promotion_request.approve", object_id=str(request.pk))
    assert event.after["gate_results"] == request.gate_results
    assert event.after["evaluation_id"] == evaluation.pk


def test_a_failing_gate_blocks_approval_and_the_override_needs_two_approvers(
    gated, adult_versions, record_adult_evaluation, scientist, approver, second_approver
):
    record_adult_evaluation("full")
    request = do_request_promotion(
        model_version=adult_versions["full"], reason="more accurate", actor=scientist
    )
    assert [(gate["kind"], gate["passed"]) for gate in request.gate_results] == [
        ("metric_bound", True),
        ("not_worse_than_champion", True),
        ("fairness_ratio_at_least", False),
        ("robustness_drop_at_most", True),
        ("no_open_critical_alert", True),
        ("evaluation_max_age_days", True),
    ]
    events = AuditEvent.objects.count()

    with pytest.raises(ValidationError) as blocked:
        do_approve_promotion(promotion_request=request, actor=approver)
    assert blocked.value.message_dict == {
        "gates": [
            "gate fairness_ratio_at_least fails: demographic-parity ratio below 0.8 on sex (sex 0.2934). "
            "Approval is refused while a gate fails; an approver may override with a written reason "
            "(override_reason), which a second approver must then approve"
        ]
    }
    assert (_alias_holder(adult_versions), AuditEvent.objects.count()) == ("mitigated", events)

    # The requester may not override their own request; the first approver's override is recorded.
    with pytest.raises(PermissionDenied):
        do_approve_promotion(promotion_request=request, override_reason="mine", actor=scientist)
    do_approve_promotion(
        promotion_request=request, override_reason="accepted by the ethics board, ticket 42", actor=approver
    )
    request.refresh_from_db()
    assert (request.state, request.override_by, request.override_reason) == (
        "pending",
        approver,
        "accepted by the ethics board, ticket 42",
    )
    assert _alias_holder(adult_versions) == "mitigated"
    override = AuditEvent.objects.get(action="promotion_request.override")
    assert (override.actor, override.before["override_by_id"], override.after["override_by_id"]) == (
        approver,
        None,
        approver.pk,
    )
    assert override.after["override_reason"] == "accepted by the ethics board, ticket 42"

    # The same approver cannot complete it, even with a reason: two people must agree.
    for reason in ("", "really"):
        with pytest.raises(PermissionDenied) as refused:
            do_approve_promotion(promotion_request=request, override_reason=reason, actor=approver)
        assert "a second approver" in str(refused.value)
    assert PromotionRequest.objects.get(pk=request.pk).state == "pending"

    do_approve_promotion(
        promotion_request=request, decision_reason="read the override", actor=second_approver
    )
    request.refresh_from_db()
    assert (request.state, request.decided_by, request.override_by) == ("approved", second_approver, approver)
    assert _alias_holder(adult_versions) == "full"
    assert list(
        AuditEvent.objects.filter(id__gt=override.pk).order_by("id").values_list("action", "actor_label")
    ) == [("promotion_request.approve", "bea"), ("model_alias.move", "bea")]


def test_a_worse_version_fails_the_metric_and_champion_gates(gated, adult_versions, record_adult_evaluation):
    record_adult_evaluation("weak")
    results = {gate.kind: gate for gate in gate_results(adult_versions["weak"], "production")}

    assert (results["metric_bound"].passed, results["metric_bound"].detail) == (
        False,
        "f1 = 0.2144 (CI 0.1955 to 0.2308), must be ≥ 0.5",
    )
    assert results["not_worse_than_champion"].passed is False
    assert results["not_worse_than_champion"].detail == (
        "worse than income v1 beyond the interval: accuracy 0.7606 vs 0.8337 (difference -0.0731, "
        "CI -0.08021 to -0.06664); precision 0.4826 vs 0.7003 (difference -0.2177, CI -0.2549 to -0.1841)"
    )


def test_no_evaluation_or_only_a_self_reported_one_fails_every_evaluation_gate(
    gated, adult_versions, scientist
):
    weak = adult_versions["weak"]
    assert {
        (gate.passed, gate.detail)
        for gate in gate_results(weak, "production")
        if gate.kind != "no_open_critical_alert"
    } == {(False, "no evaluation of income v4 yet")}
    record_evaluation(
        model_version=weak,
        dataset_version=None,
        spec={},
        results={"metrics": {"f1": 0.99}},
        source="self_reported",
        actor=scientist,
    )
    assert gate_results(weak, "production")[0].detail == (
        "no evaluation of income v4 yet (only self-reported ones, which never satisfy a gate: "
        "run an evaluation in Steward)"
    )


def test_the_alias_doors_name_the_failing_gates(
    gated, adult_versions, record_adult_evaluation, scientist, client_for
):
    record_adult_evaluation("full")
    model = adult_versions["full"].model

    answer = client_for(scientist).put(
        f"/api/models/{model.pk}/aliases/production/", {"version": 2}, format="json"
    )
    assert answer.status_code == 403
    assert answer.json()["detail"].endswith(
        "; its promotion gates fail, so approval is refused until they pass or two approvers override: "
        "gate fairness_ratio_at_least fails: demographic-parity ratio below 0.8 on sex (sex 0.2934)"
    )

    _, secret = do_create_api_token(user=scientist, name="mlflow", is_read_only=False, actor=scientist)
    mlflow = Client().post(
        "/api/2.0/mlflow/registered-models/alias",
        data=json.dumps({"name": "income", "alias": "production", "version": "2"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert mlflow.status_code == 403
    assert mlflow.json()["error_code"] == "PERMISSION_DENIED"
    assert (
        "gate fairness_ratio_at_least fails: demographic-parity ratio below 0.8 on sex"
        in mlflow.json()["message"]
    )
    assert _alias_holder(adult_versions) == "mitigated"


def test_the_api_approves_with_an_override_reason(
    gated, adult_versions, record_adult_evaluation, scientist, approver, second_approver, client_for
):
    record_adult_evaluation("full")
    request = do_request_promotion(model_version=adult_versions["full"], actor=scientist)
    url = f"/api/promotion-requests/{request.pk}/approve/"

    blocked = client_for(approver).post(url, {}, format="json")
    assert blocked.status_code == 400
    assert blocked.json()["gates"][0].startswith("gate fairness_ratio_at_least fails")
    overridden = client_for(approver).post(url, {"override_reason": "board decision 42"}, format="json")
    assert (overridden.status_code, overridden.json()["state"], overridden.json()["override_by"]) == (
        200,
        "pending",
        "aaron",
    )
    assert [gate["passed"] for gate in overridden.json()["gate_results"]] == [
        True,
        True,
        False,
        True,
        True,
        True,
    ]
    again = client_for(approver).post(url, {}, format="json")
    assert again.status_code == 403
    approved = client_for(second_approver).post(url, {}, format="json")
    assert (approved.status_code, approved.json()["state"], approved.json()["decided_by"]) == (
        200,
        "approved",
        "bea",
    )


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        (
            [{"kind": "vibes"}],
            "condition 1: unknown kind 'vibes'; one of metric_bound, not_worse_than_champion, "
            "fairness_ratio_at_least, robustness_drop_at_most, no_open_critical_alert, "
            "evaluation_max_age_days, pii_policy_satisfied",
        ),
        (
            [{"kind": "metric_bound", "metric": "auc", "min": 0.7}],
            "condition 1 (metric_bound): unknown metric 'auc'; one of " + ", ".join(EVALUATION_METRICS),
        ),
        ([{"kind": "metric_bound", "metric": "f1"}], "condition 1 (metric_bound): give min, max or both"),
        (
            [{"kind": "no_open_critical_alert"}, {"kind": "fairness_ratio_at_least", "value": 1.5}],
            "condition 2 (fairness_ratio_at_least): "
            "value is a ratio above 0 and at most 1 (0.8: four fifths)",
        ),
        (
            [{"kind": "evaluation_max_age_days", "days": 0}],
            "condition 1 (evaluation_max_age_days): days is a whole number of at least 1",
        ),
        (
            [{"kind": "robustness_drop_at_most", "value": 0.1, "metric": "f1"}],
            "condition 1 (robustness_drop_at_most): unknown parameter 'metric'; it takes value",
        ),
        (
            [{"kind": "no_open_critical_alert"}, {"kind": "no_open_critical_alert"}],
            "no_open_critical_alert appears more than once; give it once",
        ),
    ],
)
def test_invalid_conditions_are_refused_precisely(team, owner, conditions, message):
    with pytest.raises(ValidationError) as refused:
        do_set_gate_policy(team=team, alias="production", conditions=conditions, actor=owner)
    assert refused.value.message_dict == {"conditions": [message]}
    assert PromotionGatePolicy.objects.count() == 0


def test_only_managers_set_gates_and_only_on_protected_aliases(team, owner, scientist, approver, outsider):
    for user in (scientist, approver, outsider):
        with pytest.raises(PermissionDenied):
            do_set_gate_policy(team=team, alias="production", conditions=CONDITIONS, actor=user)
    with pytest.raises(ValidationError) as refused:
        do_set_gate_policy(team=team, alias="staging", conditions=CONDITIONS, actor=owner)
    assert refused.value.message_dict == {
        "alias": [
            "alias 'staging' is not protected in team Mobility (protected: production); protect it first, "
            "gates apply to promotion requests"
        ]
    }
    assert PromotionGatePolicy.objects.count() == 0
    policy = do_set_gate_policy(team=team, alias="production", conditions=CONDITIONS[:1], actor=owner)
    event = AuditEvent.objects.get(action="gate_policy.set")
    assert (event.actor, event.before, event.after) == (
        owner,
        None,
        {"team_id": team.pk, "alias": "production", "conditions": CONDITIONS[:1]},
    )
    assert policy.conditions == CONDITIONS[:1]


def test_a_look_alike_alias_sets_the_one_policy_of_its_protected_alias(gated, team, owner, client_for):
    """ "Production" is the protected "production" (four eyes compare name keys), so setting its
    gates replaces that policy instead of adding a second one whose order decides which applies."""
    response = client_for(owner).put(
        "/api/gate-policies/set/",
        {"team": team.pk, "alias": "Production", "conditions": [{"kind": "no_open_critical_alert"}]},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert (response.json()["id"], response.json()["alias"]) == (gated.pk, "production")
    assert list(PromotionGatePolicy.objects.values_list("alias", "conditions")) == [
        ("production", [{"kind": "no_open_critical_alert"}])
    ]
    fullwidth_alias = "".join(chr(ord(c) + 0xFEE0) for c in "PRODUCTION")  # "ＰＲＯＤＵＣＴＩＯＮ"  # noqa: RUF003
    fullwidth = do_set_gate_policy(team=team, alias=fullwidth_alias, conditions=CONDITIONS, actor=owner)
    assert (fullwidth.pk, PromotionGatePolicy.objects.count()) == (gated.pk, 1)
    event = AuditEvent.objects.filter(action="gate_policy.set").latest("id")
    assert (event.before["conditions"], event.after["conditions"]) == (
        [{"kind": "no_open_critical_alert"}],
        CONDITIONS,
    )


def test_gates_read_only_an_evaluation_on_the_policys_dataset(
    gated, team, owner, scientist, adult_versions, adult_version, record_adult_evaluation
):
    """A policy that names its evaluation dataset is judged on that dataset: an evaluation of the
    candidate on any other (an easier one) satisfies none of its gates."""
    from governance.actions.datasets import do_create_dataset

    holdout = do_create_dataset(team=team, name="adult-holdout", actor=scientist)
    setting = {"dataset": holdout.pk, "task": "classification", "target": "label", "positive_label": " >50K"}
    do_set_gate_policy(team=team, alias="production", conditions=CONDITIONS, evaluation=setting, actor=owner)
    evaluation = record_adult_evaluation("mitigated_again")  # on dataset "adult", not the policy's

    results = gate_results(adult_versions["mitigated_again"], "production")
    assert {(gate.passed, gate.detail) for gate in results if gate.kind != "no_open_critical_alert"} == {
        (
            False,
            "no evaluation of income v3 on dataset adult-holdout (the policy's) yet; evaluations on "
            "other datasets do not count",
        )
    }

    setting["dataset"] = adult_version.dataset_id
    do_set_gate_policy(team=team, alias="production", conditions=CONDITIONS, evaluation=setting, actor=owner)
    request = do_request_promotion(model_version=adult_versions["mitigated_again"], actor=scientist)
    assert request.evaluation == evaluation
    assert all(gate["passed"] for gate in request.gate_results)


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_policy_that_applied_where_look_alikes_shared_an_alias(team, owner):
    """Before the alias key, "Production" and "production" could each have a policy and the first
    by alias applied; the migration keys them and keeps that one."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("governance", "0014_promotion_evaluation_jobs")])
    old = executor.loader.project_state([("governance", "0014_promotion_evaluation_jobs")]).apps
    policies = old.get_model("governance", "PromotionGatePolicy")
    for alias, kind in (("production", "no_open_critical_alert"), ("Production", "evaluation_max_age_days")):
        policies.objects.create(team_id=team.pk, alias=alias, conditions=[{"kind": kind, "days": 3}])

    executor = MigrationExecutor(connection)
    # Every app's leaves, not only governance's: going back unapplied the other apps' migrations that
    # depend on a later governance one, and the tests after this one need their tables.
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert list(PromotionGatePolicy.objects.values_list("alias", "alias_key", "conditions")) == [
        ("Production", "production", [{"kind": "evaluation_max_age_days", "days": 3}])
    ]


def test_gates_count_only_an_evaluation_as_the_policy_asks_for_it(
    gated, team, owner, scientist, adult_versions, adult_version, adult_evaluations, record_adult_evaluation
):
    """The requester picks an evaluation's spec and rows: one of a favourable subset (``where``),
    a sample, or without the policy's sensitive attribute passes over, and the gates say which and
    why; the newest that conforms is read."""
    setting = {
        "dataset": adult_version.dataset_id,
        "task": "classification",
        "target": "label",
        "positive_label": " >50K",
        "sensitive_attributes": ["sex"],
    }
    do_set_gate_policy(team=team, alias="production", conditions=CONDITIONS, evaluation=setting, actor=owner)
    policy = PromotionGatePolicy.objects.get(pk=gated.pk)
    conforming = record_adult_evaluation("mitigated_again")
    candidate = adult_versions["mitigated_again"]
    comparison = adult_evaluations.comparisons["mitigated_again"]

    def record(spec_changes=None, dropped=None):
        results = dict(comparison["candidate"])
        if dropped:
            results["dropped"] = {**results["dropped"], **dropped}
        return record_evaluation(
            model_version=candidate,
            dataset_version=adult_version,
            spec={**adult_evaluations.spec, **(spec_changes or {})},
            results=results,
            actor=None,
            on_behalf_of=scientist,
        )

    cases = [
        ({"where": {"sex": " Male"}}, None, "it evaluated only the rows where {'sex': ' Male'}"),
        ({"sensitive_attributes": []}, None, "it leaves out the sensitive attribute(s) 'sex'"),
        (None, {"sampled_out": 9000}, "it left 9,000 rows out by sampling (max_rows)"),
    ]
    for spec_changes, dropped, why in cases:
        passed_over = record(spec_changes, dropped)
        request_gates = gate_results(candidate, "production")
        assert all(gate.passed for gate in request_gates), [gate.detail for gate in request_gates]
        assert policy_evaluation(candidate, policy) == (
            conforming,
            f"evaluation #{passed_over.pk} does not count: {why}",
        )

    conforming.delete()
    details = {
        gate.detail for gate in gate_results(candidate, "production") if gate.kind != "no_open_critical_alert"
    }
    assert len(details) == 1
    (detail,) = details
    assert detail.startswith(
        f"no evaluation of {candidate} on dataset adult (the policy's) as the policy asks for it yet; "
        "evaluation #"
    )
    assert detail.endswith("does not count: it left 9,000 rows out by sampling (max_rows)")

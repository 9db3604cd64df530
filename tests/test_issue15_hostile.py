"""Hostile review of issue 15 (evaluations and promotion gates): bad input gives a 400 naming
the field, never a 500; an override covers only the gates that failed when it was made."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.gates import do_set_gate_policy
from governance.actions.model_versions import do_register_model_version_from_artifact
from governance.actions.promotions import do_approve_promotion, do_request_promotion
from governance.actions.registered_models import do_create_registered_model
from governance.actions.teams import do_set_membership
from governance.models import DatasetVersion, ModelAlias, PromotionRequest, TeamRole
from runners.evaluation import EvaluationError, EvaluationSpec
from runners.evaluation_records import record_evaluation
from tests.conftest import PASSWORD

SET = "/api/gate-policies/set/"


@pytest.fixture
def second_approver(admin, team):
    user = get_user_model().objects.create_user("bea", "bea@example.com", PASSWORD)
    do_set_membership(user=user, team=team, role=TeamRole.APPROVER, actor=admin)
    return user


@pytest.fixture
def candidate(team, owner, scientist, tmp_path):
    model = do_create_registered_model(team=team, name="income", owner=owner, actor=scientist)
    path = tmp_path / "model.txt"
    path.write_text("a model\n")
    return do_register_model_version_from_artifact(
        model=model, artifact_path=path, source="t", actor=scientist
    )


@pytest.fixture
def small_data(team, scientist, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("x,label\n1,0\n2,1\n3,0\n4,1\n")
    dataset = do_create_dataset(team=team, name="rows", actor=scientist)
    return do_register_dataset_version(
        dataset=dataset,
        file_path=path,
        filename="rows.csv",
        source=DatasetVersion.Source.PATH,
        actor=scientist,
    )


def _results(**metrics: float) -> dict:
    return {"metrics": {name: {"value": value} for name, value in metrics.items()}}


@pytest.mark.parametrize("bound", [10**400, -(10**400)])
def test_a_gate_bound_too_large_for_a_float_is_a_400_not_a_500(client_for, owner, team, bound):
    response = client_for(owner).put(
        SET,
        {
            "team": team.pk,
            "alias": "production",
            "conditions": [{"kind": "metric_bound", "metric": "f1", "min": bound}],
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "min must be a number" in str(response.json())


def test_a_huge_fairness_value_is_a_400(client_for, owner, team):
    response = client_for(owner).put(
        SET,
        {
            "team": team.pk,
            "alias": "production",
            "conditions": [{"kind": "robustness_drop_at_most", "value": 10**400}],
        },
        format="json",
    )
    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    ("field", "value"),
    [("bootstrap_resamples", 10**9), ("importance_repeats", 10**9), ("slice_bins", 10**9)],
)
def test_evaluation_spec_refuses_unbounded_work(field, value):
    with pytest.raises(EvaluationError) as caught:
        EvaluationSpec.from_dict({"task": "classification", "target": "label", field: value})
    assert caught.value.field == field


def test_an_override_of_one_metric_bound_does_not_cover_another(
    candidate, small_data, team, owner, scientist, approver, second_approver
):
    do_set_gate_policy(
        team=team,
        alias="production",
        conditions=[
            {"kind": "metric_bound", "metric": "f1", "min": 0.5},
            {"kind": "metric_bound", "metric": "accuracy", "min": 0.5},
        ],
        actor=owner,
    )

    def evaluate(**metrics: float) -> None:
        record_evaluation(
            model_version=candidate,
            dataset_version=small_data,
            spec={},
            results=_results(**metrics),
            actor=None,
            on_behalf_of=scientist,
        )

    evaluate(f1=0.1, accuracy=0.9)
    request = do_request_promotion(model_version=candidate, actor=scientist)
    do_approve_promotion(promotion_request=request, override_reason="f1 is fine here", actor=approver)
    request.refresh_from_db()
    assert request.override_by == approver
    # Now f1 passes but accuracy, which nobody overrode, fails.
    evaluate(f1=0.9, accuracy=0.1)
    with pytest.raises(ValidationError) as caught:
        do_approve_promotion(promotion_request=request, actor=second_approver)
    assert "accuracy" in str(caught.value)
    request.refresh_from_db()
    assert request.state == PromotionRequest.State.PENDING
    assert not ModelAlias.objects.filter(name="production").exists()


def test_an_evaluation_metric_too_large_for_a_float_is_refused(candidate, small_data, scientist):
    with pytest.raises(ValidationError) as caught:
        record_evaluation(
            model_version=candidate,
            dataset_version=small_data,
            spec={},
            results={"metrics": {"f1": 10**400}},
            actor=None,
            on_behalf_of=scientist,
        )
    assert "value must be a finite number" in str(caught.value)


def test_a_noise_scale_too_large_for_a_float_is_an_evaluation_error():
    with pytest.raises(EvaluationError) as caught:
        EvaluationSpec.from_dict({"task": "classification", "target": "label", "noise_scale": 10**400})
    assert caught.value.field == "noise_scale"


def test_an_override_does_not_cover_a_gate_the_policy_replaced_at_the_same_position(
    candidate, small_data, team, owner, scientist, approver, second_approver, client_for
):
    """Approver one overrides "f1 >= 0.5"; the owner then replaces that gate with "accuracy >=
    0.95", which nobody overrode: the second approver's approval is refused naming it."""
    do_set_gate_policy(
        team=team,
        alias="production",
        conditions=[{"kind": "metric_bound", "metric": "f1", "min": 0.5}],
        actor=owner,
    )
    record_evaluation(
        model_version=candidate,
        dataset_version=small_data,
        spec={},
        results=_results(f1=0.1, accuracy=0.9),
        actor=None,
        on_behalf_of=scientist,
    )
    request = do_request_promotion(model_version=candidate, actor=scientist)
    approve = f"/api/promotion-requests/{request.pk}/approve/"
    overridden = client_for(approver).post(approve, {"override_reason": "f1 is fine here"}, format="json")
    assert (overridden.status_code, overridden.json()["override_by"]) == (200, approver.username)
    do_set_gate_policy(
        team=team,
        alias="production",
        conditions=[{"kind": "metric_bound", "metric": "accuracy", "min": 0.95}],
        actor=owner,
    )

    response = client_for(second_approver).post(approve, {}, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["gates"][0].startswith(
        "gate metric_bound fails: accuracy = 0.9, must be ≥ 0.95. Approval is refused while a gate fails"
    )
    request.refresh_from_db()
    assert request.state == PromotionRequest.State.PENDING
    assert not ModelAlias.objects.filter(name="production").exists()


def test_a_comparison_without_bootstrap_intervals_fails_the_champion_gate(
    candidate, small_data, team, owner, scientist, approver, tmp_path
):
    """bootstrap_resamples 0 gives no interval, so the engine marks nothing "worse": the gate
    must not read that as "not worse" for a candidate far below the champion."""
    import numpy as np
    import pandas as pd

    from runners.evaluation import Predictions, evaluate_pair

    do_approve_promotion(
        promotion_request=do_request_promotion(model_version=candidate, actor=scientist), actor=approver
    )
    path = tmp_path / "model-2.txt"
    path.write_text("a worse model\n")
    challenger = do_register_model_version_from_artifact(
        model=candidate.model, artifact_path=path, source="t", actor=scientist
    )
    do_set_gate_policy(
        team=team,
        alias="production",
        conditions=[{"kind": "not_worse_than_champion", "metrics": "all"}],
        actor=owner,
    )
    frame = pd.DataFrame({"x": np.arange(200) % 10, "label": np.where(np.arange(200) % 10 > 4, "1", "0")})
    spec = EvaluationSpec(
        task="classification",
        target="label",
        positive_label="1",
        features=("x",),
        bootstrap_resamples=0,
        robustness=False,
        importance_repeats=0,
    )
    right = lambda rows: Predictions(labels=np.where(rows["x"] > 4, "1", "0"))  # noqa: E731
    wrong = lambda rows: Predictions(labels=np.where(rows["x"] > 4, "0", "1"))  # noqa: E731
    compared = evaluate_pair(frame, wrong, right, spec).to_dict()
    assert compared["differences"]["accuracy"]["difference"] == -1.0
    assert compared["differences"]["accuracy"]["is_worse"] is False  # no interval: never "worse"
    record_evaluation(
        model_version=challenger,
        dataset_version=small_data,
        spec=spec.to_dict(),
        results=compared["candidate"],
        champion_version=candidate,
        champion_results=compared["champion"],
        comparison=compared["differences"],
        actor=None,
        on_behalf_of=scientist,
    )

    request = do_request_promotion(model_version=challenger, actor=scientist)

    [gate] = request.gate_results
    assert (gate["kind"], gate["passed"]) == ("not_worse_than_champion", False)
    assert gate["detail"] == (
        "no confidence interval (evaluated without bootstrap resamples): accuracy, f1, precision, recall"
    )
    with pytest.raises(ValidationError) as caught:
        do_approve_promotion(promotion_request=request, actor=approver)
    assert "gate not_worse_than_champion fails: no confidence interval" in str(caught.value)

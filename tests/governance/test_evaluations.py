"""Evaluation records (issue 15): record_evaluation stores the engine's real results, audits
them and joins them into lineage; refusals change nothing."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.models import AuditEvent, DatasetVersion, Evaluation
from lineage.models import LineageEdge
from runners.evaluation_records import record_evaluation
from tests.conftest import ADULT


def test_record_stores_the_engines_results_audits_and_links_lineage(
    adult_evaluations, adult_versions, adult_version, scientist
):
    full = adult_evaluations.comparisons["full"]
    candidate, champion = adult_versions["full"], adult_versions["mitigated"]

    evaluation = record_evaluation(
        model_version=candidate,
        dataset_version=adult_version,
        spec=adult_evaluations.spec,
        results=full["candidate"],
        job_id=41,
        champion_version=champion,
        champion_results=full["champion"],
        comparison=full["differences"],
        actor=None,
        on_behalf_of=scientist,
    )

    stored = Evaluation.objects.get()
    assert stored.pk == evaluation.pk
    assert (
        stored.team_id,
        stored.model_version_id,
        stored.dataset_version_id,
        stored.job_id,
        stored.source,
    ) == (
        candidate.model.team_id,
        candidate.pk,
        adult_version.pk,
        41,
        "steward",
    )
    assert stored.results == full["candidate"]
    assert stored.comparison == full["differences"]
    assert stored.champion_version_id == champion.pk
    assert stored.created_by == scientist
    assert stored.results["fairness"]["sex"]["demographic_parity_ratio"] == pytest.approx(0.2934, abs=1e-4)
    event = AuditEvent.objects.get(action="evaluation.record")
    assert (event.actor_label, event.on_behalf_of_label, event.object_id, event.team_id) == (
        "system",
        "dana",
        str(evaluation.pk),
        candidate.model.team_id,
    )
    assert event.after["metrics"] == {
        name: entry["value"] for name, entry in full["candidate"]["metrics"].items()
    }
    assert set(
        LineageEdge.objects.filter(target_type="evaluation", target_id=evaluation.pk).values_list(
            "source_type", "source_id", "relation"
        )
    ) == {
        ("model_version", candidate.pk, "input"),
        ("dataset_version", adult_version.pk, "input"),
        ("model_version", champion.pk, "input"),
        ("job", 41, "output"),
    }


def test_self_reported_needs_no_dataset_and_takes_bare_numbers(adult_versions, scientist):
    evaluation = record_evaluation(
        model_version=adult_versions["weak"],
        dataset_version=None,
        spec={},
        results={"metrics": {"accuracy": 0.75}},
        source="self_reported",
        actor=scientist,
    )
    assert evaluation.is_self_reported
    assert evaluation.results == {
        "metrics": {"accuracy": {"value": 0.75, "ci_low": None, "ci_high": None, "reason": None}}
    }
    assert list(
        LineageEdge.objects.filter(target_type="evaluation").values_list("source_type", flat=True)
    ) == ["model_version"]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"source": "guess"}, "source", "unknown source 'guess'; one of steward, self_reported"),
        (
            {"results": {"curves": {}}},
            "results",
            "results must hold 'metrics', an object of metric name -> value",
        ),
        (
            {"results": {"metrics": {"f1": float("nan")}}},
            "results",
            "results is not plain JSON (numbers must be finite): "
            "Out of range float values are not JSON compliant",
        ),
        (
            {"results": {"metrics": {"f1": "high"}}},
            "results",
            "metric 'f1' must be a number or an object with a 'value', not 'high'",
        ),
        ({"dataset_version": None}, "dataset_version", "an evaluation by Steward names its dataset version"),
        (
            {"comparison": {"f1": {}}},
            "champion_version",
            "champion results and a comparison need the champion version",
        ),
        (
            {"spec": {"x": "y" * 2_000_001}},
            "spec",
            "spec has 2,000,010 characters of JSON; at most 2,000,000",
        ),
    ],
)
def test_invalid_records_are_refused_and_nothing_is_stored(
    adult_versions, adult_version, scientist, changes, field, message
):
    arguments = {
        "model_version": adult_versions["weak"],
        "dataset_version": adult_version,
        "spec": {},
        "results": {"metrics": {"f1": 0.5}},
        "actor": scientist,
        **changes,
    }
    events = AuditEvent.objects.count()
    with pytest.raises(ValidationError) as refused:
        record_evaluation(**arguments)
    assert refused.value.message_dict == {field: [message]}
    assert (Evaluation.objects.count(), AuditEvent.objects.count(), LineageEdge.objects.count()) == (
        0,
        events,
        0,
    )


def test_another_teams_dataset_or_user_is_refused(adult_versions, outsider, other_team, viewer, scientist):
    fraud = do_create_dataset(team=other_team, name="fraud-rows", actor=outsider)
    fraud_version = do_register_dataset_version(
        dataset=fraud,
        file_path=ADULT,
        filename="adult.csv",
        source=DatasetVersion.Source.PATH,
        actor=outsider,
    )
    arguments = {"model_version": adult_versions["weak"], "spec": {}, "results": {"metrics": {"f1": 0.5}}}
    with pytest.raises(ValidationError) as refused:
        record_evaluation(dataset_version=fraud_version, actor=scientist, **arguments)
    assert refused.value.message_dict == {
        "dataset_version": ["the dataset version belongs to another team than the model"]
    }
    for user in (outsider, viewer):
        with pytest.raises(PermissionDenied):
            record_evaluation(dataset_version=None, source="self_reported", actor=user, **arguments)
    assert Evaluation.objects.count() == 0

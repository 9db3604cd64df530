"""Issue 15's "done when", end to end through the public API: on the real adult census data a model
owner trains two versions with real training jobs, evaluates both with real evaluation jobs (the
worker's own function, ``execute_job``), reads the slice and fairness results and the
champion/challenger comparison from the API and the evaluation page, and requests production;
the gate blocks the worse version with a message naming the gate, an approver approves the other,
and the audit trail holds every step for the right objects.

- v1: the built-in classifier on every feature (what tests/runners/test_evaluation_jobs.py trains).
- v2: the same network on three numeric features only (age, education-num, hours-per-week): it
  cannot see marital status, relationship or capital gains, the strongest signals in this data,
  so it should rank and classify worse; the test checks that from the paired-bootstrap comparison
  it computed rather than assuming it. (On this data and seed v2 is also less fair on race than
  v1; whether the fairness gate fails too is read from v2's recorded ratios, not assumed.)
"""

from __future__ import annotations

import math
import re
from html import unescape

import pytest

from governance.charts import format_number
from governance.models import Evaluation, ModelVersion, PromotionRequest, RegisteredModel
from runners.execute import execute_job
from tests.runners.test_evaluation_jobs import CATEGORICAL, NUMERIC, POSITIVE, evaluation_spec

WEAK_FEATURES = ["age", "education-num", "hours-per-week"]
# Compared with the champion on both: the gate blocks a version worse on either beyond the
# paired bootstrap interval.
COMPARED = ["f1", "roc_auc"]


def _finished(job_id: int) -> int:
    """Run the worker's plain function on a queued job (no broker): it must succeed."""
    assert execute_job(job_id) == "succeeded"
    return job_id


def _train(client, dataset_version, registered_model, **spec) -> ModelVersion:
    response = client.post(
        "/api/jobs/",
        {
            "kind": "train",
            "dataset_version": dataset_version.pk,
            "registered_model": registered_model.pk,
            "spec": {
                "target": "label",
                "task": "classification",
                "epochs": 1,
                "hidden_layers": [16],
                "seed": 1,
                **spec,
            },
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    job = client.get(f"/api/jobs/{_finished(response.json()['id'])}/").json()
    assert job["state"] == "succeeded"
    return ModelVersion.objects.get(source_job_id=job["id"])


def _evaluate(client, version: ModelVersion, dataset_version) -> dict:
    """Submit an evaluation job through the API, run it, and read its record through the API."""
    response = client.post(
        "/api/jobs/",
        {
            "kind": "evaluate",
            "model_version": version.pk,
            "dataset_version": dataset_version.pk,
            "spec": evaluation_spec(),
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    job_id = _finished(response.json()["id"])
    listed = client.get("/api/evaluations/", {"model_version": version.pk}).json()["results"]
    assert [(row["model_version"], row["job_id"]) for row in listed] == [(version.pk, job_id)]
    return listed[0]


def _cells(html: str, table_id: str) -> list[list[str]]:
    """The text of each body row's cells in the page's table ``table_id``."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S)
    assert table is not None, f"no table {table_id}"
    return [
        [
            unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        ]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S)
    ]


def _page(client, evaluation: dict) -> str:
    response = client.get(f"/evaluations/{evaluation['id']}/")
    assert response.status_code == 200
    return response.content.decode()


def _assert_page_shows(html: str, evaluation: dict) -> None:
    """The evaluation page holds the record's slices (worst first), fairness figures per attribute
    and, when there is a champion, the comparison, with the record's numbers."""
    results = evaluation["results"]
    primary = results["primary_metric"]
    slices = [
        [
            item["column"],
            str(item["value"]).strip(),
            str(item["rows"]),
            format_number(item["metrics"][primary]),
            # No interval where no resample gave a value (a slice without a positive row).
            " to ".join(map(format_number, item["intervals"][primary]))
            if None not in item["intervals"][primary]
            else "",
        ]
        for item in results["slices"]["items"]
        if not item.get("too_small")
    ]
    shown = [row for row in _cells(html, "evaluation-slices") if row[3] != "too few rows"]
    assert slices
    assert shown == slices
    assert {row[0] for row in shown} == {"education"}

    fairness = {row[0]: row for row in _cells(html, "evaluation-fairness")}
    assert set(fairness) == set(results["fairness"]) == {"sex", "race"}
    for attribute, values in results["fairness"].items():
        ratio = values["demographic_parity_ratio"]
        assert f"demographic parity ratio {format_number(ratio)}" in fairness[attribute][1]
        assert fairness[attribute][2] == ("holds" if ratio >= 0.8 else "fails")

    if evaluation["comparison"]:
        compared = {row[0]: row for row in _cells(html, "evaluation-comparison")}
        assert set(compared) == set(evaluation["comparison"])
        for name, entry in evaluation["comparison"].items():
            verdict = "worse" if entry["is_worse"] else "better" if entry["is_better"] else ""
            assert compared[name][1:4] == [
                format_number(entry["candidate"]),
                format_number(entry["champion"]),
                format_number(entry["difference"]),
            ]
            assert (
                compared[name][4] == f"{format_number(entry['ci_low'])} to {format_number(entry['ci_high'])}"
            )
            assert compared[name][5] == verdict
    else:
        assert 'id="evaluation-comparison"' not in html


def _events(client, **filters) -> list[tuple[str, str, str, str]]:
    rows = client.get("/api/audit-events/", {**filters, "page_size": 200}).json()["results"]
    return [(row["action"], row["object_type"], row["object_id"], row["actor_label"]) for row in rows]


def test_two_trained_versions_are_evaluated_and_the_gate_blocks_the_worse_one(
    adult_version,
    team,
    owner,
    approver,
    client_for,
):
    as_owner, as_approver = client_for(owner), client_for(approver)
    as_owner.force_login(owner)  # the evaluation page is a Django view behind a login
    created = as_owner.post(
        "/api/models/", {"team": team.pk, "name": "adult-income", "owner": "olivia"}, format="json"
    )
    assert created.status_code == 201, created.content
    registered_model = RegisteredModel.objects.get(pk=created.json()["id"])

    v1 = _train(
        as_owner,
        adult_version,
        registered_model,
        features=NUMERIC + CATEGORICAL,
        categorical=CATEGORICAL,
    )
    v2 = _train(as_owner, adult_version, registered_model, features=WEAK_FEATURES)
    assert (v1.version, v2.version) == (1, 2)

    # v1 first: no version holds production, so there is no champion to compare with.
    first = _evaluate(as_owner, v1, adult_version)
    assert (first["champion_version"], first["comparison"], first["results"]["rows"]) == (None, None, 32561)
    assert first["spec"]["sensitive_attributes"] == ["sex", "race"]
    assert first["results"]["positive_label"] == POSITIVE
    _assert_page_shows(_page(as_owner, first), first)

    # The owner gates production. The fairness bound is v1's own lowest demographic-parity ratio
    # (sex or race), rounded down to two decimals: the adult data's labels are skewed by sex, so a
    # fixed 0.8 (the four-fifths rule) would block any model trained on it as it stands, v1
    # included; the bound says "no less fair than the production model", computed, not assumed.
    ratios = {
        name: values["demographic_parity_ratio"] for name, values in first["results"]["fairness"].items()
    }
    bound = math.floor(min(ratios.values()) * 100) / 100
    assert 0 < bound <= 1
    conditions = [
        {"kind": "not_worse_than_champion", "metrics": COMPARED},
        {"kind": "fairness_ratio_at_least", "value": bound},
        {"kind": "evaluation_max_age_days", "days": 30},
    ]
    policy = as_owner.put(
        "/api/gate-policies/set/",
        {"team": team.pk, "alias": "production", "conditions": conditions},
        format="json",
    )
    assert policy.status_code == 200, policy.content
    assert policy.json()["conditions"] == [
        {"kind": "not_worse_than_champion", "metrics": sorted(COMPARED)},
        conditions[1],
        conditions[2],
    ]

    # v1 through the gates: no champion yet (the comparison does not apply), fair to the bound.
    requested = as_owner.post(
        "/api/promotion-requests/", {"model_version": v1.pk, "reason": "first adult model"}, format="json"
    )
    assert requested.status_code == 201, requested.content
    first_request = requested.json()
    assert first_request["evaluation"] == first["id"]
    assert [(gate["kind"], gate["passed"]) for gate in first_request["gate_results"]] == [
        ("not_worse_than_champion", None),
        ("fairness_ratio_at_least", True),
        ("evaluation_max_age_days", True),
    ]
    approved = as_approver.post(
        f"/api/promotion-requests/{first_request['id']}/approve/", {"reason": "gates pass"}, format="json"
    )
    assert approved.status_code == 200, approved.content
    assert approved.json()["state"] == "approved"
    alias = as_owner.get(f"/api/models/{registered_model.pk}/").json()["aliases"]
    assert alias == {"production": v1.version}

    # v2, evaluated now, is compared with the champion (production = v1) on the same rows.
    second = _evaluate(as_owner, v2, adult_version)
    assert second["champion_version"] == v1.pk
    assert second["champion_results"]["rows"] == second["results"]["rows"] == 32561
    comparison = second["comparison"]
    for name in COMPARED:
        entry = comparison[name]
        assert entry["candidate"] == second["results"]["metrics"][name]["value"]
        assert entry["champion"] == pytest.approx(first["results"]["metrics"][name]["value"])
        assert entry["difference"] == pytest.approx(entry["candidate"] - entry["champion"])
    worse = [name for name in COMPARED if comparison[name]["is_worse"]]
    # Three features against fourteen: worse beyond the interval on at least one compared metric.
    assert worse, {name: comparison[name] for name in COMPARED}
    assert all(comparison[name]["ci_high"] < 0 for name in worse)
    _assert_page_shows(_page(as_owner, second), second)

    requested = as_owner.post(
        "/api/promotion-requests/", {"model_version": v2.pk, "reason": "simpler model"}, format="json"
    )
    assert requested.status_code == 201, requested.content
    second_request = requested.json()
    unfair = [
        name
        for name, values in second["results"]["fairness"].items()
        if values["demographic_parity_ratio"] is None or values["demographic_parity_ratio"] < bound
    ]
    assert second_request["evaluation"] == second["id"]
    assert [(gate["kind"], gate["passed"]) for gate in second_request["gate_results"]] == [
        ("not_worse_than_champion", False),
        ("fairness_ratio_at_least", not unfair),
        ("evaluation_max_age_days", True),
    ]

    refused = as_approver.post(
        f"/api/promotion-requests/{second_request['id']}/approve/", {"reason": "looks fine"}, format="json"
    )
    assert refused.status_code == 400
    (message,) = refused.json()["gates"]
    assert message.startswith(f"gate not_worse_than_champion fails: worse than {v1} beyond the interval: ")
    for name in worse:
        entry = comparison[name]
        assert f"{name} {entry['candidate']:.4g} vs {entry['champion']:.4g}" in message
    assert ("gate fairness_ratio_at_least fails" in message) == bool(unfair)
    assert "evaluation_max_age_days" not in message
    assert PromotionRequest.objects.get(pk=second_request["id"]).state == "pending"
    assert as_owner.get(f"/api/models/{registered_model.pk}/").json()["aliases"] == {"production": v1.version}

    # The audit trail, read through the API by the owner.
    evaluations = {row.pk: row.model_version_id for row in Evaluation.objects.all()}
    assert evaluations == {first["id"]: v1.pk, second["id"]: v2.pk}
    assert sorted(_events(as_owner, action="evaluation.record")) == sorted(
        [
            ("evaluation.record", "evaluation", str(first["id"]), "system"),
            ("evaluation.record", "evaluation", str(second["id"]), "system"),
        ]
    )
    assert _events(as_owner, action="gate_policy.set") == [
        ("gate_policy.set", "promotiongatepolicy", str(policy.json()["id"]), "olivia")
    ]
    assert sorted(_events(as_owner, action="promotion_request.create")) == sorted(
        [
            ("promotion_request.create", "promotionrequest", str(first_request["id"]), "olivia"),
            ("promotion_request.create", "promotionrequest", str(second_request["id"]), "olivia"),
        ]
    )
    # One approval, of v1's request; the refused one left no approval, override or move.
    assert _events(as_owner, action="promotion_request.approve") == [
        ("promotion_request.approve", "promotionrequest", str(first_request["id"]), "aaron")
    ]
    assert _events(as_owner, action="promotion_request.override") == []
    moves = as_owner.get("/api/audit-events/", {"action": "model_alias.move"}).json()["results"]
    assert [
        (row["actor_label"], row["object_repr"], row["before"], row["after"]["model_version_id"])
        for row in moves
    ] == [("aaron", f"{registered_model.name}@production -> v1", None, v1.pk)]

"""A promotion request runs or reuses the evaluation its gates read (issue 15): where the alias's
gate policy names an evaluation and the candidate has none young enough, the request starts one
evaluation job (through ``do_submit_job``, on behalf of the requester) on the newest labelled version of
the policy's dataset, and its page says so; a refused submission leaves the request with the
reason. Through the API and the pages; the bike-sharing model trained once a session."""

from __future__ import annotations

import pytest
from django.test import Client

from governance.actions.aliases import do_set_protected_aliases
from governance.actions.datasets import do_register_dataset_version
from governance.models import AuditEvent, DatasetVersion, PromotionRequest
from runners.evaluation_records import record_evaluation
from runners.models import Job, JobKind, JobState

CONDITIONS = [
    {"kind": "metric_bound", "metric": "rmse", "max": 10000},
    {"kind": "evaluation_max_age_days", "days": 30},
]


@pytest.fixture
def newest_version(dataset_version, scientist, bike_2012_csv) -> DatasetVersion:
    """Version 2 of the bike-sharing dataset (the 2012 rows): what a request evaluates on."""
    return do_register_dataset_version(
        dataset=dataset_version.dataset,
        file_path=bike_2012_csv,
        filename="hour-2012.csv",
        source=DatasetVersion.Source.PATH,
        actor=scientist,
    )


@pytest.fixture
def set_policy(team, owner, client_for, dataset_version):
    do_set_protected_aliases(team=team, aliases=["production"], actor=owner)

    def set_(evaluation: dict | None, conditions=CONDITIONS):
        body = {"team": team.pk, "alias": "production", "conditions": conditions}
        if evaluation is not None:
            body["evaluation"] = {"dataset": dataset_version.dataset_id, **evaluation}
        response = client_for(owner).put("/api/gate-policies/set/", body, format="json")
        assert response.status_code == 200, response.json()
        return response.json()

    return set_


def _request(client_for, scientist, version, capture) -> dict:
    with capture(execute=True):
        response = client_for(scientist).post(
            "/api/promotion-requests/", {"model_version": version.pk}, format="json"
        )
    assert response.status_code == 201, response.json()
    return response.json()


def _page(user, request_id: int) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(f"/promotions/{request_id}/")
    assert response.status_code == 200
    return response.content.decode()


def test_a_request_without_an_evaluation_starts_one_job_on_the_datasets_newest_version(
    set_policy, registered_version, newest_version, scientist, client_for, django_capture_on_commit_callbacks
):
    policy = set_policy({"task": "regression", "target": "cnt", "slice_columns": ["season"]})
    assert policy["evaluation"] == {
        "dataset": newest_version.dataset_id,
        "task": "regression",
        "target": "cnt",
        "slice_columns": ["season"],
    }

    data = _request(client_for, scientist, registered_version, django_capture_on_commit_callbacks)

    job = Job.objects.get(kind=JobKind.EVALUATE)
    assert (job.model_version, job.dataset_version, job.created_by, job.state) == (
        registered_version,
        newest_version,
        scientist,
        JobState.QUEUED,
    )
    assert (job.spec["task"], job.spec["target"], job.spec["slice_columns"]) == (
        "regression",
        "cnt",
        ["season"],
    )
    assert job.spec["champion_version"] is None  # nobody holds production yet
    request = PromotionRequest.objects.get(pk=data["id"])
    assert (request.evaluation_job_id, request.evaluation_job_error) == (job.pk, "")
    # The gates read no evaluation yet; they are checked again at approval.
    assert [gate["passed"] for gate in data["gate_results"]] == [False, False]
    shown = client_for(scientist).get(f"/api/promotion-requests/{request.pk}/").json()
    assert (shown["evaluation_job_id"], shown["evaluation_job_error"]) == (job.pk, "")
    assert AuditEvent.objects.filter(action="job.submit", object_id=str(job.pk), actor=scientist).exists()
    event = AuditEvent.objects.get(action="promotion_request.evaluation")
    assert event.after == {
        "dataset_version_id": newest_version.pk,
        "evaluation_job_id": job.pk,
        "evaluation_job_error": "",
    }
    page = _page(scientist, request.pk)
    started = "was started for this request and has recorded no evaluation yet"
    assert f'<a href="/jobs/{job.pk}/">Evaluation job #{job.pk}</a> {started}' in page
    assert "the gates are checked again at approval" in page

    # A second request for the same version and alias is refused (one is pending): no second job.
    with django_capture_on_commit_callbacks(execute=True):
        again = client_for(scientist).post(
            "/api/promotion-requests/", {"model_version": registered_version.pk}, format="json"
        )
    assert again.status_code == 400
    assert Job.objects.filter(kind=JobKind.EVALUATE).count() == 1


def test_a_fresh_evaluation_is_reused_and_none_is_started(
    set_policy, registered_version, newest_version, scientist, client_for, django_capture_on_commit_callbacks
):
    set_policy({"task": "regression", "target": "cnt"})
    evaluation = record_evaluation(
        model_version=registered_version,
        dataset_version=newest_version,
        spec={"task": "regression", "target": "cnt"},
        results={"metrics": {"rmse": {"value": 80.0}}},
        actor=None,
        on_behalf_of=scientist,
    )

    data = _request(client_for, scientist, registered_version, django_capture_on_commit_callbacks)

    assert not Job.objects.filter(kind=JobKind.EVALUATE).exists()
    assert (data["evaluation"], data["evaluation_job_id"], data["evaluation_job_error"]) == (
        evaluation.pk,
        None,
        "",
    )
    assert [gate["passed"] for gate in data["gate_results"]] == [True, True]
    assert 'id="promotion-evaluation-job"' not in _page(scientist, data["id"])


def test_a_policy_without_an_evaluation_setting_starts_none(
    set_policy, registered_version, scientist, client_for, django_capture_on_commit_callbacks
):
    policy = set_policy(None)
    assert policy["evaluation"] == {}

    data = _request(client_for, scientist, registered_version, django_capture_on_commit_callbacks)

    assert not Job.objects.filter(kind=JobKind.EVALUATE).exists()
    assert data["evaluation_job_id"] is None
    assert data["gate_results"][0]["detail"] == f"no evaluation of {registered_version} yet"
    assert not AuditEvent.objects.filter(action="promotion_request.evaluation").exists()


def test_a_refused_submission_leaves_the_request_with_the_reason(
    set_policy, registered_version, newest_version, scientist, client_for, django_capture_on_commit_callbacks
):
    set_policy({"task": "regression", "target": "riders"})

    data = _request(client_for, scientist, registered_version, django_capture_on_commit_callbacks)

    assert not Job.objects.filter(kind=JobKind.EVALUATE).exists()
    request = PromotionRequest.objects.get(pk=data["id"])
    assert (request.state, request.evaluation_job_id) == ("pending", None)
    assert request.evaluation_job_error == (
        f"no version of dataset {newest_version.dataset.name} holds the label and features of "
        f"{registered_version} (its newest, {newest_version}, lacks 'riders')"
    )
    page = _page(scientist, request.pk)
    assert "The evaluation could not be started:" in page
    assert "riders" in page
    assert f'href="/model-versions/{registered_version.pk}/evaluate/"' in page


def test_the_evaluation_runs_on_the_newest_labelled_version_passing_over_an_unlabelled_upload(
    set_policy,
    registered_version,
    newest_version,
    scientist,
    client_for,
    django_capture_on_commit_callbacks,
    bike_2012_csv,
    tmp_path,
):
    """Rows to score later (no label yet) uploaded after the labelled ones are not what a gate
    judges on: the request evaluates on the newest version that holds the label."""
    import pandas as pd

    unlabelled = tmp_path / "hour-2012-unlabelled.csv"
    pd.read_csv(bike_2012_csv).drop(columns=["cnt"]).to_csv(unlabelled, index=False)
    do_register_dataset_version(
        dataset=newest_version.dataset,
        file_path=unlabelled,
        filename=unlabelled.name,
        source=DatasetVersion.Source.PATH,
        actor=scientist,
    )
    set_policy({"task": "regression", "target": "cnt"})

    data = _request(client_for, scientist, registered_version, django_capture_on_commit_callbacks)

    job = Job.objects.get(kind=JobKind.EVALUATE)
    assert job.dataset_version == newest_version
    assert PromotionRequest.objects.get(pk=data["id"]).evaluation_job_id == job.pk


def test_the_evaluation_setting_is_checked_for_shape(team, owner, client_for, dataset_version, other_team):
    do_set_protected_aliases(team=team, aliases=["production"], actor=owner)
    client = client_for(owner)

    def put(evaluation):
        body = {"team": team.pk, "alias": "production", "conditions": [], "evaluation": evaluation}
        return client.put("/api/gate-policies/set/", body, format="json")

    dataset = dataset_version.dataset_id
    for evaluation, message in [
        ({"task": "regression", "target": "cnt"}, "dataset required"),
        ({"dataset": dataset + 1000, "task": "regression", "target": "cnt"}, "dataset: no dataset #"),
        ({"dataset": dataset, "task": "ranking", "target": "cnt"}, "task: 'ranking' is not one of"),
        (
            {"dataset": dataset, "task": "regression", "target": "cnt", "positive_label": "1"},
            "positive_label",
        ),
        (
            {"dataset": dataset, "task": "regression", "target": "cnt", "slice_columns": "season"},
            "slice_columns",
        ),
        ({"dataset": dataset, "task": "regression", "target": "cnt", "features": ["hr"]}, "unknown field"),
    ]:
        response = put(evaluation)
        assert response.status_code == 400, evaluation
        assert message in str(response.json()), (evaluation, response.json())

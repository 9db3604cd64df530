"""Accounting, usage rollups and team budgets (issue 16), through the API and the worker's function.

Jobs whose cost is under test run for real (``runners.execute.execute_job``, the task's plain
function); the rollup tests set the telemetry of submitted jobs instead, as ``test_metrics`` does,
because the rollup, not the runner, is under test there.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.registered_models import do_create_registered_model
from governance.actions.teams import do_set_membership
from governance.models import AuditEvent, DatasetVersion, TeamRole
from runners.execute import execute_job
from runners.models import Budget, Job, JobState
from tests.conftest import BIKE_HOURLY, _user, submit_training

PRICE = 36.0  # per hour: a second of wall time costs 0.01


@pytest.fixture
def priced(settings):
    """The cpu class at ``PRICE`` an hour (the settings' default price would make tiny numbers)."""
    classes = {name: dict(spec) for name, spec in settings.STEWARD_RESOURCE_CLASSES.items()}
    classes["cpu"]["price_per_hour"] = PRICE
    settings.STEWARD_RESOURCE_CLASSES = classes
    settings.STEWARD_CURRENCY = "EUR"


def test_a_finished_job_costs_its_wall_hours_at_its_class_price(
    priced, dataset_version, registered_model, scientist, training_spec, client_for
):
    job = submit_training(dataset_version, registered_model, scientist, training_spec)

    assert execute_job(job.pk) == JobState.SUCCEEDED

    job.refresh_from_db()
    assert job.wall_time_s > 0
    assert job.cost == pytest.approx(job.wall_time_s / 3600 * PRICE, rel=1e-12)
    answer = client_for(scientist).get(f"/api/jobs/{job.pk}/").json()
    assert (answer["cost"], answer["resource_class"], answer["hold_reason"]) == (job.cost, "cpu", "")


def test_a_killed_job_s_compute_is_paid_for_too(
    priced, dataset_version, registered_model, scientist, training_spec
):
    spec = training_spec | {"epochs": 1000, "batch_size": 1, "limits": {"wall_time_s": 1}}
    job = submit_training(dataset_version, registered_model, scientist, spec)

    assert execute_job(job.pk) == JobState.FAILED

    job.refresh_from_db()
    assert job.wall_time_s >= 1
    assert job.cost == pytest.approx(job.wall_time_s / 3600 * PRICE, rel=1e-12)


# Rollups -------------------------------------------------------------------------------------


@pytest.fixture
def fraud_model(admin, other_team, outsider):
    """A model and its data in the other team (``Fraud``), owned by a model owner there."""
    fraud_owner = _user("frank")
    do_set_membership(user=fraud_owner, team=other_team, role=TeamRole.MODEL_OWNER, actor=admin)
    dataset = do_create_dataset(team=other_team, name="bikes-fraud", actor=outsider)
    version = do_register_dataset_version(
        dataset=dataset,
        file_path=BIKE_HOURLY,
        filename="hour.csv",
        source=DatasetVersion.Source.PATH,
        actor=outsider,
    )
    model = do_create_registered_model(team=other_team, name="fraud-score", owner=fraud_owner, actor=outsider)
    return version, model


def _ran(job: Job, *, at: datetime.datetime, wall: float, cpu: float, cost: float, gpu=None) -> None:
    # Test set-up: a job submitted at ``at`` that used this much (the runner is not under test).
    Job.objects.filter(pk=job.pk).update(
        created_at=at, state="succeeded", wall_time_s=wall, cpu_time_s=cpu, gpu_time_s=gpu, cost=cost
    )


@pytest.fixture
def usage_jobs(dataset_version, registered_model, scientist, training_spec, fraud_model, outsider):
    """Mobility: two jobs in March 2026 on bike-demand, one in April; Fraud: one in March."""
    march, april = (
        datetime.datetime(2026, 3, 10, tzinfo=datetime.UTC),
        datetime.datetime(2026, 4, 2, tzinfo=datetime.UTC),
    )
    for at, wall, cpu, cost, gpu in (
        (march, 100, 80, 1.0, None),
        (march, 50, 40, 0.5, 25.0),
        (april, 10, 9, 0.25, None),
    ):
        _ran(
            submit_training(dataset_version, registered_model, scientist, training_spec),
            at=at,
            wall=wall,
            cpu=cpu,
            cost=cost,
            gpu=gpu,
        )
    fraud_version, fraud = fraud_model
    _ran(
        submit_training(fraud_version, fraud, outsider, training_spec), at=march, wall=360, cpu=300, cost=8.0
    )


def _row(team, model, month, jobs, wall, cpu, gpu, cost) -> dict:
    return {
        "team": team,
        "model": model,
        "month": month,
        "jobs": jobs,
        "wall_time_s": wall,
        "cpu_time_s": cpu,
        "gpu_time_s": gpu,
        "cost": cost,
        "currency": "EUR",
    }


def test_usage_rolls_up_per_team_model_and_month_and_hides_other_teams(
    priced, usage_jobs, client_for, scientist, outsider, compliance_officer
):
    def usage(user, **params):
        response = client_for(user).get("/api/usage/", params)
        assert response.status_code == 200, response.content
        return response.json()

    assert usage(compliance_officer, group_by="team", month="2026-03") == [
        _row("fraud", None, None, 1, 360.0, 300.0, 0.0, 8.0),
        _row("mobility", None, None, 2, 150.0, 120.0, 25.0, 1.5),
    ]
    # A team's members see their team only, however they ask.
    assert usage(scientist, group_by="team", month="2026-03") == [
        _row("mobility", None, None, 2, 150.0, 120.0, 25.0, 1.5)
    ]
    assert usage(scientist, group_by="team", team="fraud") == []
    assert usage(outsider, group_by="model,month") == [
        _row("fraud", "fraud-score", "2026-03", 1, 360.0, 300.0, 0.0, 8.0)
    ]
    assert usage(scientist, group_by="month") == [
        _row(None, None, "2026-03", 2, 150.0, 120.0, 25.0, 1.5),
        _row(None, None, "2026-04", 1, 10.0, 9.0, 0.0, 0.25),
    ]
    assert usage(compliance_officer, group_by="model", team="mobility") == [
        _row("mobility", "bike-demand", None, 3, 160.0, 129.0, 25.0, 1.75)
    ]


def test_usage_is_one_aggregate_query(
    priced, usage_jobs, client_for, fresh, compliance_officer, django_assert_num_queries
):
    client = client_for(fresh(compliance_officer))

    # 1 the user's platform and team roles (one UNION), 2 the rollup
    with django_assert_num_queries(2):
        response = client.get("/api/usage/", {"group_by": "team,model,month"})

    assert len(response.json()) == 3


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        (
            {"group_by": "colour"},
            "group_by",
            "one or more of team, model, month, comma-separated; not colour",
        ),
        ({"group_by": ","}, "group_by", "one or more of team, model, month, comma-separated; not empty"),
        ({"month": "2026-13"}, "month", None),
        ({"team": "no such team!"}, "team", None),
    ],
)
def test_bad_usage_parameters_are_a_400_naming_them(client_for, scientist, params, field, message):
    response = client_for(scientist).get("/api/usage/", params)

    assert response.status_code == 400
    assert list(response.json()) == [field]
    if message:
        assert response.json()[field] == [message]


def test_an_unknown_usage_parameter_is_a_400_naming_it(client_for, scientist):
    response = client_for(scientist).get("/api/usage/", {"groupby": "team"})

    assert response.status_code == 400
    assert response.json() == {"detail": "unknown query parameter(s): groupby; known: group_by, month, team"}


def test_the_usage_page_shows_the_month_per_team_per_model_and_the_budget_line(
    priced, usage_jobs, client, owner, team
):
    Budget.objects.create(team=team, monthly_limit=Decimal("2.00"), created_by=owner)  # test set-up
    client.force_login(owner)

    page = client.get("/usage/", {"month": "2026-03"}).content.decode()

    assert 'Usage <span class="muted">2026-03</span>' in page
    assert "bike-demand" in page
    assert "fraud-score" not in page
    assert "1.5000 EUR" in page
    assert "8.0000" not in page
    assert ">2.00<" in page  # the budget line's limit


# Budgets: set, hold, release -------------------------------------------------------------------


def test_only_a_team_s_owners_set_its_budget_and_each_change_is_audited(
    client_for, owner, scientist, outsider, team, admin
):
    refused = client_for(scientist).post(
        "/api/budgets/", {"team": team.pk, "monthly_limit": "10"}, format="json"
    )
    assert refused.status_code == 403
    assert not Budget.objects.exists()
    assert client_for(outsider).post(
        "/api/budgets/", {"team": team.pk, "monthly_limit": "10"}, format="json"
    ).json() == {"team": [f'Invalid pk "{team.pk}" - object does not exist.']}

    created = client_for(owner).post(
        "/api/budgets/", {"team": team.pk, "monthly_limit": "10.50"}, format="json"
    )
    assert created.status_code == 201, created.content
    budget_id = created.json()["id"]
    assert (created.json()["monthly_limit"], created.json()["holds_jobs"], created.json()["created_by"]) == (
        "10.50",
        True,
        "olivia",
    )
    again = client_for(admin).post("/api/budgets/", {"team": team.pk, "monthly_limit": "5"}, format="json")
    assert again.json() == {"team": ["Mobility already has a budget; change it instead"]}
    negative = client_for(owner).patch(f"/api/budgets/{budget_id}/", {"monthly_limit": "-1"}, format="json")
    assert negative.status_code == 400
    assert "monthly_limit" in negative.json()
    assert (
        client_for(owner)
        .patch(f"/api/budgets/{budget_id}/", {"monthly_limit": "20"}, format="json")
        .json()["monthly_limit"]
        == "20.00"
    )
    assert client_for(outsider).get("/api/budgets/").json()["results"] == []
    assert client_for(scientist).delete(f"/api/budgets/{budget_id}/").status_code == 403
    assert client_for(owner).delete(f"/api/budgets/{budget_id}/").status_code == 204

    assert list(
        AuditEvent.objects.filter(object_type="budget").order_by("id").values_list("action", "actor_label")
    ) == [("budget.create", "olivia"), ("budget.update", "olivia"), ("budget.delete", "olivia")]


@pytest.fixture
def spent_budget(
    priced, settings, dataset_version, registered_model, scientist, training_spec, owner, client_for
):
    """A budget of 1 EUR a month, set by the owner, passed by one real job: at 360,000 EUR an hour
    (100 a second) any run passes it (training starts a process and reads 17,379 rows)."""
    settings.STEWARD_RESOURCE_CLASSES["cpu"]["price_per_hour"] = 360_000.0
    response = client_for(owner).post(
        "/api/budgets/", {"team": registered_model.team_id, "monthly_limit": "1.00"}, format="json"
    )
    assert response.status_code == 201
    job = submit_training(dataset_version, registered_model, scientist, training_spec)
    assert execute_job(job.pk) == JobState.SUCCEEDED
    job.refresh_from_db()
    assert job.cost >= 1.0
    return job


def test_a_team_past_its_budget_has_its_next_job_held_with_the_reason_and_not_sent(
    spent_budget,
    dataset_version,
    registered_model,
    scientist,
    training_spec,
    client_for,
    django_capture_on_commit_callbacks,
):
    body = {
        "kind": "train",
        "dataset_version": dataset_version.pk,
        "registered_model": registered_model.pk,
        "spec": training_spec,
    }
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client_for(scientist).post("/api/jobs/", body, format="json")

    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["id"])
    month = timezone.localtime().strftime("%Y-%m")
    assert (job.state, job.dispatch_count, callbacks) == (JobState.HELD, 0, [])
    assert job.hold_reason == (
        f"held: team mobility has spent {spent_budget.cost:.4f} EUR of its 1.00 EUR budget for {month}; "
        "a model owner of mobility or a platform admin can release it"
    )
    assert response.json()["hold_reason"] == job.hold_reason
    # A held job is not run by a stray delivery either.
    assert execute_job(job.pk) == JobState.HELD


@pytest.fixture
def held_job(spent_budget, dataset_version, registered_model, scientist, training_spec) -> Job:
    job = submit_training(dataset_version, registered_model, scientist, training_spec)
    assert job.state == JobState.HELD
    return job


def test_an_owner_releases_a_held_job_and_it_runs(
    held_job, client_for, owner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).post(f"/api/jobs/{held_job.pk}/release/")

    assert response.status_code == 200
    held_job.refresh_from_db()
    assert (held_job.state, held_job.hold_reason, held_job.dispatch_count) == (JobState.QUEUED, "", 1)
    assert (
        AuditEvent.objects.filter(object_type="job", object_id=str(held_job.pk), action="job.release")
        .get()
        .actor_label
        == "olivia"
    )
    assert execute_job(held_job.pk) == JobState.SUCCEEDED


def test_a_data_scientist_may_not_release_a_held_job(held_job, client_for, scientist, outsider):
    assert client_for(scientist).post(f"/api/jobs/{held_job.pk}/release/").status_code == 403
    assert client_for(outsider).post(f"/api/jobs/{held_job.pk}/release/").status_code == 404

    held_job.refresh_from_db()
    assert held_job.state == JobState.HELD
    assert not AuditEvent.objects.filter(action="job.release").exists()


def test_the_job_page_shows_the_hold_and_offers_release_to_owners_only(held_job, client, owner, scientist):
    client.force_login(scientist)
    page = client.get(f"/jobs/{held_job.pk}/").content.decode()
    assert held_job.hold_reason.removeprefix("held: team") in page  # shown as "Team ... can release it"
    assert f"/jobs/{held_job.pk}/release/" not in page
    client.force_login(owner)
    assert f"/jobs/{held_job.pk}/release/" in client.get(f"/jobs/{held_job.pk}/").content.decode()

    response = client.post(f"/jobs/{held_job.pk}/release/")

    assert response.status_code == 302
    held_job.refresh_from_db()
    assert held_job.state == JobState.QUEUED


def test_raising_the_limit_does_not_release_held_jobs_but_admits_new_ones(
    held_job, client_for, owner, dataset_version, registered_model, scientist, training_spec
):
    budget = Budget.objects.get()
    client_for(owner).patch(f"/api/budgets/{budget.pk}/", {"monthly_limit": "999999999"}, format="json")

    held_job.refresh_from_db()
    assert held_job.state == JobState.HELD
    assert (
        submit_training(dataset_version, registered_model, scientist, training_spec).state == JobState.QUEUED
    )


def test_a_held_job_can_be_cancelled(held_job, client_for, scientist):
    response = client_for(scientist).post(f"/api/jobs/{held_job.pk}/cancel/")

    assert response.status_code == 200
    assert (response.json()["state"], response.json()["hold_reason"]) == ("cancelled", "")


def test_the_usage_page_form_sets_and_changes_a_budget_for_owners_only(client, team, owner, scientist):
    client.force_login(scientist)
    refused = client.post("/usage/", {"team": team.pk, "monthly_limit": "50", "holds_jobs": "on"})
    assert refused.status_code == 400  # the team is not among the scientist's choices
    assert not Budget.objects.exists()

    client.force_login(owner)
    for limit in ("50", "75.25"):
        response = client.post("/usage/", {"team": team.pk, "monthly_limit": limit, "holds_jobs": "on"})
        assert (response.status_code, response["Location"]) == (302, "/usage/")

    budget = Budget.objects.get()
    assert (budget.monthly_limit, budget.holds_jobs) == (Decimal("75.25"), True)
    assert list(
        AuditEvent.objects.filter(object_type="budget").order_by("id").values_list("action", flat=True)
    ) == [
        "budget.create",
        "budget.update",
    ]

"""Edges of issue 16's new inputs found by a hostile tester: each was a 500, a rule the API did not
enforce, or an audit event for nothing; each is now a 400 naming the field, or no event."""

from __future__ import annotations

import pytest

from governance.actions.registered_models import do_archive_registered_model
from governance.models import AuditEvent
from runners.models import Job, JobSchedule

SCHEDULE = {"name": "nightly", "kind": "train", "cron": "0 3 * * *", "cron_timezone": "UTC"}


def _train(client, dataset_version, registered_model, spec):
    body = {
        "kind": "train",
        "dataset_version": dataset_version.pk,
        "registered_model": registered_model.pk,
        "spec": spec,
    }
    return client.post("/api/jobs/", body, format="json")


@pytest.mark.parametrize(
    ("spec_part", "message"),
    [
        ({"not_before": "9999-12-31T23:59:59-05:00"}, "not_before: between years 1970 and 9000"),
        ({"not_before": "0001-01-01T00:00:00+05:00"}, "not_before: between years 1970 and 9000"),
        (
            {"start_window": {"start": "22:00", "end": "06:00", "timezone": "localtime"}},
            "start_window.timezone: unknown timezone 'localtime'",
        ),
        (
            {"start_window": {"start": "22:00", "end": "06:00", "timezone": "posix/Europe/Paris"}},
            "start_window.timezone: unknown timezone 'posix/Europe/Paris'",
        ),
    ],
)
def test_times_out_of_range_and_zones_outside_the_tz_database_are_a_400(
    client_for, scientist, dataset_version, registered_model, training_spec, spec_part, message
):
    response = _train(client_for(scientist), dataset_version, registered_model, training_spec | spec_part)

    assert response.status_code == 400
    assert response.json()["spec"][0].startswith(message)
    assert not Job.objects.exists()


@pytest.mark.parametrize("month", ["0000-01", "9999-12", "2026-12\n", "\uff12\uff10\uff12\uff16-12"])
def test_months_the_calendar_cannot_bound_are_a_400(client_for, scientist, month):
    response = client_for(scientist).get("/api/usage/", {"month": month})

    assert response.status_code == 400
    assert "a month as YYYY-MM" in response.json()["month"][0]


def test_the_usage_page_says_why_it_shows_this_month_instead(client, scientist):
    client.force_login(scientist)

    response = client.get("/usage/", {"month": "9999-12"})

    assert response.status_code == 200
    assert "month: a month as YYYY-MM between 1970-01 and 8999-12; got &#x27;9999-12&#x27;" in (
        response.content.decode()
    )


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 0 * " + ",".join(["1"] * 40) + " *", "the month-of-year field is longer than 64 characters"),
        ("0 0 * * " + ",".join(["mon"] * 20), "the day-of-week field is longer than 64 characters"),
        ("\uff15 * * * *", "ASCII characters only"),
    ],
)
def test_cron_fields_beat_cannot_store_are_a_400(
    client_for, scientist, dataset, dataset_version, registered_model, training_spec, cron, message
):
    body = SCHEDULE | {
        "dataset": dataset.pk,
        "registered_model": registered_model.pk,
        "spec": training_spec,
        "cron": cron,
    }

    response = client_for(scientist).post("/api/job-schedules/", body, format="json")

    assert response.status_code == 400
    assert message in response.json()["cron"][0]
    assert not JobSchedule.objects.exists()


def test_an_archived_model_takes_no_job_nor_schedule(
    client_for, scientist, owner, dataset, dataset_version, registered_model, training_spec
):
    do_archive_registered_model(model=registered_model, actor=owner)
    client = client_for(scientist)

    job = _train(client, dataset_version, registered_model, training_spec)
    schedule = client.post(
        "/api/job-schedules/",
        SCHEDULE | {"dataset": dataset.pk, "registered_model": registered_model.pk, "spec": training_spec},
        format="json",
    )

    message = f"model {registered_model.name} is archived; unarchive it to train new versions"
    assert (job.status_code, job.json()) == (400, {"registered_model": [message]})
    assert schedule.status_code == 400
    assert message in str(schedule.json())
    assert not Job.objects.exists()
    assert not JobSchedule.objects.exists()


def test_pausing_twice_is_a_400_and_a_change_of_nothing_records_nothing(
    client_for, scientist, owner, dataset, dataset_version, registered_model, training_spec, team
):
    client = client_for(scientist)
    created = client.post(
        "/api/job-schedules/",
        SCHEDULE | {"dataset": dataset.pk, "registered_model": registered_model.pk, "spec": training_spec},
        format="json",
    ).json()
    url = f"/api/job-schedules/{created['id']}/"
    assert client.post(f"{url}pause/").status_code == 200

    again = client.post(f"{url}pause/")
    unchanged = client.patch(url, {"cron": "0 3 * * *"}, format="json")

    assert (again.status_code, again.json()) == (400, {"is_enabled": ["nightly is already paused"]})
    assert unchanged.status_code == 200
    actions = AuditEvent.objects.filter(object_type="jobschedule").values_list("action", flat=True)
    assert sorted(actions) == ["job_schedule.create", "job_schedule.pause"]

    budget = client_for(owner).post("/api/budgets/", {"team": team.pk, "monthly_limit": "-0"}, format="json")
    assert budget.json()["monthly_limit"] == "0.00"
    assert (
        client_for(owner).patch(f"/api/budgets/{budget.json()['id']}/", {}, format="json").status_code == 200
    )
    events = AuditEvent.objects.filter(object_type="budget")
    assert [(event.action, event.after["monthly_limit"]) for event in events] == [("budget.create", "0.00")]


@pytest.mark.parametrize("zero", [0x0660, 0xFF10])  # Arabic-Indic and full-width digits
def test_an_id_in_other_digits_names_no_object(
    client_for, scientist, dataset_version, registered_model, training_spec, zero
):
    job = _train(client_for(scientist), dataset_version, registered_model, training_spec).json()
    # The same id in other digits: Python's int() reads it as the job's own id.
    written = str(job["id"]).translate({ord("0") + d: zero + d for d in range(10)})
    assert int(written) == job["id"]

    assert client_for(scientist).get(f"/api/jobs/{written}/").status_code == 404
    assert client_for(scientist).get(f"/api/jobs/{job['id']}/").status_code == 200

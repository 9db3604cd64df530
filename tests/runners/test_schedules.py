"""Recurring jobs (issue 16): job schedules through the API, their beat entries kept in step, and
their firing through the task beat calls."""

from __future__ import annotations

import datetime
import json

import pytest
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from governance.actions.datasets import do_register_dataset_version
from governance.actions.registered_models import do_archive_registered_model, do_delete_registered_model
from governance.actions.teams import do_revoke_membership
from governance.models import AuditEvent, DatasetVersion, Membership
from runners import tasks
from runners.actions import do_fail_job
from runners.models import Job, JobSchedule, JobState
from tests.conftest import BIKE_HOURLY


def _events(schedule_id: int) -> list[tuple[str, str, str]]:
    return list(
        AuditEvent.objects.filter(object_type="jobschedule", object_id=str(schedule_id))
        .order_by("id")
        .values_list("action", "actor_label", "on_behalf_of_label")
    )


@pytest.fixture
def body(dataset, registered_model, training_spec) -> dict:
    return {
        "name": "weekly retraining",
        "kind": "train",
        "dataset": dataset.pk,
        "registered_model": registered_model.pk,
        "spec": training_spec,
        "cron": "30 2 * * 1",
        "cron_timezone": "Europe/Paris",
    }


@pytest.fixture
def schedule(client_for, scientist, dataset_version, body) -> JobSchedule:
    response = client_for(scientist).post("/api/job-schedules/", body, format="json")
    assert response.status_code == 201, response.json()
    return JobSchedule.objects.get(pk=response.json()["id"])


def test_creating_a_schedule_keeps_a_crontab_beat_entry_and_is_audited(client_for, scientist, team, schedule):
    shown = client_for(scientist).get(f"/api/job-schedules/{schedule.pk}/").json()

    assert {
        key: shown[key] for key in ("team", "kind", "cron", "cron_timezone", "is_enabled", "created_by")
    } == {
        "team": team.pk,
        "kind": "train",
        "cron": "30 2 * * 1",
        "cron_timezone": "Europe/Paris",
        "is_enabled": True,
        "created_by": "dana",
    }
    task = PeriodicTask.objects.get()
    crontab = task.crontab
    assert (task.name, task.task, json.loads(task.args), task.enabled, task.interval) == (
        f"job-schedule-{schedule.pk}",
        "runners.tasks.fire_job_schedule",
        [schedule.pk],
        True,
        None,
    )
    # django-celery-beat's order is minute, hour, day of week, day of month, month.
    assert (
        crontab.minute,
        crontab.hour,
        crontab.day_of_month,
        crontab.month_of_year,
        crontab.day_of_week,
    ) == (
        "30",
        "2",
        "*",
        "*",
        "1",
    )
    assert str(crontab.timezone) == "Europe/Paris"
    assert schedule.periodic_task == task
    assert _events(schedule.pk) == [("job_schedule.create", "dana", "")]


def test_pause_resume_update_and_delete_keep_the_beat_entry_in_step(client_for, owner, schedule):
    client = client_for(owner)

    paused = client.post(f"/api/job-schedules/{schedule.pk}/pause/").json()["is_enabled"]
    entry_paused = PeriodicTask.objects.get().enabled
    resumed = client.post(f"/api/job-schedules/{schedule.pk}/resume/").json()["is_enabled"]
    entry_resumed = PeriodicTask.objects.get().enabled
    changed = client.patch(f"/api/job-schedules/{schedule.pk}/", {"cron": "0 4 1 * *"}, format="json")
    crontab = PeriodicTask.objects.get().crontab
    deleted = client.delete(f"/api/job-schedules/{schedule.pk}/")

    assert (paused, entry_paused, resumed, entry_resumed) == (False, False, True, True)
    assert changed.status_code == 200
    assert (crontab.minute, crontab.hour, crontab.day_of_month) == ("0", "4", "1")
    assert deleted.status_code == 204
    assert (JobSchedule.objects.count(), PeriodicTask.objects.count()) == (0, 0)
    assert CrontabSchedule.objects.count() == 2  # shared rows, reused by other entries
    assert [action for action, _, _ in _events(schedule.pk)] == [
        "job_schedule.create",
        "job_schedule.pause",
        "job_schedule.resume",
        "job_schedule.update",
        "job_schedule.delete",
    ]


@pytest.mark.parametrize(
    ("change", "errors"),
    [
        ({"cron": "61 * * * *"}, {"cron": ["not a cron expression: Invalid end range: 61 > 59."]}),
        (
            {"cron": "0 2 * *"},
            {
                "cron": [
                    "not a cron expression: "
                    "five fields (minute hour day-of-month month day-of-week), got 4: '0 2 * *'"
                ]
            },
        ),
        ({"cron": "0 2 * * funday"}, {"cron": ["not a cron expression: Invalid weekday literal 'funday'."]}),
        (
            {"cron_timezone": "Mars/Olympus"},
            {
                "cron_timezone": [
                    "cron_timezone: unknown timezone 'Mars/Olympus' (an IANA name such as 'Europe/Paris')"
                ]
            },
        ),
        (
            {"spec": {"not_before": "2099-01-01T00:00:00Z"}},
            {"spec": ["not_before: a schedule cannot start its jobs at one fixed time; use start_window"]},
        ),
        (
            {"spec": {"target": "nope", "features": ["temp"]}},
            {"spec": ["target: column 'nope' is not in the dataset"]},
        ),
        (
            {"registered_model": None},
            {"registered_model": ["a training job needs the model to register into"]},
        ),
    ],
)
def test_a_bad_schedule_is_a_400_naming_the_field(
    client_for, scientist, dataset_version, body, change, errors
):
    response = client_for(scientist).post("/api/job-schedules/", body | change, format="json")

    assert (response.status_code, response.json()) == (400, errors)
    assert (JobSchedule.objects.count(), PeriodicTask.objects.count()) == (0, 0)
    assert not AuditEvent.objects.filter(object_type="jobschedule").exists()


def test_who_may_see_and_change_schedules(client_for, viewer, outsider, schedule, body):
    as_viewer, as_outsider = client_for(viewer), client_for(outsider)

    answers = {
        "viewer lists": [row["id"] for row in as_viewer.get("/api/job-schedules/").json()["results"]],
        "viewer pauses": as_viewer.post(f"/api/job-schedules/{schedule.pk}/pause/").status_code,
        "viewer creates": as_viewer.post(
            "/api/job-schedules/", body | {"name": "mine"}, format="json"
        ).status_code,
        "outsider lists": as_outsider.get("/api/job-schedules/").json()["results"],
        "outsider reads": as_outsider.get(f"/api/job-schedules/{schedule.pk}/").status_code,
        "outsider deletes": as_outsider.delete(f"/api/job-schedules/{schedule.pk}/").status_code,
    }

    assert answers == {
        "viewer lists": [schedule.pk],
        "viewer pauses": 403,
        "viewer creates": 403,
        "outsider lists": [],
        "outsider reads": 404,
        "outsider deletes": 404,
    }
    schedule.refresh_from_db()
    assert (schedule.is_enabled, JobSchedule.objects.count(), PeriodicTask.objects.get().enabled) == (
        True,
        1,
        True,
    )
    assert [action for action, _, _ in _events(schedule.pk)] == ["job_schedule.create"]


def test_a_firing_submits_a_job_on_the_latest_version_as_the_creator(
    schedule, dataset, scientist, dataset_version, django_capture_on_commit_callbacks
):
    newer = do_register_dataset_version(
        dataset=dataset,
        file_path=BIKE_HOURLY,
        filename="hour.csv",
        source=DatasetVersion.Source.PATH,
        actor=scientist,
    )

    with django_capture_on_commit_callbacks(execute=True):
        job_id = tasks.fire_job_schedule(schedule.pk)

    job = Job.objects.get()
    schedule.refresh_from_db()
    assert (job.pk, job.schedule, job.dataset_version, job.created_by, job.state) == (
        job_id,
        schedule,
        newer,
        scientist,
        JobState.QUEUED,
    )
    assert job.dispatch_count == 1  # sent to the broker after commit, like any job
    assert (schedule.last_job, schedule.last_outcome) == (job, f"submitted job #{job.pk} on {newer}")
    assert AuditEvent.objects.get(object_type="job", action="job.submit").actor_label == "dana"
    assert _events(schedule.pk)[-1] == ("job_schedule.fire", "system", "dana")


def test_a_firing_does_not_stack_a_job_on_one_still_queued(schedule, dataset_version):
    first = tasks.fire_job_schedule(schedule.pk)

    second = tasks.fire_job_schedule(schedule.pk)

    schedule.refresh_from_db()
    assert (second, Job.objects.count(), schedule.last_job_id) == (None, 1, first)
    assert schedule.last_outcome == f"skipped: its previous job #{first} is still queued"
    assert [action for action, _, _ in _events(schedule.pk)][-2:] == [
        "job_schedule.fire",
        "job_schedule.skip",
    ]
    # Once the previous job has finished, the next firing submits again.
    do_fail_job(first, "test set-up: it ended")
    third = tasks.fire_job_schedule(schedule.pk)
    assert (third is not None, Job.objects.count()) == (True, 2)


def test_a_paused_schedule_fired_anyway_submits_nothing(client_for, owner, schedule, dataset_version):
    client_for(owner).post(f"/api/job-schedules/{schedule.pk}/pause/")

    assert tasks.fire_job_schedule(schedule.pk) is None

    schedule.refresh_from_db()
    assert (Job.objects.count(), schedule.last_outcome) == (0, "skipped: the schedule is paused")


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (
            lambda model, admin, team, user: do_archive_registered_model(model=model, actor=admin),
            "failed: its model bike-demand is archived; unarchive it or delete this schedule",
        ),
        (
            lambda model, admin, team, user: do_delete_registered_model(model=model, actor=admin),
            "failed: its model bike-demand was deleted",
        ),
        (
            lambda model, admin, team, user: do_revoke_membership(
                membership=Membership.objects.get(user=user, team=team), actor=admin
            ),
            "failed: dana may no longer submit jobs for this team (you may not change objects of this team)",
        ),
    ],
)
def test_a_firing_that_cannot_submit_fails_with_its_reason_audited(
    schedule, registered_model, admin, team, scientist, break_it, reason
):
    break_it(registered_model, admin, team, scientist)

    assert tasks.fire_job_schedule(schedule.pk) is None

    schedule.refresh_from_db()
    assert (Job.objects.count(), schedule.last_outcome, schedule.last_job) == (0, reason, None)
    event = AuditEvent.objects.filter(object_type="jobschedule").latest("id")
    assert (event.action, event.actor_label, event.after["outcome"]) == (
        "job_schedule.fire_fail",
        "system",
        reason,
    )


def test_a_firing_of_a_deleted_schedule_does_nothing(db):
    assert tasks.fire_job_schedule(123456) is None
    assert not AuditEvent.objects.exists()


def test_a_scheduled_job_waits_for_the_window_its_spec_asks_for(
    client_for, scientist, dataset_version, body, django_capture_on_commit_callbacks
):
    window = {"start": "22:00", "end": "06:00", "timezone": "Europe/Paris"}
    created = client_for(scientist).post(
        "/api/job-schedules/", body | {"spec": body["spec"] | {"start_window": window}}, format="json"
    )
    noon = datetime.datetime(2099, 6, 1, 12, 0, tzinfo=datetime.UTC)

    from runners.schedules import do_fire_job_schedule

    with django_capture_on_commit_callbacks(execute=True):
        job = do_fire_job_schedule(created.json()["id"], now=noon)

    job.refresh_from_db()
    assert (job.not_before, job.dispatch_count) == (
        datetime.datetime(2099, 6, 1, 20, 0, tzinfo=datetime.UTC),
        0,
    )


def test_the_schedule_pages_list_create_and_show_a_schedule(
    client, scientist, viewer, dataset, registered_model, dataset_version, training_spec
):
    client.force_login(scientist)
    form = {
        "name": "nightly",
        "kind": "train",
        "dataset": dataset.pk,
        "registered_model": registered_model.pk,
        "model_version": "",
        "spec": json.dumps(training_spec),
        "cron": "0 3 * * *",
        "cron_timezone": "UTC",
    }

    created = client.post("/jobs/schedules/", form)
    schedule = JobSchedule.objects.get()
    refused = client.post("/jobs/schedules/", form | {"name": "bad", "cron": "0 3 * *"})
    client.force_login(viewer)
    listed = client.get("/jobs/schedules/").content.decode()
    page = client.get(f"/jobs/schedules/{schedule.pk}/").content.decode()

    assert (created.status_code, created["Location"]) == (302, f"/jobs/schedules/{schedule.pk}/")
    assert refused.status_code == 400
    assert "five fields (minute hour day-of-month month day-of-week), got 4" in refused.content.decode()
    assert "nightly" in listed
    assert "<code>0 3 * * *</code>" in listed
    assert "Submits as</dt><dd>dana" in page
    assert "Pause" not in page  # a viewer may not change it
    assert PeriodicTask.objects.count() == 1

"""Start windows (issue 16, scheduling for cost): a job asking for an off-peak window stays queued,
unsent, until the window opens; then the sweeper sends it and a real worker runs it."""

from __future__ import annotations

import datetime
import time
import zoneinfo

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

import config.celery
from governance.models import AuditEvent, ModelVersion
from runners import tasks
from runners.actions import do_submit_job
from runners.models import Job, JobState
from runners.specs import SpecError
from runners.windows import start_time, window_opening

UTC = datetime.UTC
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
OVERNIGHT = {"start": "22:00", "end": "06:00", "timezone": "Europe/Paris"}
# A submission time far in the real future: the window it computes has not opened yet when the
# test runs, whatever the date, so only the sweeper's own rule keeps the job unsent.
FUTURE_NOON = datetime.datetime(2099, 6, 1, 12, 0, tzinfo=UTC)


def utc(*fields: int) -> datetime.datetime:
    return datetime.datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("window", "now", "expected"),
    [
        # Overnight in Paris (UTC+2 in June): 14:00 local is outside; next opening 22:00 local.
        (OVERNIGHT, utc(2026, 6, 1, 12, 0), utc(2026, 6, 1, 20, 0)),
        # 23:30 and 05:59 local are inside (either side of midnight): now.
        (OVERNIGHT, utc(2026, 6, 1, 21, 30), utc(2026, 6, 1, 21, 30)),
        (OVERNIGHT, utc(2026, 6, 2, 3, 59), utc(2026, 6, 2, 3, 59)),
        # 06:00 local: the window just closed; it opens again at 22:00 the same day.
        (OVERNIGHT, utc(2026, 6, 2, 4, 0), utc(2026, 6, 2, 20, 0)),
        # A daytime window in UTC (the default zone); after its end, tomorrow's start.
        ({"start": "09:00", "end": "17:00"}, utc(2026, 6, 1, 17, 0), utc(2026, 6, 2, 9, 0)),
        # Winter time in Paris (UTC+1): the same window opens an hour later in UTC.
        (OVERNIGHT, utc(2026, 1, 10, 12, 0), utc(2026, 1, 10, 21, 0)),
        # 02:30 on the night clocks spring forward (29 March 2026) does not exist in Paris: the
        # opening is read with the offset before the change, 01:30 UTC (03:30 local).
        (
            {"start": "02:30", "end": "04:00", "timezone": "Europe/Paris"},
            utc(2026, 3, 28, 12, 0),
            utc(2026, 3, 29, 1, 30),
        ),
    ],
)
def test_the_window_opens_now_inside_it_else_at_its_next_start(window, now, expected):
    assert window_opening(window, now) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"start_window": {"start": "25:00", "end": "06:00"}},
            "start_window.start: a 24-hour time HH:MM such as '22:00', got '25:00'",
        ),
        (
            {"start_window": {"start": "22:00", "end": "6"}},
            "start_window.end: a 24-hour time HH:MM such as '22:00', got '6'",
        ),
        (
            {"start_window": {"start": "22:00", "end": "22:00"}},
            "start_window.end: must differ from start (an empty window never opens)",
        ),
        (
            {"start_window": OVERNIGHT | {"timezone": "Mars/Olympus"}},
            "start_window.timezone: unknown timezone 'Mars/Olympus' (an IANA name such as 'Europe/Paris')",
        ),
        (
            {"start_window": OVERNIGHT | {"zone": "UTC"}},
            "start_window: unknown key(s) zone; allowed: start, end, timezone",
        ),
        (
            {"start_window": "22:00-06:00"},
            'start_window: a JSON object {"start": "HH:MM", "end": "HH:MM", "timezone": ...}',
        ),
        (
            {"not_before": "2026-12-24T22:00:00"},
            "not_before: give the UTC offset (e.g. +01:00 or Z): '2026-12-24T22:00:00'",
        ),
        ({"not_before": "Christmas eve"}, "not_before: not an ISO 8601 time: 'Christmas eve'"),
        (
            {"not_before": "2026-12-24T22:00:00+01:00", "start_window": OVERNIGHT},
            "not_before: give either start_window or not_before, not both",
        ),
    ],
)
def test_a_bad_window_is_a_400_naming_the_field(
    client_for, scientist, dataset_version, registered_model, training_spec, spec, message
):
    with pytest.raises(SpecError):
        start_time(spec, FUTURE_NOON)
    body = {
        "kind": "train",
        "dataset_version": dataset_version.pk,
        "registered_model": registered_model.pk,
        "spec": training_spec | spec,
    }

    response = client_for(scientist).post("/api/jobs/", body, format="json")

    assert (response.status_code, response.json()) == (400, {"spec": [message]})
    assert not Job.objects.exists()


def test_a_job_inside_its_window_is_sent_at_once(
    dataset_version, registered_model, scientist, training_spec, django_capture_on_commit_callbacks
):
    inside = timezone.now()
    spec = training_spec | {"start_window": {"start": "00:00", "end": "23:59", "timezone": "UTC"}}
    if inside.time() >= datetime.time(23, 59):  # the one minute this window leaves out
        inside -= datetime.timedelta(minutes=2)

    with django_capture_on_commit_callbacks(execute=True):
        job = do_submit_job(
            kind="train",
            dataset_version=dataset_version,
            registered_model=registered_model,
            spec=spec,
            actor=scientist,
            now=inside,
        )

    job.refresh_from_db()
    assert (job.not_before, job.dispatch_count, job.state_detail) == (
        inside,
        1,
        "waits for a worker of resource class 'cpu' "
        "(Celery queue 'celery': celery -A config worker -Q celery)",
    )
    assert job.spec["start_window"] == {"start": "00:00", "end": "23:59", "timezone": "UTC"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_job_outside_its_window_waits_unsent_then_the_sweeper_sends_it_and_a_worker_runs_it(
    client_for, scientist, dataset_version, registered_model, training_spec
):
    job = do_submit_job(
        kind="train",
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=training_spec | {"start_window": OVERNIGHT},
        actor=scientist,
        now=FUTURE_NOON,
    )
    # transaction=True: the submission's on_commit send has run already (and sent nothing).
    opening = datetime.datetime(2099, 6, 1, 22, 0, tzinfo=PARIS)
    job.refresh_from_db()
    assert (job.state, job.not_before, job.dispatch_count, job.dispatched_at) == (
        JobState.QUEUED,
        opening,
        0,
        None,
    )
    assert tasks.redispatch_queued_jobs() == []  # the sweeper leaves it too
    shown = client_for(scientist).get(f"/api/jobs/{job.pk}/").json()
    assert (shown["state"], shown["not_before"], shown["state_detail"]) == (
        "queued",
        "2099-06-01T20:00:00Z",
        "waits for its window until 2099-06-01T22:00:00+02:00",
    )
    page = client_for(scientist)
    page.force_login(scientist)
    assert "Waits for its window until 2099-06-01 22:00 CEST" in page.get(f"/jobs/{job.pk}/").content.decode()

    # The window opens (test set-up: its opening moved to the past through the model).
    Job.objects.filter(pk=job.pk).update(not_before=timezone.now() - datetime.timedelta(seconds=1))

    assert tasks.redispatch_queued_jobs() == [job.pk]
    assert tasks.redispatch_queued_jobs() == []  # sent once
    app = config.celery.app
    queue = app.amqp.router.route({}, "runners.tasks.run_job")["queue"].name
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue], shutdown_timeout=60):
        deadline = time.monotonic() + 300
        while Job.objects.get(pk=job.pk).state in (JobState.QUEUED, JobState.RUNNING):
            assert time.monotonic() < deadline, "the worker did not finish the job within 300 s"
            time.sleep(0.2)

    job.refresh_from_db()
    assert (job.state, job.attempt, job.dispatch_count, job.state_detail) == (JobState.SUCCEEDED, 1, 1, "")
    assert list(ModelVersion.objects.values_list("source_job_id", flat=True)) == [job.pk]
    assert list(
        AuditEvent.objects.filter(object_type="job", object_id=str(job.pk))
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["job.submit", "job.start", "job.succeed"]


@pytest.mark.parametrize(
    "given",
    # +16:00 and beyond: Python reads them, PostgreSQL stores offsets up to +-15:59 only (issue 13).
    ["2099-12-24T22:00:00+01:00", "2099-12-25T13:00:00+16:00", "2099-12-24T21:00:00Z"],
)
def test_a_not_before_time_is_kept_as_given_and_waits(
    client_for,
    scientist,
    dataset_version,
    registered_model,
    training_spec,
    django_capture_on_commit_callbacks,
    given,
):
    body = {
        "kind": "train",
        "dataset_version": dataset_version.pk,
        "registered_model": registered_model.pk,
        "spec": training_spec | {"not_before": given},
    }

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(scientist).post("/api/jobs/", body, format="json")

    assert response.status_code == 201
    job = Job.objects.get()
    assert (job.not_before, job.dispatch_count, job.spec["not_before"]) == (
        datetime.datetime(2099, 12, 24, 21, 0, tzinfo=UTC),
        0,
        given,
    )
    assert response.json()["state_detail"] == "waits for its window until 2099-12-24T21:00:00+00:00"

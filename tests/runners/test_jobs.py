"""Jobs end to end through ``runners.execute.execute_job`` (the plain function behind the task)."""

from __future__ import annotations

import hashlib
import socket
import threading
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

import config.celery
from governance.datafiles import read_frame
from governance.models import AuditEvent, Dataset, ModelVersion
from lineage.models import LineageEdge
from runners import launcher, tasks, training
from runners.actions import JOBS, claim_job, do_cancel_job, do_submit_job
from runners.execute import execute_job
from runners.models import Job, JobKind, JobState
from tests.conftest import BIKE_FEATURES


def _job_events(job) -> list[tuple[str, str]]:
    return list(
        AuditEvent.objects.filter(object_type="job", object_id=str(job.pk))
        .order_by("id")
        .values_list("action", "actor_label")
    )


@pytest.fixture
def training_job(dataset_version, registered_model, scientist, training_spec) -> Job:
    return do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=training_spec,
        actor=scientist,
    )


def test_training_job_runs_queued_running_succeeded(
    training_job, dataset_version, registered_model, settings
):
    assert (training_job.state, training_job.progress, training_job.started_at) == (
        JobState.QUEUED,
        0.0,
        None,
    )

    assert execute_job(training_job.pk) == JobState.SUCCEEDED

    job = Job.objects.get(pk=training_job.pk)
    version = job.output_model_version
    assert (job.state, job.progress, job.error) == (JobState.SUCCEEDED, 1.0, "")
    assert job.created_at <= job.started_at <= job.heartbeat_at <= job.finished_at
    assert [record["epoch"] for record in job.history] == [1, 2, 3]
    assert job.metrics == version.metrics
    assert set(job.metrics) == {"loss", "rmse", "mae", "r2", "train_rows", "validation_rows"}
    assert job.device == str(training.select_device())
    lines = job.log_tail.splitlines()
    assert lines[0] == f"running on {socket.gethostname()}: class cpu, no GPU"
    assert (job.resource_class, job.gpus) == ("cpu", 0)
    lines = lines[1:]
    assert lines[0] == f"training on 8645 rows, 11 features, device {job.device}"
    assert lines[1:] == [
        *[line for line in lines[1:] if line.startswith("epoch 1/3 ")],
        "checkpoint saved at epoch 1",
        *[line for line in lines[1:] if line.startswith("epoch 2/3 ")],
        "checkpoint saved at epoch 2",
        *[line for line in lines[1:] if line.startswith("epoch 3/3 ")],
    ]
    # Accounting (issue 16): the child read the whole file, ran and used memory; no GPU here.
    assert (job.rows_read, job.bytes_read) == (17379, dataset_version.path.stat().st_size)
    assert min(job.wall_time_s, job.cpu_time_s, job.peak_rss_mb) > 0
    if job.device == "cpu":
        assert (job.gpu_time_s, job.peak_gpu_mem_mb) == (None, None)
    assert job.limits == {
        "wall_time_s": 86400,
        "soft_wall_time_s": None,
        "memory_mb": 8192,
        "threads": settings.STEWARD_JOB_THREADS,
    }
    # The checkpoints served their purpose once the version is registered.
    assert not (settings.ARTIFACT_ROOT / "checkpoints" / f"job-{job.pk}").exists()
    assert (version.model, version.version, version.source_job_id) == (registered_model, 1, job.pk)
    assert (version.training_dataset_version, version.training_spec) == (dataset_version, job.spec)
    assert version.signature == {
        "task": "regression",
        "target": "cnt",
        "features": BIKE_FEATURES,
        "categorical": ["season", "weathersit"],
    }
    assert (
        hashlib.sha256((settings.ARTIFACT_ROOT / version.artifact).read_bytes()).hexdigest() == version.sha256
    )
    assert _job_events(job) == [("job.submit", "dana"), ("job.start", "system"), ("job.succeed", "system")]
    start, succeed = AuditEvent.objects.filter(action__in=["job.start", "job.succeed"]).order_by("id")
    assert (start.before, start.after) == ({"state": "queued"}, {"state": "running"})
    assert (succeed.before["state"], succeed.after["state"]) == ("running", "succeeded")
    assert succeed.after["output_model_version_id"] == version.pk


def test_the_task_is_a_thin_wrapper_over_execute_job(training_job):
    assert tasks.run_job(training_job.pk) == JobState.SUCCEEDED
    assert Job.objects.get(pk=training_job.pk).output_model_version.version == 1


def test_second_training_job_registers_version_2(training_job, dataset_version, registered_model, scientist):
    execute_job(training_job.pk)
    second = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=training_job.spec | {"epochs": 1},
        actor=scientist,
    )

    assert execute_job(second.pk) == JobState.SUCCEEDED
    assert [v.version for v in registered_model.versions.all()] == [2, 1]


def test_inference_job_writes_predictions_as_a_dataset_version(
    model_version, dataset_version, scientist, settings
):
    job = do_submit_job(
        kind=JobKind.INFER,
        dataset_version=dataset_version,
        model_version=model_version,
        spec={"where": {"yr": 1}},
        actor=scientist,
    )

    assert execute_job(job.pk) == JobState.SUCCEEDED

    job.refresh_from_db()
    predictions = job.output_dataset_version
    assert (predictions.dataset.name, predictions.version, predictions.source) == (
        "bike-demand-predictions",
        1,
        "job",
    )
    assert predictions.dataset.team == dataset_version.dataset.team
    assert predictions.row_count == 8734
    assert predictions.column_names == [*dataset_version.column_names, "prediction"]
    assert predictions.schema[-1] == {"name": "prediction", "dtype": "float64"}
    assert predictions.original_filename == f"bike-demand-predictions-job{job.pk}.csv"
    assert predictions.created_by == scientist
    assert job.metrics == {"rows": 8734.0}
    frame = read_frame(predictions.path, predictions.format)
    assert set(frame["yr"]) == {1}
    assert int(frame["instant"].iloc[0]) == 8646
    assert _job_events(job) == [("job.submit", "dana"), ("job.start", "system"), ("job.succeed", "system")]


def test_inference_into_a_named_dataset_appends_versions(model_version, dataset_version, scientist):
    jobs = [
        do_submit_job(
            kind=JobKind.INFER,
            dataset_version=dataset_version,
            model_version=model_version,
            spec={"where": {"yr": 1, "mnth": 12}, "output_dataset": "december-forecast"},
            actor=scientist,
        )
        for _ in range(2)
    ]

    assert [execute_job(job.pk) for job in jobs] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    dataset = Dataset.objects.get(name="december-forecast")
    assert [(v.version, v.row_count) for v in dataset.versions.all()] == [(2, 742), (1, 742)]


def test_inference_refuses_a_tampered_artifact(model_version, dataset_version, scientist, settings):
    (settings.ARTIFACT_ROOT / model_version.artifact).write_bytes(b"swapped weights")
    job = do_submit_job(
        kind=JobKind.INFER,
        dataset_version=dataset_version,
        model_version=model_version,
        spec={},
        actor=scientist,
    )

    assert execute_job(job.pk) == JobState.FAILED

    job.refresh_from_db()
    assert job.error == "artifact of bike-demand v1 does not match its recorded sha256"
    assert job.output_dataset_version is None
    assert Dataset.objects.filter(name="bike-demand-predictions").count() == 0


def test_training_on_a_filter_matching_no_rows_fails(
    dataset_version, registered_model, scientist, training_spec
):
    job = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=training_spec | {"where": {"yr": 5}},
        actor=scientist,
    )

    assert execute_job(job.pk) == JobState.FAILED
    assert Job.objects.get(pk=job.pk).error == "no rows of bike-sharing-hourly v1 match where={'yr': 5}"
    assert ModelVersion.objects.count() == 0


def test_executing_a_finished_job_again_does_nothing(training_job):
    execute_job(training_job.pk)
    finished = Job.objects.get(pk=training_job.pk)
    events = AuditEvent.objects.count()

    assert execute_job(training_job.pk) == JobState.SUCCEEDED

    again = Job.objects.get(pk=training_job.pk)
    assert ModelVersion.objects.count() == 1
    assert AuditEvent.objects.count() == events
    assert (again.finished_at, again.log_tail, again.history) == (
        finished.finished_at,
        finished.log_tail,
        finished.history,
    )


def test_duplicate_delivery_of_a_job_running_on_a_live_worker_does_nothing(training_job):
    # Issue 16 changed this contract: a redelivery used to fail a running job as orphaned, even
    # while its worker was still training it (Redis redelivers after its visibility timeout).
    assert claim_job(training_job.pk) is True  # a live worker took it; its heartbeat is fresh
    claimed = Job.objects.get(pk=training_job.pk)
    events = AuditEvent.objects.count()

    assert execute_job(training_job.pk) == JobState.RUNNING

    job = Job.objects.get(pk=training_job.pk)
    assert (job.state, job.attempt, job.error) == (JobState.RUNNING, 1, "")
    assert (job.started_at, job.heartbeat_at) == (claimed.started_at, claimed.heartbeat_at)
    assert AuditEvent.objects.count() == events
    assert ModelVersion.objects.count() == 0


def _worker_died(job_id: int) -> None:
    """Test set-up: the worker running the job last beat two hours ago (telemetry, not audited)."""
    Job.objects.filter(pk=job_id).update(heartbeat_at=timezone.now() - timedelta(hours=2))


def test_delivery_of_a_job_whose_worker_died_runs_it_again_as_attempt_2(training_job):
    assert claim_job(training_job.pk) is True
    # The dead attempt got through an epoch before its worker died.
    Job.objects.filter(pk=training_job.pk).update(history=[{"epoch": 1, "train_loss": 9.9}], progress=0.4)
    _worker_died(training_job.pk)

    assert execute_job(training_job.pk) == JobState.SUCCEEDED

    job = Job.objects.get(pk=training_job.pk)
    assert (job.attempt, job.output_model_version.version) == (2, 1)
    # The retry's own epochs only (a hostile tester saw both attempts' interleaved).
    assert [record["epoch"] for record in job.history] == list(range(1, job.spec["epochs"] + 1))
    assert ModelVersion.objects.count() == 1
    assert _job_events(job) == [
        ("job.submit", "dana"),
        ("job.start", "system"),
        ("job.retry", "system"),
        ("job.succeed", "system"),
    ]
    retry = AuditEvent.objects.get(action="job.retry")
    assert (retry.before, retry.after) == (
        {"state": "running", "attempt": 1},
        {"state": "running", "attempt": 2},
    )


class WorkerKilled(BaseException):
    """Stands for the worker process dying mid-run: nothing in it catches this, like a kill -9."""


def test_a_job_whose_worker_always_dies_fails_after_the_bounded_attempts(training_job, settings, monkeypatch):
    settings.STEWARD_JOB_MAX_ATTEMPTS = 2

    def die(self, on_event, check, **options):
        raise WorkerKilled

    monkeypatch.setattr(launcher.Launch, "run", die)
    for attempt in (1, 2):
        with pytest.raises(WorkerKilled):
            execute_job(training_job.pk)
        assert Job.objects.get(pk=training_job.pk).attempt == attempt
        _worker_died(training_job.pk)

    assert execute_job(training_job.pk) == JobState.FAILED

    job = Job.objects.get(pk=training_job.pk)
    assert (job.state, job.attempt) == (JobState.FAILED, 2)
    assert job.error == (
        "the worker running this job stopped before it finished (killed or lost) on each of 2 attempts; "
        "resubmit it"
    )
    assert ModelVersion.objects.count() == 0
    assert _job_events(job) == [
        ("job.submit", "dana"),
        ("job.start", "system"),
        ("job.retry", "system"),
        ("job.fail", "system"),
    ]
    assert execute_job(training_job.pk) == JobState.FAILED


def test_a_late_finisher_that_lost_its_claim_writes_nothing(training_job, monkeypatch):
    """Attempt 1 trains on while its heartbeat looked dead; attempt 2 re-claims the job; attempt 1
    then tries to register its version: refused (the fencing token of issue 16)."""
    real_run = launcher.Launch.run
    second_delivery = []

    def train_then_lose_the_claim(self, on_event, check, **options):
        result = real_run(self, on_event, check, **options)
        _worker_died(training_job.pk)
        second_delivery.append(JOBS.begin(training_job.pk))  # another worker's delivery claims it
        return result

    monkeypatch.setattr(launcher.Launch, "run", train_then_lose_the_claim)

    assert execute_job(training_job.pk) == JobState.RUNNING

    job = Job.objects.get(pk=training_job.pk)
    assert second_delivery == [2]
    assert (job.state, job.attempt, job.output_model_version, job.finished_at) == (
        JobState.RUNNING,
        2,
        None,
        None,
    )
    assert ModelVersion.objects.count() == 0
    assert LineageEdge.objects.count() == 0
    assert _job_events(job) == [("job.submit", "dana"), ("job.start", "system"), ("job.retry", "system")]


def test_a_run_that_lost_its_claim_stops_its_child_and_writes_no_telemetry(training_job, monkeypatch):
    # Its heartbeat and epochs would otherwise keep the job looking alive and mix its history into
    # the attempt that took over (issue 16, hostile tester).
    real_run = launcher.Launch.run

    def train_after_a_takeover(self, on_event, check, **options):
        Job.objects.filter(pk=training_job.pk).update(attempt=F("attempt") + 1)  # another worker's claim
        return real_run(self, on_event, check, **options)

    monkeypatch.setattr(launcher.Launch, "run", train_after_a_takeover)

    assert execute_job(training_job.pk) == JobState.RUNNING

    job = Job.objects.get(pk=training_job.pk)
    assert (job.attempt, job.history, job.progress) == (2, [], 0.0)
    assert "epoch 1/" not in job.log_tail
    assert ModelVersion.objects.count() == 0


@pytest.mark.parametrize("recovered_by", ["delivery", "stale sweep"])
def test_a_job_cancelled_while_its_worker_was_dying_ends_cancelled_not_retried(
    training_job, owner, settings, monkeypatch, recovered_by
):
    settings.STEWARD_JOB_HEARTBEAT_TIMEOUT_S = 600
    sent = []
    monkeypatch.setattr(config.celery.app, "send_task", lambda name, **options: sent.append(name))
    assert claim_job(training_job.pk) is True
    do_cancel_job(job=training_job, actor=owner)
    _worker_died(training_job.pk)

    if recovered_by == "delivery":
        assert execute_job(training_job.pk) == JobState.CANCELLED
    else:
        assert tasks.fail_stale_jobs() == []

    job = Job.objects.get(pk=training_job.pk)
    assert (job.state, job.attempt, job.error) == (
        JobState.CANCELLED,
        1,
        "cancelled; its worker was lost before it stopped",
    )
    assert sent == []
    assert [action for action, _ in _job_events(job)] == [
        "job.submit",
        "job.start",
        "job.cancel",
        "job.cancelled",
    ]


def test_missing_job_is_reported_not_raised(db):
    assert execute_job(424242) == "missing"


def test_cancel_a_queued_job_cancels_it_at_once(client_for, training_job, scientist):
    client = client_for(scientist)

    response = client.post(f"/api/jobs/{training_job.pk}/cancel/")
    again = client.post(f"/api/jobs/{training_job.pk}/cancel/")

    assert response.status_code == 200
    assert (response.json()["state"], response.json()["is_cancel_requested"]) == ("cancelled", True)
    assert response.json()["error"] == "cancelled by dana before it started"
    assert (again.status_code, again.json()) == (
        400,
        {"state": [f"job #{training_job.pk} already cancelled; nothing to cancel"]},
    )
    assert execute_job(training_job.pk) == JobState.CANCELLED
    job = Job.objects.get(pk=training_job.pk)
    assert (job.started_at, job.history) == (None, [])
    assert ModelVersion.objects.count() == 0
    assert _job_events(job) == [("job.submit", "dana"), ("job.cancel", "dana")]


def test_cancel_a_running_job_stops_it_at_the_next_check(client_for, training_job, owner, monkeypatch):
    """The owner presses cancel as epoch 2 is reported; the worker stops the child at once."""
    answers = []
    real_run = launcher.Launch.run

    def train_and_press_cancel_at_epoch_2(self, on_event, check, **options):
        def on_event_with_cancel(event):
            if event.get("event") == "epoch" and event["epoch"] == 2:
                answers.append(client_for(owner).post(f"/api/jobs/{training_job.pk}/cancel/"))
                # Pressed twice: refused, so the trail holds one cancel request, not two.
                answers.append(client_for(owner).post(f"/api/jobs/{training_job.pk}/cancel/"))
            on_event(event)

        return real_run(self, on_event_with_cancel, check, **options)

    monkeypatch.setattr(launcher.Launch, "run", train_and_press_cancel_at_epoch_2)

    assert execute_job(training_job.pk) == JobState.CANCELLED

    answer, again = answers
    assert (answer.status_code, answer.json()["state"], answer.json()["is_cancel_requested"]) == (
        200,
        "running",
        True,
    )
    assert (again.status_code, again.json()) == (
        400,
        {"state": [f"job #{training_job.pk} is already stopping after a cancel request"]},
    )
    job = Job.objects.get(pk=training_job.pk)
    assert (job.state, job.error) == (JobState.CANCELLED, "cancelled while running")
    assert [record["epoch"] for record in job.history] == [1]
    assert job.output_model_version is None
    assert ModelVersion.objects.count() == 0
    assert _job_events(job) == [
        ("job.submit", "dana"),
        ("job.start", "system"),
        ("job.cancel", "olivia"),
        ("job.cancelled", "system"),
    ]


def test_fail_stale_jobs_fails_only_jobs_without_a_recent_heartbeat(
    training_job, dataset_version, registered_model, scientist, settings
):
    settings.STEWARD_JOB_HEARTBEAT_TIMEOUT_S = 600
    # On its last attempt (issue 16: with attempts left the sweep sends the job again instead).
    settings.STEWARD_JOB_MAX_ATTEMPTS = 1
    alive = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=training_job.spec,
        actor=scientist,
    )
    for job in (training_job, alive):
        claim_job(job.pk)
    # The worker running training_job last reported two hours ago (a telemetry field, not audited).
    Job.objects.filter(pk=training_job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=2))

    assert tasks.fail_stale_jobs() == [training_job.pk]
    assert tasks.fail_stale_jobs() == []

    stale = Job.objects.get(pk=training_job.pk)
    assert (stale.state, stale.error) == (
        JobState.FAILED,
        "no heartbeat from the worker for over 600 s on its last attempt (1 of 1); the worker was lost",
    )
    assert Job.objects.get(pk=alive.pk).state == JobState.RUNNING
    assert _job_events(stale)[-1] == ("job.fail", "system")


def test_the_stale_sweep_sends_a_job_with_attempts_left_again_and_its_delivery_runs_it(
    training_job, settings, monkeypatch
):
    # Issue 16: a killed worker's task may be redelivered while its heartbeat still looks alive
    # (that delivery does nothing); once the heartbeat is stale, the sweep sends the job again.
    settings.STEWARD_JOB_HEARTBEAT_TIMEOUT_S = 600
    sent = []
    monkeypatch.setattr(config.celery.app, "send_task", lambda name, **options: sent.append((name, options)))
    assert claim_job(training_job.pk) is True
    Job.objects.filter(pk=training_job.pk).update(dispatch_count=1)  # its first send reached the broker
    _worker_died(training_job.pk)
    events = AuditEvent.objects.count()

    assert tasks.fail_stale_jobs() == []

    job = Job.objects.get(pk=training_job.pk)
    assert sent == [
        # The re-send goes to the job's resource class's queue, as the first send did.
        (
            "runners.tasks.run_job",
            {"args": [job.pk], "task_id": job.celery_task_id, "retry": True, "queue": "celery"},
        )
    ]
    assert (job.state, job.attempt, job.dispatch_count) == (JobState.RUNNING, 1, 2)
    # A re-send has its own task id (Celery keeps results by id: see Lifecycle.enqueue).
    assert job.celery_task_id != training_job.celery_task_id
    assert AuditEvent.objects.count() == events  # a send is delivery telemetry, not a change
    assert execute_job(job.pk) == JobState.SUCCEEDED
    job.refresh_from_db()
    assert (job.attempt, ModelVersion.objects.count()) == (2, 1)
    assert [action for action, _ in _job_events(job)][-2:] == ["job.retry", "job.succeed"]


@pytest.fixture
def unreachable_broker(settings, monkeypatch):
    """Point the Celery app at a port nobody listens on; restore it after.

    Celery prefers the CELERY_BROKER_URL environment variable (as CI sets it) over its conf.
    Kombu keeps pools per broker URL, so forgetting the app's cached pools suffices.
    """
    app = config.celery.app
    url = "redis://127.0.0.1:1/0"

    def forget_pools():
        app._pool = None
        app.amqp._producer_pool = None

    saved = app.conf.broker_url
    settings.CELERY_BROKER_URL = url
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    app.conf.broker_url = url
    forget_pools()
    target = app.connection_for_write()
    assert (target.hostname, target.port) == ("127.0.0.1", 1)
    yield
    monkeypatch.undo()
    app.conf.broker_url = saved
    forget_pools()


def test_broker_outage_leaves_the_submitted_job_queued_with_the_dispatch_error(
    client_for,
    scientist,
    dataset_version,
    registered_model,
    training_spec,
    unreachable_broker,
    django_capture_on_commit_callbacks,
):
    # Issue 16 changed this contract: a broker outage used to fail the job at once; now the row
    # stays queued, records the failed send, and the sweeper sends it when the broker is back.
    body = {
        "kind": "train",
        "dataset_version": dataset_version.pk,
        "registered_model": registered_model.pk,
        "spec": training_spec,
    }

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client_for(scientist).post("/api/jobs/", body, format="json")
        # Nothing is sent before the transaction commits.
        assert Job.objects.get().dispatch_error == ""

    assert response.status_code == 201
    assert len(callbacks) == 1
    job = Job.objects.get()
    assert (job.state, job.error, job.dispatch_count, job.dispatched_at) == (JobState.QUEUED, "", 0, None)
    assert job.dispatch_error == (
        "could not reach the task broker to start the job: "
        "Error 111 connecting to 127.0.0.1:1. Connection refused."
    )
    assert _job_events(job) == [("job.submit", "dana")]


def test_the_sweeper_fails_a_job_sent_too_often_and_stops_at_a_down_broker(
    training_job, dataset_version, registered_model, scientist, settings, unreachable_broker
):
    settings.STEWARD_JOB_MAX_DISPATCHES = 3
    never_sent = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=training_job.spec,
        actor=scientist,
    )
    # Test set-up: sent 3 times, the last an hour ago, and no worker ever took it.
    Job.objects.filter(pk=training_job.pk).update(
        dispatch_count=3, dispatched_at=timezone.now() - timedelta(hours=1)
    )

    assert tasks.redispatch_queued_jobs() == []

    lost, waiting = Job.objects.get(pk=training_job.pk), Job.objects.get(pk=never_sent.pk)
    assert (lost.state, lost.dispatch_count) == (JobState.FAILED, 3)
    assert lost.error == (
        "sent to the task queue 3 times and no worker started it; is a worker consuming its queue?"
    )
    assert _job_events(lost) == [("job.submit", "dana"), ("job.fail", "system")]
    assert (waiting.state, waiting.dispatch_count) == (JobState.QUEUED, 0)
    assert waiting.dispatch_error.startswith("could not reach the task broker to start the job: Error 111")
    assert _job_events(waiting) == [("job.submit", "dana")]


def test_the_sweeper_backs_off_a_job_that_waits_behind_others(training_job, settings, monkeypatch):
    # A queued job is sent again after 300 s, then after 600 s, 1,200 s...: one waiting behind long
    # jobs gets a duplicate message per doubling of its wait, not every 300 s (issue 16).
    settings.STEWARD_JOB_REDISPATCH_AFTER_S = 300
    sent = []
    monkeypatch.setattr(config.celery.app, "send_task", lambda name, **options: sent.append(options["args"]))
    waits = {}
    for count, seconds_ago in ((1, 299), (1, 301), (2, 599), (2, 601), (3, 1199), (3, 1201)):
        Job.objects.filter(pk=training_job.pk).update(
            dispatch_count=count, dispatched_at=timezone.now() - timedelta(seconds=seconds_ago)
        )
        waits[(count, seconds_ago)] = tasks.redispatch_queued_jobs() == [training_job.pk]

    assert waits == {
        (1, 299): False,
        (1, 301): True,
        (2, 599): False,
        (2, 601): True,
        (3, 1199): False,
        (3, 1201): True,
    }
    assert sent == [[training_job.pk]] * 3


def test_jobs_list_in_constant_queries(
    client_for,
    fresh,
    viewer,
    training_job,
    dataset_version,
    registered_model,
    owner,
    django_assert_num_queries,
):
    for actor in (owner, owner):
        do_submit_job(
            kind=JobKind.TRAIN,
            dataset_version=dataset_version,
            registered_model=registered_model,
            spec=training_job.spec,
            actor=actor,
        )
    client = client_for(fresh(viewer))

    # 1 the user's platform and team roles (one UNION), 2 the page (creator joined)
    with django_assert_num_queries(2):
        response = client.get("/api/jobs/")

    assert [row["created_by"] for row in response.json()["results"]] == ["olivia", "olivia", "dana"]
    assert len(client.get("/api/jobs/", {"state": "queued"}).json()["results"]) == 3
    assert client.get("/api/jobs/", {"state": "running"}).json()["results"] == []


@pytest.mark.django_db(transaction=True)
def test_a_running_job_beats_its_heartbeat_between_epochs(training_job, settings, monkeypatch):
    """The heartbeat comes from a thread, not from epochs: one slow epoch is not a dead worker.

    Training is held (bounded wait) until the heartbeat moves past the claim's time; if no
    thread touched it, the job would fail instead of succeeding.
    """
    settings.STEWARD_JOB_HEARTBEAT_INTERVAL_S = 0.05
    real_run = launcher.Launch.run

    def train_after_a_heartbeat(self, on_event, check, **options):
        # The claim touched the heartbeat; only the thread can move it while we wait.
        entered = Job.objects.get(pk=training_job.pk).heartbeat_at
        for _ in range(200):
            if Job.objects.get(pk=training_job.pk).heartbeat_at > entered:
                return real_run(self, on_event, check, **options)
            threading.Event().wait(0.05)
        raise launcher.ComputeError("no heartbeat while the first epoch ran")

    monkeypatch.setattr(launcher.Launch, "run", train_after_a_heartbeat)

    assert execute_job(training_job.pk) == JobState.SUCCEEDED

"""Delivery faults with the real broker and real workers (issue 16: never lost, never twice).

The broker is a throwaway ``redis-server`` started by the test (``redis_broker``, see
test_delivery.py); each worker is ``celery -A config.celery worker`` in its own process against
it and this test's database (as in test_durable_worker.py), so it can be killed with SIGKILL like
a crashed node. Jobs are tiny trainings (one epoch on one month of the real bike-sharing data)
unless a test needs one that runs until it is stopped (batch size 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

import config.celery
from governance.models import AuditEvent, ModelVersion
from runners import tasks
from runners.models import Job, JobState
from tests.runners.test_delivery import redis_broker  # noqa: F401 - a fixture used below
from tests.runners.test_durable_worker import _children, _database_url, _wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TASK = "runners.tasks.run_job"
FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def _queue() -> str:
    return config.celery.app.amqp.router.route({}, TASK)["queue"].name


class Workers:
    """Real worker processes started on demand; ``logs`` is where each writes its log."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *, heartbeat_s: int = 1, timeout_s: int = 3) -> subprocess.Popen:
        """Start worker ``name`` (heartbeat every ``heartbeat_s``, dead after ``timeout_s``) and
        wait until it consumes its queue."""
        env = os.environ | {
            "DATABASE_URL": _database_url(),
            "STEWARD_ARTIFACT_ROOT": str(django_settings.ARTIFACT_ROOT),
            "STEWARD_JOB_HEARTBEAT_INTERVAL_S": str(heartbeat_s),
            "STEWARD_JOB_HEARTBEAT_TIMEOUT_S": str(timeout_s),
            "CELERY_BROKER_URL": config.celery.app.conf.broker_url,
        }
        command = [sys.executable, "-m", "celery", "-A", "config.celery", "worker", "--pool", "solo"]
        command += ["-Q", _queue(), "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "info"]
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(  # noqa: S603 - our interpreter running Celery
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=django_settings.BASE_DIR
        )
        self.started[name] = process
        _wait_until(f"{name} ready", lambda: " ready." in self.log(name) or process.poll() is not None)
        assert process.poll() is None, self.log(name)
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str) -> None:
        """SIGKILL the worker and the process group of each job child it ran: a node that dies."""
        process = self.started[name]
        compute = _children(process.pid)
        process.kill()
        process.wait()
        for pid in compute:
            with contextlib.suppress(ProcessLookupError):  # gone with its parent (PR_SET_PDEATHSIG)
                os.killpg(pid, signal.SIGKILL)

    def results(self, task_id: str) -> list[str]:
        """What each delivery of ``task_id`` returned (the job's state), from every worker's log."""
        pattern = re.compile(rf"{re.escape(TASK)}\[{re.escape(task_id)}\] succeeded in [\d.]+s: '(\w+)'")
        return [found for name in self.started for found in pattern.findall(self.log(name))]

    def stop(self) -> None:
        for process in self.started.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def workers(redis_broker, tmp_path, settings) -> Iterator[Workers]:  # noqa: F811 - the fixture
    """Workers on the throwaway Redis; all stopped after the test."""
    settings.STEWARD_JOB_HEARTBEAT_TIMEOUT_S = 3
    started = Workers(tmp_path)
    yield started
    started.stop()


@pytest.fixture
def tiny_spec(training_spec) -> dict:
    """One epoch on January 2011 (744 rows): seconds, most of it the child's start."""
    return training_spec | {"epochs": 1, "where": {"yr": 0, "mnth": 1}}


@pytest.fixture
def submit(client_for, scientist, dataset_version, registered_model) -> Callable[[dict], int]:
    client = client_for(scientist)

    def post(spec: dict) -> int:
        response = client.post(
            "/api/jobs/",
            {
                "kind": "train",
                "dataset_version": dataset_version.pk,
                "registered_model": registered_model.pk,
                "spec": spec,
            },
            format="json",
        )
        assert response.status_code == 201, response.json()
        return response.json()["id"]

    return post


def _state(job_id: int) -> str:
    return Job.objects.values_list("state", flat=True).get(pk=job_id)


def _actions(job_id: int) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="job", object_id=str(job_id))
        .order_by("id")
        .values_list("action", flat=True)
    )


def _queued_messages(queue: str) -> int:
    """Job messages waiting in the queue's Redis lists (one per priority level kombu uses). Other
    tasks share the queue (a registered dataset version's PII scan), so only ``run_job``'s count."""
    client = redis.Redis.from_url(config.celery.app.conf.broker_url)
    messages = [
        json.loads(raw)
        for key in client.keys(f"{queue}*")
        if client.type(key) == b"list"
        for raw in client.lrange(key, 0, -1)
    ]
    return sum(message["headers"].get("task") == "runners.tasks.run_job" for message in messages)


def _drop_queued_messages(queue: str) -> None:
    """What a Redis restart without persistence does to the queue: its messages are gone."""
    client = redis.Redis.from_url(config.celery.app.conf.broker_url)
    for key in client.keys(f"{queue}*"):
        if client.type(key) == b"list":
            client.delete(key)


def test_messages_lost_from_the_broker_are_sent_again_and_each_job_runs_once(
    workers, submit, tiny_spec, settings
):
    ids = [submit(tiny_spec) for _ in range(3)]
    queue = _queue()
    assert _queued_messages(queue) == 3
    _drop_queued_messages(queue)
    assert _queued_messages(queue) == 0
    assert tasks.redispatch_queued_jobs() == []  # their messages may still be on their way
    # Time passes: the sends are older than the redispatch delay, so their messages may be lost.
    Job.objects.filter(pk__in=ids).update(
        dispatched_at=timezone.now() - timedelta(seconds=settings.STEWARD_JOB_REDISPATCH_AFTER_S + 1)
    )

    assert tasks.redispatch_queued_jobs() == ids

    assert _queued_messages(queue) == 3
    workers.start("w1")
    _wait_until("finished", lambda: all(_state(job_id) in FINISHED for job_id in ids))
    jobs = Job.objects.filter(pk__in=ids).order_by("pk")
    assert [(job.state, job.error, job.attempt, job.dispatch_count) for job in jobs] == [
        (JobState.SUCCEEDED, "", 1, 2)
    ] * 3
    assert sorted(ModelVersion.objects.values_list("source_job_id", flat=True)) == ids
    assert [_actions(job_id) for job_id in ids] == [["job.submit", "job.start", "job.succeed"]] * 3


def test_two_workers_many_jobs_each_runs_exactly_once(workers, submit, tiny_spec):
    workers.start("w1")
    workers.start("w2")

    # Eight: enough for both workers to race over the queue; each job costs a child process.
    ids = [submit(tiny_spec) for _ in range(8)]

    _wait_until("finished", lambda: all(_state(job_id) in FINISHED for job_id in ids))
    jobs = Job.objects.filter(pk__in=ids).order_by("pk")
    assert [(job.state, job.error, job.attempt) for job in jobs] == [(JobState.SUCCEEDED, "", 1)] * 8
    # Each job registered one version, each version comes from a different job.
    assert sorted(ModelVersion.objects.values_list("source_job_id", flat=True)) == ids
    assert sorted(ModelVersion.objects.values_list("version", flat=True)) == list(range(1, 9))
    assert [_actions(job_id) for job_id in ids] == [["job.submit", "job.start", "job.succeed"]] * 8
    # Both workers took a share (each holds one unacknowledged message at a time), one run per job.
    runs = Counter(
        name
        for name in ("w1", "w2")
        for job in jobs
        if f"[{job.celery_task_id}] received" in workers.log(name)
    )
    assert set(runs) == {"w1", "w2"}
    assert sum(runs.values()) == 8


def test_duplicate_and_late_deliveries_change_neither_a_finished_nor_a_running_job(
    workers, submit, tiny_spec, training_spec, client_for, scientist
):
    # A generous heartbeat timeout: the running job's worker is alive throughout this test.
    workers.start("w1", heartbeat_s=1, timeout_s=60)
    workers.start("w2", heartbeat_s=1, timeout_s=60)
    finished = submit(tiny_spec)
    _wait_until("finished", lambda: _state(finished) in FINISHED)
    assert _state(finished) == JobState.SUCCEEDED
    before = Job.objects.filter(pk=finished).values().get()
    # Batch size 1: an epoch takes minutes, the job runs until it is cancelled.
    running = submit(training_spec | {"batch_size": 1})
    _wait_until("training", lambda: "training on" in Job.objects.get(pk=running).log_tail)
    app = config.celery.app
    sends = {}
    for job_id in (finished, running):
        original = Job.objects.values_list("celery_task_id", flat=True).get(pk=job_id)
        # Late: the broker delivers the job's own message again (Redis' visibility timeout).
        app.send_task(TASK, args=[job_id], task_id=original)
        # Duplicate: a second message for the same job.
        duplicate = str(uuid.uuid4())
        app.send_task(TASK, args=[job_id], task_id=duplicate)
        sends[job_id] = (original, duplicate)

    # The idle worker takes the four messages; the running job's worker holds its own.
    (finished_late, finished_duplicate), (running_late, running_duplicate) = sends.values()
    _wait_until(
        "delivered",
        lambda: (
            (len(workers.results(finished_late)), len(workers.results(finished_duplicate))) == (2, 1)
            and (len(workers.results(running_late)), len(workers.results(running_duplicate))) == (1, 1)
        ),
    )
    assert workers.results(finished_late) == ["succeeded", "succeeded"]  # the original run, the late one
    assert workers.results(finished_duplicate) == ["succeeded"]
    assert workers.results(running_late) == workers.results(running_duplicate) == ["running"]
    assert Job.objects.filter(pk=finished).values().get() == before
    assert _actions(finished) == ["job.submit", "job.start", "job.succeed"]
    job = Job.objects.get(pk=running)
    assert (job.state, job.attempt, job.error) == (JobState.RUNNING, 1, "")
    assert _actions(running) == ["job.submit", "job.start"]
    # Its owner still runs it: a cancel reaches the run that has it, which stops.
    client_for(scientist).post(f"/api/jobs/{running}/cancel/")
    _wait_until("cancelled", lambda: _state(running) in FINISHED)
    job = Job.objects.get(pk=running)
    assert (job.state, job.attempt, job.error) == (JobState.CANCELLED, 1, "cancelled while running")
    assert list(ModelVersion.objects.values_list("source_job_id", flat=True)) == [finished]


def test_a_job_whose_worker_dies_on_every_attempt_fails_after_the_last_one(
    workers, submit, training_spec, settings
):
    most = settings.STEWARD_JOB_MAX_ATTEMPTS
    # Batch size 1: each attempt is still training when its worker is killed.
    job_id = submit(training_spec | {"batch_size": 1})

    for attempt in range(1, most + 1):
        workers.start(f"w{attempt}")
        _wait_until(
            f"attempt {attempt} training",
            lambda: Job.objects.get(pk=job_id).log_tail.count("training on") == attempt,  # noqa: B023
        )
        assert Job.objects.values_list("state", "attempt").get(pk=job_id) == (JobState.RUNNING, attempt)
        workers.kill(f"w{attempt}")
        _wait_until(
            "stale",
            lambda: Job.objects.get(pk=job_id).heartbeat_at < timezone.now() - timedelta(seconds=4),
        )
        # Beat's sweep: sent again while attempts are left, then failed.
        assert tasks.fail_stale_jobs() == ([] if attempt < most else [job_id])

    job = Job.objects.get(pk=job_id)
    assert (job.state, job.attempt, job.output_model_version) == (JobState.FAILED, most, None)
    assert job.error == (
        f"no heartbeat from the worker for over 3 s on its last attempt ({most} of {most}); "
        "the worker was lost"
    )
    assert _actions(job_id) == ["job.submit", "job.start", *["job.retry"] * (most - 1), "job.fail"]
    assert not ModelVersion.objects.exists()

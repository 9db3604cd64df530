"""A job submitted while the broker is down runs once it is back (issue 16: never lost).

A throwaway ``redis-server`` started by the test is the broker: stopped for the outage, started
again on the same port; a real Celery worker (a thread, solo pool) then runs the job.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
from celery.contrib.testing.worker import start_worker

import config.celery
from governance.models import AuditEvent, ModelVersion
from runners import tasks
from runners.models import Job, JobState
from tests.conftest import free_port

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

REDIS_SERVER = shutil.which("redis-server")


class ThrowawayRedis:
    """A ``redis-server`` on ``port`` with no persistence: what it holds dies with it."""

    def __init__(self, port: int):
        self.port = port
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [REDIS_SERVER or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.process = subprocess.Popen(  # noqa: S603 - redis-server from PATH, a port we chose
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not listen on port {self.port} within 10 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_broker(settings, monkeypatch):
    """Point the Celery app at a throwaway Redis (see ``unreachable_broker`` in test_jobs.py)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH: this test stops and starts a real Redis broker")
    redis = ThrowawayRedis(free_port())
    redis.start()
    app = config.celery.app
    url = f"redis://127.0.0.1:{redis.port}/0"

    def forget_pools():
        app._pool = None
        app.amqp._producer_pool = None

    saved = app.conf.broker_url
    settings.CELERY_BROKER_URL = url
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    app.conf.broker_url = url
    forget_pools()
    try:
        yield redis
    finally:
        redis.stop()
        monkeypatch.undo()
        app.conf.broker_url = saved
        forget_pools()


def test_a_job_submitted_while_the_broker_is_down_runs_once_it_is_back(
    redis_broker, client_for, scientist, dataset_version, registered_model, training_spec
):
    app = config.celery.app
    body = {
        "kind": "train",
        "dataset_version": dataset_version.pk,
        "registered_model": registered_model.pk,
        "spec": training_spec,
    }
    redis_broker.stop()

    client = client_for(scientist)

    response = client.post("/api/jobs/", body, format="json")

    assert (response.status_code, response.json()["state"]) == (201, "queued")
    job = Job.objects.get()
    shown = client.get(f"/api/jobs/{job.pk}/").json()
    assert (shown["state"], shown["dispatch_count"], shown["dispatched_at"]) == ("queued", 0, None)
    assert shown["dispatch_error"] == (
        "could not reach the task broker to start the job: "
        f"Error 111 connecting to 127.0.0.1:{redis_broker.port}. Connection refused."
    )
    assert tasks.redispatch_queued_jobs() == []  # still down: nothing sent, the job waits

    redis_broker.start()

    assert tasks.redispatch_queued_jobs() == [job.pk]
    job.refresh_from_db()
    assert (job.state, job.dispatch_count, job.dispatch_error) == (JobState.QUEUED, 1, "")
    assert tasks.redispatch_queued_jobs() == []  # its message is live now: not sent twice
    queue = app.amqp.router.route({}, "runners.tasks.run_job")["queue"].name
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue], shutdown_timeout=60):
        deadline = time.monotonic() + 300
        while Job.objects.get(pk=job.pk).state in (JobState.QUEUED, JobState.RUNNING):
            assert time.monotonic() < deadline, "the worker did not finish the job within 300 s"
            time.sleep(0.2)

    job.refresh_from_db()
    assert (job.state, job.error, job.attempt, job.dispatch_count) == (JobState.SUCCEEDED, "", 1, 1)
    assert list(ModelVersion.objects.values_list("version", "source_job_id")) == [(1, job.pk)]
    assert list(
        AuditEvent.objects.filter(object_type="job", object_id=str(job.pk))
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["job.submit", "job.start", "job.succeed"]

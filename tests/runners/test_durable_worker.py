"""Cancel and a killed worker with real Celery workers in their own processes (issue 16).

Each worker is ``celery -A config.celery worker`` started by the test against the configured
broker and this test's database, so it can be killed with SIGKILL like a crashed node.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

import config.celery
from governance.models import ModelVersion, StoredObject
from governance.storage.envelope import MAGIC
from runners import tasks
from runners.joblog import whole_log
from runners.models import Job, JobState

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Generous: waits end as soon as the state is reached; only a hung run takes this long.
WAIT_S = 300


def _database_url() -> str:
    """The URL of the test database, for the worker processes."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{host}/{db['NAME']}"


def _wait_until(what: str, condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {timeout_s} s"
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


@pytest.fixture
def start_worker(settings, tmp_path) -> Iterator[Callable[[str], subprocess.Popen]]:
    """Start a real worker process (``name`` for its node name); all are stopped after the test."""
    settings.STEWARD_JOB_HEARTBEAT_TIMEOUT_S = 3
    queue = config.celery.app.amqp.router.route({}, "runners.tasks.run_job")["queue"].name
    env = os.environ | {
        "DATABASE_URL": _database_url(),
        "STEWARD_ARTIFACT_ROOT": str(django_settings.ARTIFACT_ROOT),
        "STEWARD_JOB_HEARTBEAT_INTERVAL_S": "1",
        "STEWARD_JOB_HEARTBEAT_TIMEOUT_S": "3",
        "CELERY_BROKER_URL": config.celery.app.conf.broker_url,
    }
    started: list[subprocess.Popen] = []

    def start(name: str, **extra_env: str) -> subprocess.Popen:
        """``extra_env``: variables this worker's process gets on top of the others'."""
        command = [sys.executable, "-m", "celery", "-A", "config.celery", "worker", "--pool", "solo"]
        command += ["-Q", queue, "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "info"]
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(  # noqa: S603 - our interpreter running Celery
            command, env=env | extra_env, stdout=log, stderr=subprocess.STDOUT, cwd=django_settings.BASE_DIR
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _submit(client, dataset_version, registered_model, spec) -> int:
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


def _state(job_id: int) -> str:
    return Job.objects.values_list("state", flat=True).get(pk=job_id)


def test_cancel_at_batch_size_1_kills_the_process_group_and_frees_the_worker(
    start_worker, client_for, scientist, dataset_version, registered_model, training_spec
):
    client = client_for(scientist)
    start_worker("w1")
    # Batch size 1: an epoch takes minutes; the old cancel waited for its end.
    slow = _submit(client, dataset_version, registered_model, training_spec | {"batch_size": 1})
    _wait_until("training", lambda: "training on" in Job.objects.get(pk=slow).log_tail)

    response = client.post(f"/api/jobs/{slow}/cancel/")

    assert (response.status_code, response.json()["state"]) == (200, "running")
    _wait_until("cancelled", lambda: _state(slow) == JobState.CANCELLED, timeout_s=30)
    job = Job.objects.get(pk=slow)
    assert (job.error, job.history, job.output_model_version) == ("cancelled while running", [], None)
    assert job.wall_time_s is not None
    # The worker is free: the next job runs to the end on it.
    quick = _submit(client, dataset_version, registered_model, training_spec)
    _wait_until("finished", lambda: _state(quick) in (JobState.SUCCEEDED, JobState.FAILED))
    assert _state(quick) == JobState.SUCCEEDED
    assert list(ModelVersion.objects.values_list("source_job_id", flat=True)) == [quick]


def test_a_killed_worker_s_job_resumes_from_its_checkpoint_on_another_worker(
    start_worker, client_for, scientist, dataset_version, registered_model, training_spec
):
    client = client_for(scientist)
    first = start_worker("w1")
    # Enough epochs that the worker is killed mid-training: progress reaches the row once a poll
    # (0.5 s), so "checkpoint saved" may be read a few epochs after it was written.
    epochs = 40
    spec = training_spec | {"epochs": epochs, "batch_size": 128, "checkpoint_every": 2}
    job_id = _submit(client, dataset_version, registered_model, spec)
    _wait_until("checkpointed", lambda: "checkpoint saved at epoch 2" in Job.objects.get(pk=job_id).log_tail)

    # The node dies: SIGKILL to the worker and to the job's process group (its child leads it).
    compute = _children(first.pid)
    first.kill()
    first.wait()
    for pid in compute:
        with contextlib.suppress(ProcessLookupError):  # gone with its parent (PR_SET_PDEATHSIG)
            os.killpg(pid, signal.SIGKILL)
    assert Job.objects.get(pk=job_id).state == JobState.RUNNING
    start_worker("w2")
    # Beat's sweep, once the heartbeat is older than the timeout: the job is sent again.
    _wait_until(
        "stale", lambda: Job.objects.get(pk=job_id).heartbeat_at < timezone.now() - timedelta(seconds=4)
    )
    assert tasks.fail_stale_jobs() == []  # attempts left: sent again, not failed
    _wait_until("finished", lambda: _state(job_id) in (JobState.SUCCEEDED, JobState.FAILED))

    job = Job.objects.get(pk=job_id)
    assert (job.state, job.error, job.attempt) == (JobState.SUCCEEDED, "", 2)
    log = "".join(whole_log(job_id))  # the tail keeps 50 lines; the whole log keeps every one
    resumed = [line for line in log.splitlines() if line.startswith("resuming from epoch ")]
    assert len(resumed) == 1
    k = int(resumed[0].split()[3])
    assert k % 2 == 0
    assert 2 <= k < epochs
    # The second attempt trained only the epochs after the checkpoint; the history is whole.
    assert [record["epoch"] for record in job.history] == list(range(1, epochs + 1))
    second_attempt = log.split(resumed[0], 1)[1]
    assert f"epoch {k}/{epochs} " not in second_attempt
    assert f"epoch {k + 1}/{epochs} " in second_attempt
    assert list(ModelVersion.objects.values_list("version", "source_job_id")) == [(1, job_id)]


def test_a_killed_worker_s_job_resumes_from_its_encrypted_checkpoint_on_a_machine_without_its_cache(
    keys, start_worker, client_for, scientist, dataset_version, registered_model, training_spec, tmp_path
):
    """Managed mode (issue 12): the checkpoint is stored encrypted, and the second worker (its own
    cache, as another machine's) resumes from it through the store, not from a shared folder."""
    client = client_for(scientist)
    first = start_worker("w1", STEWARD_ARTIFACT_KEYS=keys, STEWARD_ARTIFACT_CACHE=str(tmp_path / "cache-w1"))
    epochs = 40
    spec = training_spec | {"epochs": epochs, "batch_size": 128, "checkpoint_every": 2}
    job_id = _submit(client, dataset_version, registered_model, spec)
    prefix = f"checkpoints/job-{job_id}/"
    _wait_until("checkpoint stored", lambda: StoredObject.objects.filter(key__startswith=prefix).exists())

    compute = _children(first.pid)
    first.kill()
    first.wait()
    for pid in compute:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    stored = StoredObject.objects.filter(key__startswith=prefix).order_by("-key").first()
    assert stored is not None
    assert (stored.kek_id, bool(stored.wrapped_key)) == ("k1", True)
    assert (django_settings.ARTIFACT_ROOT / stored.key).read_bytes()[: len(MAGIC)] == MAGIC
    start_worker("w2", STEWARD_ARTIFACT_KEYS=keys, STEWARD_ARTIFACT_CACHE=str(tmp_path / "cache-w2"))
    _wait_until(
        "stale",
        lambda: Job.objects.filter(
            pk=job_id, heartbeat_at__lt=timezone.now() - timedelta(seconds=4)
        ).exists(),
    )
    assert tasks.fail_stale_jobs() == []
    _wait_until("finished", lambda: _state(job_id) in (JobState.SUCCEEDED, JobState.FAILED))

    job = Job.objects.get(pk=job_id)
    assert (job.state, job.error, job.attempt) == (JobState.SUCCEEDED, "", 2)
    log = "".join(whole_log(job_id))
    resumed = [line for line in log.splitlines() if line.startswith("resuming from epoch ")]
    assert len(resumed) == 1
    k = int(resumed[0].split()[3])
    assert k % 2 == 0
    assert 2 <= k < epochs
    assert [record["epoch"] for record in job.history] == list(range(1, epochs + 1))
    assert f"epoch {k + 1}/{epochs} " in log.split(resumed[0], 1)[1]
    # Registered: the job's checkpoint records and objects are gone; no plaintext copy in a cache.
    assert not StoredObject.objects.filter(key__startswith=prefix).exists()
    assert list((django_settings.ARTIFACT_ROOT / "checkpoints").rglob("*.pt")) == []
    assert [path for path in tmp_path.glob("cache-w*/checkpoints/**/*.pt")] == []
    assert list(ModelVersion.objects.values_list("version", "source_job_id")) == [(1, job_id)]

"""The Ray backend (issue 16): a job handed to a real Ray cluster through the Ray Jobs API.

A local Ray head (GCS, raylet and the dashboard that serves the Jobs API) is started once per
session by ``ray start --head --block`` from this interpreter's environment, on loopback ports
picked free, in its own process group; it is stopped by signalling that group (``ray stop``
would stop every Ray process on the machine, not only this one's). Jobs are submitted through
Steward's API and run by the worker's plain function (``execute_job``), which submits
``python -m runners.child`` to the head and follows it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from governance.models import AuditEvent, ModelVersion, StoredObject
from governance.storage.envelope import MAGIC
from runners.execute import execute_job
from runners.launcher import Limits
from runners.models import Job, JobState
from runners.ray_backend import RayLaunch, parse_log_lines
from tests.conftest import free_port
from tests.runners.test_checkpoints_stored import PlaintextWatch

pytestmark = pytest.mark.ray

# Generous: waits end as soon as the state is reached; only a hung cluster takes this long.
START_WAIT_S = 180
WAIT_S = 300


def _wait_until(what: str, condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {timeout_s} s"
        time.sleep(0.2)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the head's process group (every daemon ``ray start`` started), SIGKILL what stays."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
            if sig == signal.SIGTERM:
                time.sleep(2)  # the daemons are not the leader: let them finish too


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The Jobs API address of a real local Ray head (2 CPUs); skips only if Ray cannot start."""
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        pytest.skip(f"no Ray CLI at {ray}: install the 'ray' extra (pip install -e '.[ray]')")
    from ray.job_submission import JobSubmissionClient

    temp_dir = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit 107 bytes
    dashboard_port = free_port()
    command = [str(ray), "start", "--head", "--block", "--num-cpus", "2", "--node-ip-address", "127.0.0.1"]
    command += ["--port", str(free_port()), "--dashboard-port", str(dashboard_port)]
    command += ["--dashboard-host", "127.0.0.1", "--include-dashboard=true", "--disable-usage-stats"]
    command += ["--ray-client-server-port", str(free_port())]
    command += [
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--metrics-export-port",
        str(free_port()),
    ]
    command += ["--object-store-memory", str(100 * 2**20), "--temp-dir", temp_dir]
    # The entry point's "python" is this environment's: it has torch, pandas and pyarrow.
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    log_path = Path(temp_dir) / "head.log"
    with open(log_path, "wb") as log:
        head = subprocess.Popen(  # noqa: S603 - this environment's Ray CLI
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    address = f"http://127.0.0.1:{dashboard_port}"
    deadline = time.monotonic() + START_WAIT_S
    while True:
        try:
            JobSubmissionClient(address).list_jobs()
            break
        except Exception as exc:
            if head.poll() is not None or time.monotonic() > deadline:
                _stop_group(head)
                tail = log_path.read_text(errors="replace")[-2000:]
                shutil.rmtree(temp_dir, ignore_errors=True)
                pytest.skip(f"a local Ray head could not start ({exc}); its output: {tail}")
            time.sleep(1)
    yield address
    _stop_group(head)
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def ray_settings(settings, ray_address):
    """Jobs go to the test's head; they ask for what its 2 CPUs and this machine have (an
    entry point asking for more stays PENDING until Ray's start timeout)."""
    settings.STEWARD_RAY_ADDRESS = ray_address
    settings.STEWARD_JOB_THREADS = 1
    settings.STEWARD_JOB_MEMORY_MB = 1024
    return settings


def _ray_job(address: str, submission: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address).get_job_info(submission)


def _submit(client, dataset_version_id: int, registered_model, spec) -> dict:
    response = client.post(
        "/api/jobs/",
        {
            "kind": "train",
            "dataset_version": dataset_version_id,
            "registered_model": registered_model.pk,
            "spec": spec,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


def test_parse_log_lines_keeps_events_and_log_lines_and_waits_for_a_whole_line():
    text = 'Running entrypoint for job x\n{"event": "epoch", "epoch": 1}\n\n[1, 2]\n{"event": "lo'

    events, used = parse_log_lines(text)

    assert events == [
        {"event": "log", "message": "Running entrypoint for job x"},
        {"event": "epoch", "epoch": 1},
        {"event": "log", "message": "[1, 2]"},
    ]
    assert text[used:] == '{"event": "lo'


def test_backend_ray_without_a_cluster_is_a_400_naming_it(
    settings, client_for, scientist, dataset_version, registered_model, training_spec
):
    settings.STEWARD_RAY_ADDRESS = ""
    events = AuditEvent.objects.count()

    response = client_for(scientist).post(
        "/api/jobs/",
        {
            "kind": "train",
            "dataset_version": dataset_version.pk,
            "registered_model": registered_model.pk,
            "spec": training_spec | {"backend": "ray"},
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "spec": [
            "backend: 'ray' needs a Ray cluster and this deployment has none "
            "(STEWARD_RAY_ADDRESS is not set); use 'local'"
        ]
    }
    assert (Job.objects.count(), AuditEvent.objects.count()) == (0, events)


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ("slurm", "backend: one of local, ray, kubernetes; got 'slurm'"),
        (
            "kubernetes",
            "backend: 'kubernetes': this deployment does not submit to Kubernetes "
            "(STEWARD_KUBERNETES_SUBMIT is off); use 'local' or 'ray' (GET /api/jobs/<id>/kubernetes-"
            "manifest/ shows the manifest of any job)",
        ),
    ],
)
def test_an_unknown_or_unsubmittable_backend_is_a_400(
    client_for, scientist, dataset_version, registered_model, training_spec, backend, message
):
    response = client_for(scientist).post(
        "/api/jobs/",
        {
            "kind": "train",
            "dataset_version": dataset_version.pk,
            "registered_model": registered_model.pk,
            "spec": training_spec | {"backend": backend},
        },
        format="json",
    )

    assert (response.status_code, response.json()) == (400, {"spec": [message]})
    assert Job.objects.count() == 0


def test_a_resource_class_may_default_to_the_ray_backend(
    settings, client_for, scientist, dataset_version, registered_model, training_spec
):
    settings.STEWARD_RAY_ADDRESS = "http://127.0.0.1:1"  # not contacted at submission
    settings.STEWARD_RESOURCE_CLASSES = {"cpu": {"queue": "celery", "gpus": 0, "backend": "ray"}}
    settings.STEWARD_DEFAULT_RESOURCE_CLASS = "cpu"
    client = client_for(scientist)

    on_ray = _submit(client, dataset_version.pk, registered_model, training_spec)
    local = _submit(client, dataset_version.pk, registered_model, training_spec | {"backend": "local"})

    assert (on_ray["backend"], local["backend"]) == ("ray", "local")
    assert "backend" not in on_ray["spec"]


def test_a_ray_training_job_succeeds_with_one_version_its_logs_and_accounting(
    ray_settings, tmp_path, client_for, scientist, dataset_version, registered_model, training_spec
):
    submitted = _submit(
        client_for(scientist), dataset_version.pk, registered_model, training_spec | {"backend": "ray"}
    )
    assert submitted["backend"] == "ray"

    assert execute_job(submitted["id"]) == JobState.SUCCEEDED

    job = Job.objects.get(pk=submitted["id"])
    assert job.backend_job_id == f"steward-job-{job.pk}-{job.created_at:%Y%m%dT%H%M%S%f}-1"
    ray_job = _ray_job(ray_settings.STEWARD_RAY_ADDRESS, job.backend_job_id)
    assert str(ray_job.status) == "SUCCEEDED"
    folder = Path(ray_settings.ARTIFACT_ROOT) / "ray" / job.backend_job_id
    assert ray_job.entrypoint == f"python -m runners.child {folder / 'task.json'}"
    threads = str(job.limits["threads"])
    assert ray_job.runtime_env["env_vars"] == {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    assert list(ModelVersion.objects.values_list("source_job_id", flat=True)) == [job.pk]
    assert job.output_model_version.metrics == job.metrics
    # The child's events became the job's log; Ray's own lines are kept as log lines.
    assert "Running entrypoint for job" in job.log_tail
    assert "epoch 3/3" in job.log_tail
    assert [record["epoch"] for record in job.history] == [1, 2, 3]
    # Accounting: wall time from the Ray job's start and end, CPU and memory as the child measured.
    assert job.wall_time_s == (ray_job.end_time - ray_job.start_time) / 1000.0
    assert job.cpu_time_s > 0
    assert job.peak_rss_mb > 0
    assert (job.rows_read, job.bytes_read) == (17379, dataset_version.path.stat().st_size)
    # The attempt's folder in the artifact store is gone with the run.
    assert not folder.exists()
    # A late redelivery changes nothing and submits nothing.
    assert execute_job(job.pk) == JobState.SUCCEEDED
    assert ModelVersion.objects.count() == 1
    # A second run of the same attempt (a redelivery to a worker) follows the existing Ray job
    # instead of submitting it again (Ray would refuse the id): its log replays the same result.
    events: list[dict] = []
    again = RayLaunch(
        {}, Limits(), tmp_path, address=ray_settings.STEWARD_RAY_ADDRESS, submission=job.backend_job_id
    )
    assert again.run(events.append, lambda: None, poll_s=0.1)["metrics"] == job.metrics
    assert [event["epoch"] for event in events if event["event"] == "epoch"] == [1, 2, 3]


def test_a_ray_training_job_in_managed_mode_stores_its_checkpoints_encrypted(
    keys, ray_settings, client_for, scientist, dataset_version, registered_model, training_spec
):
    """Issue 12: the child on Ray writes its checkpoints into the run's folder, the worker stores
    each through the artifact store and removes the plaintext; all deleted after registration."""
    spec = training_spec | {"backend": "ray", "checkpoint_every": 1}
    submitted = _submit(client_for(scientist), dataset_version.pk, registered_model, spec)

    root = Path(ray_settings.ARTIFACT_ROOT)
    with PlaintextWatch(root, submitted["id"]) as watch:
        assert execute_job(submitted["id"]) == JobState.SUCCEEDED

    # Plaintext only in the Ray run's folder (the nodes share it: a checkpoint until it is
    # stored, the model until it is registered), never in checkpoints/: that holds ciphertext.
    job = Job.objects.get(pk=submitted["id"])
    assert {path.split("/", 2)[1] for path in watch.plaintext} == {job.backend_job_id}, watch.plaintext
    assert any("/checkpoints/epoch-" in path for path in watch.plaintext), watch.plaintext
    assert watch.objects, "no checkpoint object was seen while the job ran"
    assert all(head == MAGIC for head in watch.objects.values()), watch.objects
    assert [line for line in job.log_tail.splitlines() if line.startswith("checkpoint")] == [
        "checkpoint saved at epoch 1",
        "checkpoint saved at epoch 2",
    ]
    assert not StoredObject.objects.filter(key__startswith=f"checkpoints/job-{job.pk}/").exists()
    assert not (root / "ray" / job.backend_job_id).exists()
    assert list((root / "checkpoints").rglob("*.pt")) == []
    # No torch file (a zip: "PK") in plaintext anywhere under the root, the model's included.
    assert [path for path in root.rglob("*") if path.is_file() and path.read_bytes()[:2] == b"PK"] == []
    assert list(ModelVersion.objects.values_list("source_job_id", flat=True)) == [job.pk]


def test_a_ray_training_job_on_bad_data_fails_with_the_child_s_message(
    ray_settings, client_for, scientist, dataset, registered_model, bike_frame, training_spec
):
    frame = bike_frame.copy()
    frame["cnt"] = frame["cnt"].astype("float64")
    frame.loc[[9000, 9049], "cnt"] = float("nan")  # data rows 9,001 and 9,050: 2012, trained on
    client = client_for(scientist)
    upload = client.post(
        "/api/dataset-versions/",
        {"dataset": dataset.pk, "file": SimpleUploadedFile("gaps.csv", frame.to_csv(index=False).encode())},
        format="multipart",
    )
    assert upload.status_code == 201
    spec = training_spec | {"where": {"yr": 1}, "backend": "ray"}
    submitted = _submit(client, upload.json()["id"], registered_model, spec)

    assert execute_job(submitted["id"]) == JobState.FAILED

    job = Job.objects.get(pk=submitted["id"])
    assert job.error == "target column 'cnt' has 2 missing value(s) (first at data row 9001)"
    # The child reported its error and exited 1: Ray saw a failed entry point.
    assert str(_ray_job(ray_settings.STEWARD_RAY_ADDRESS, job.backend_job_id).status) == "FAILED"
    assert job.wall_time_s > 0
    assert job.cpu_time_s > 0
    assert ModelVersion.objects.count() == 0


def test_a_ray_job_over_its_wall_time_is_stopped_on_ray_and_failed(
    ray_settings, client_for, scientist, dataset_version, registered_model, training_spec
):
    spec = training_spec | {"epochs": 1000, "batch_size": 1, "limits": {"wall_time_s": 1}, "backend": "ray"}
    submitted = _submit(client_for(scientist), dataset_version.pk, registered_model, spec)

    assert execute_job(submitted["id"]) == JobState.FAILED

    job = Job.objects.get(pk=submitted["id"])
    assert job.error == "exceeded the wall time limit of 1 s; killed"
    assert str(_ray_job(ray_settings.STEWARD_RAY_ADDRESS, job.backend_job_id).status) == "STOPPED"
    assert job.wall_time_s >= 1
    assert ModelVersion.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_ray_job_cancelled_mid_training_is_stopped_on_ray_and_cancelled_in_steward(
    ray_settings, client_for, scientist, dataset_version, registered_model, training_spec
):
    """The worker's function runs in a thread, as in a worker, while the owner cancels via the API."""
    client = client_for(scientist)
    # Batch size 1: an epoch takes minutes, so the cancel lands mid-training.
    submitted = _submit(
        client, dataset_version.pk, registered_model, training_spec | {"batch_size": 1, "backend": "ray"}
    )
    outcome: list[str] = []

    def work() -> None:
        try:
            outcome.append(execute_job(submitted["id"]))
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        _wait_until("training on Ray", lambda: "training on" in Job.objects.get(pk=submitted["id"]).log_tail)

        response = client.post(f"/api/jobs/{submitted['id']}/cancel/")

        assert (response.status_code, response.json()["state"]) == (200, "running")
    finally:
        worker.join(timeout=WAIT_S)
    assert outcome == [JobState.CANCELLED]
    job = Job.objects.get(pk=submitted["id"])
    assert (job.state, job.error, job.output_model_version) == ("cancelled", "cancelled while running", None)
    assert str(_ray_job(ray_settings.STEWARD_RAY_ADDRESS, job.backend_job_id).status) == "STOPPED"
    assert job.wall_time_s > 0
    assert ModelVersion.objects.count() == 0

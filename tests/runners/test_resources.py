"""Resource classes, GPU slots and DDP (issue 16): what a job asks for, where it runs, what it sees.

No GPU on this machine: classes with GPUs stand in for GPU nodes (``STEWARD_WORKER_GPUS`` names
devices that do not exist, CUDA is absent, so torch runs on the CPU), and a job asking for 2 GPUs
runs under torchrun as 2 gloo processes on the CPU standing in for 2 GPUs.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from django.conf import settings as django_settings

import config.celery
from governance.models import ModelVersion
from runners import inference, launcher, tasks, training
from runners.actions import do_submit_job
from runners.execute import checkpoint_folder, execute_job
from runners.models import Job, JobKind, JobState
from runners.specs import parse_spec
from tests.conftest import BIKE_HOURLY, small_training_spec
from tests.runners.test_durable_worker import _database_url, _wait_until

# Two "GPUs" for the DDP tests: a class of the tests' own on the default queue.
PAIR = {"queue": "celery", "gpus": 2, "price_per_hour": 5.0}


def _post(client, body: dict) -> tuple[int, dict]:
    response = client.post("/api/jobs/", body, format="json")
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (
            {"class": "tpu"},
            "resources.class: unknown class 'tpu'; one of cpu, gpu, gpu-2, gpu-4",
        ),
        ({"class": "gpu-2", "gpus": 3}, "resources.gpus: class 'gpu-2' offers 1 to 2 GPUs; got 3"),
        ({"class": "gpu", "gpus": 0}, "resources.gpus: class 'gpu' offers 1 to 1 GPUs; got 0"),
        ({"gpus": 1}, "resources.gpus: class 'cpu' has no GPUs, so 0; got 1"),
        ({"gpus": "two"}, "resources.gpus: expected a whole number of GPUs, got 'two'"),
        ({"class": "gpu", "nodes": 2}, "resources: unknown field(s) nodes; allowed: class, gpus"),
    ],
)
def test_resources_beyond_the_classes_are_a_400_naming_the_field(
    client_for, scientist, dataset_version, registered_model, training_spec, resources, message
):
    body = {
        "kind": "train",
        "dataset_version": dataset_version.pk,
        "registered_model": registered_model.pk,
        "spec": training_spec | {"resources": resources},
    }

    assert _post(client_for(scientist), body) == (400, {"spec": [message]})
    assert Job.objects.count() == 0


def test_an_inference_job_s_resources_are_checked_too(client_for, scientist, dataset_version, model_version):
    body = {
        "kind": "infer",
        "dataset_version": dataset_version.pk,
        "model_version": model_version.pk,
        "spec": {"resources": {"class": "gpu-9"}},
    }

    assert _post(client_for(scientist), body) == (
        400,
        {"spec": ["resources.class: unknown class 'gpu-9'; one of cpu, gpu, gpu-2, gpu-4"]},
    )
    assert Job.objects.filter(kind=JobKind.INFER).count() == 0


@pytest.mark.parametrize(
    ("resources", "stored"),
    [(None, ("cpu", 0)), ({"class": "gpu-2"}, ("gpu-2", 2)), ({"class": "gpu-4", "gpus": 3}, ("gpu-4", 3))],
)
def test_the_class_and_gpus_are_stored_and_shown_in_the_api_and_on_the_page(
    client_for, scientist, dataset_version, registered_model, training_spec, resources, stored
):
    spec = training_spec | ({"resources": resources} if resources else {})
    client = client_for(scientist)
    body = {
        "kind": "train",
        "dataset_version": dataset_version.pk,
        "registered_model": registered_model.pk,
        "spec": spec,
    }

    status, created = _post(client, body)

    assert status == 201, created
    job = Job.objects.get()
    assert (job.resource_class, job.gpus) == stored
    shown = client.get(f"/api/jobs/{job.pk}/").json()
    assert (shown["resource_class"], shown["gpus"]) == stored
    assert shown["spec"]["resources"] == {"class": stored[0], "gpus": stored[1]}
    client.force_login(scientist)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    gpus = {0: "no GPU", 2: "2 GPUs", 3: "3 GPUs"}[stored[1]]
    assert f"<dt>Resource class</dt><dd>{stored[0]}, {gpus}</dd>" in page


def test_a_queued_job_whose_class_was_withdrawn_fails_with_the_reason(
    dataset_version, registered_model, scientist, training_spec, settings
):
    job = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=training_spec | {"resources": {"class": "gpu"}},
        actor=scientist,
    )
    settings.STEWARD_RESOURCE_CLASSES = {"cpu": settings.STEWARD_RESOURCE_CLASSES["cpu"]}

    assert tasks.redispatch_queued_jobs() == []

    job.refresh_from_db()
    assert (job.state, job.dispatch_count) == (JobState.FAILED, 0)
    assert job.error == (
        "resource class 'gpu' is no longer offered (STEWARD_RESOURCE_CLASSES: cpu); "
        "resubmit with another class"
    )


def test_a_worker_whose_slot_has_too_few_gpus_fails_the_job_with_the_reason(
    dataset_version, registered_model, scientist, training_spec, settings
):
    settings.STEWARD_WORKER_GPUS = "0"
    job = do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=training_spec | {"resources": {"class": "gpu-2"}},
        actor=scientist,
    )

    assert execute_job(job.pk) == JobState.FAILED

    job.refresh_from_db()
    assert job.error == (
        "the job asks for 2 GPUs and this worker's slot has 1 (STEWARD_WORKER_GPUS='0'); "
        "start the workers of its class's queue with their devices"
    )
    assert ModelVersion.objects.count() == 0


def _task(tmp_path: Path, **changes) -> dict:
    return {
        "kind": "train",
        "data": {
            "path": str(BIKE_HOURLY),
            "format": "csv",
            "filename": BIKE_HOURLY.name,
            "name": "hour.csv",
            "where": {"yr": 0},
        },
        "spec": small_training_spec(),
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "checkpoint_every": 0,
        "resume": None,
        "output": str(tmp_path / "model.pt"),
    } | changes


def _processes_running(task_file: Path) -> dict[int, dict[str, str]]:
    """pid -> (command line, chosen environment variables) of the live processes naming ``task_file``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            if str(task_file).encode() not in command:
                continue
            environ = dict(
                line.split(b"=", 1) for line in (entry / "environ").read_bytes().split(b"\0") if b"=" in line
            )
        except OSError:
            continue
        wanted = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "RANK", "WORLD_SIZE")
        found[int(entry.name)] = {"command": b" ".join(command).decode()} | {
            name: environ[name.encode()].decode() for name in wanted if name.encode() in environ
        }
    return found


def _is_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


class _Seen(Exception):
    pass


@pytest.mark.parametrize(
    ("devices", "threads", "expected"),
    [
        # A CPU job on a GPU host sees no GPU at all: CUDA_VISIBLE_DEVICES is set, empty.
        ([], 2, {"ranks": 0, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2"}),
        # Two GPUs: torchrun and one rank per GPU, the job's threads shared out between them.
        (["0", "1"], 2, {"ranks": 2, "CUDA_VISIBLE_DEVICES": "0,1", "OMP_NUM_THREADS": "1"}),
    ],
)
def test_the_child_sees_its_devices_only_and_a_stop_ends_every_rank(tmp_path, devices, threads, expected):
    """Read from /proc while the run is on; then the run is stopped (as a cancel does)."""
    run = launcher.Launch(_task(tmp_path), launcher.Limits(threads=threads), tmp_path, devices)
    seen: dict[int, dict[str, str]] = {}

    def on_event(event: dict) -> None:
        seen.update(_processes_running(tmp_path / "task.json"))
        raise _Seen

    with pytest.raises(_Seen):
        run.run(on_event, lambda: None, grace_s=5)

    ranks = {pid: found for pid, found in seen.items() if "RANK" in found}
    leader = [found for found in seen.values() if "RANK" not in found]
    assert len(leader) == 1
    if expected["ranks"]:
        assert "-m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 2" in leader[0]["command"]
    else:
        assert leader[0]["command"].endswith(f"-m runners.child {tmp_path / 'task.json'}")
    assert sorted(found["RANK"] for found in ranks.values()) == [str(r) for r in range(expected["ranks"])]
    for found in seen.values():
        assert found["CUDA_VISIBLE_DEVICES"] == expected["CUDA_VISIBLE_DEVICES"]
        assert found["OMP_NUM_THREADS"] == expected["OMP_NUM_THREADS"]
    # Every process of the run ends: the ranks lead process groups of their own (torchrun's).
    deadline = time.monotonic() + 60
    while not all(_is_gone(pid) for pid in seen):
        assert time.monotonic() < deadline, f"still running: {[p for p in seen if not _is_gone(p)]}"
        time.sleep(0.1)


def _submit_pair(dataset_version, registered_model, scientist, **spec_changes) -> Job:
    return do_submit_job(
        kind=JobKind.TRAIN,
        dataset_version=dataset_version,
        registered_model=registered_model,
        spec=small_training_spec() | {"resources": {"class": "pair", "gpus": 2}} | spec_changes,
        actor=scientist,
    )


@pytest.fixture
def pair_slot(settings):
    """A class of 2 GPUs and a worker whose slot holds 2 (no GPU here: 2 gloo ranks on the CPU)."""
    settings.STEWARD_RESOURCE_CLASSES = settings.STEWARD_RESOURCE_CLASSES | {"pair": PAIR}
    settings.STEWARD_WORKER_GPUS = "0,1"
    settings.STEWARD_JOB_THREADS = 2


def test_a_two_gpu_job_trains_under_torchrun_with_ddp_into_one_version(
    pair_slot, dataset_version, registered_model, scientist
):
    job = _submit_pair(dataset_version, registered_model, scientist)

    state = execute_job(job.pk, worker="gpu-2@node")

    job.refresh_from_db()
    # A CI run once saw "queued" here (the torchrun child lost, queued for a retry): say why.
    assert state == JobState.SUCCEEDED, (job.state_detail, job.error, job.log_tail[-3000:])
    lines = job.log_tail.splitlines()
    assert lines[:3] == [
        "running on gpu-2@node: class pair, GPU(s) 0,1",
        "DDP under torchrun: world size 2, backend gloo, 1 thread(s) per rank",
        "training on 8645 rows, 11 features, device cpu",
    ]
    # Rank 0 alone reports: each epoch and checkpoint once.
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    assert lines.count("checkpoint saved at epoch 1") == 1
    assert [record["epoch"] for record in job.history] == [1, 2, 3]
    version = job.output_model_version
    assert list(ModelVersion.objects.values_list("pk", "source_job_id")) == [(version.pk, job.pk)]
    assert set(version.metrics) == {"loss", "rmse", "mae", "r2", "train_rows", "validation_rows"}
    assert (version.metrics["train_rows"], version.metrics["validation_rows"]) == (6916.0, 1729.0)
    assert (job.gpu_time_s, job.peak_gpu_mem_mb) == (None, None)  # no CUDA here
    assert not checkpoint_folder(job.pk).exists()


def test_a_two_gpu_job_resumes_from_its_checkpoint_under_ddp(
    pair_slot, dataset_version, registered_model, scientist, bike_frame
):
    job = _submit_pair(dataset_version, registered_model, scientist, epochs=4)
    # The checkpoint an earlier attempt left at epoch 2, as one process writes it (a DDP rank 0
    # writes the same state: the unwrapped model's).
    saved: dict = {}
    reached = [0]
    spec = parse_spec(small_training_spec() | {"epochs": 4}, list(bike_frame.columns))
    with pytest.raises(training.TrainingStopped):
        training.train(
            bike_frame[bike_frame["yr"] == 0],
            spec,
            lambda epoch, epochs, record: reached.__setitem__(0, epoch),
            on_checkpoint=lambda epoch, state: saved.update(state),
            should_stop=lambda: reached[0] == 2,
        )
    folder = checkpoint_folder(job.pk)
    folder.mkdir(parents=True)
    torch.save(saved, folder / "epoch-00002.pt")

    assert execute_job(job.pk) == JobState.SUCCEEDED

    job.refresh_from_db()
    lines = job.log_tail.splitlines()
    assert "resuming from epoch 2 (its checkpoint: model, optimizer and preprocessing)" in lines
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["3/4", "4/4"]
    assert [record["epoch"] for record in job.history] == [1, 2, 3, 4]
    assert list(ModelVersion.objects.values_list("source_job_id", flat=True)) == [job.pk]


def test_the_worker_s_drift_path_never_loads_torch_and_predicts_in_a_child(
    bike_training_result, bike_frame, tmp_path
):
    """A drift check's predictions run in a child process: the worker, with every task module
    imported, predicts on reference rows and still holds no torch module (no CUDA initialised)."""
    artifact = tmp_path / "model.pt"
    artifact.write_bytes(bike_training_result.artifact)
    rows = bike_frame[bike_frame["yr"] == 1].head(500)
    rows_file = tmp_path / "rows.parquet"
    rows.to_parquet(rows_file)
    script = (
        "import json, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); "
        "import django; django.setup(); import pandas as pd; import config.celery; "
        "config.celery.app.loader.import_default_modules(); "
        "from governance.models import ModelVersion, RegisteredModel; "
        "from monitoring.execute import predict_with_model; "
        "version = ModelVersion(model=RegisteredModel(name='bike-demand'), version=1, "
        "artifact=sys.argv[1], sha256=sys.argv[2]); "
        "predictions = predict_with_model(version, pd.read_parquet(sys.argv[3])); "
        "print(json.dumps([list(predictions.index), list(predictions)])); "
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'torch'))"
    )
    done = subprocess.run(  # noqa: S603 - our interpreter running a fixed script
        [
            sys.executable,
            "-c",
            script,
            artifact.name,
            hashlib.sha256(artifact.read_bytes()).hexdigest(),
            str(rows_file),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=django_settings.BASE_DIR,
        env=os.environ | {"STEWARD_ARTIFACT_ROOT": str(tmp_path)},
    )

    printed = done.stdout.strip().splitlines()
    assert printed[-1] == "[]"
    index, values = json.loads(printed[-2])
    expected = inference.predict(rows, inference.load_model(bike_training_result.artifact))
    assert index == list(rows.index)
    assert values == pytest.approx(list(expected), rel=1e-6)


# Queues of the tests' own: a development worker on the same broker must not take these jobs.
ROUTED = {
    "cpu": {"queue": "steward-tests-cpu", "gpus": 0, "price_per_hour": 0.1},
    "gpu": {"queue": "steward-tests-gpu", "gpus": 1, "price_per_hour": 2.5},
}


@pytest.fixture
def class_workers(settings, tmp_path):
    """One real worker process per class of ``ROUTED``, each consuming its class's queue only;
    the gpu one is told its slot's device (``STEWARD_WORKER_GPUS=0``; no GPU here). Yields
    {class: process}; all are stopped after the test."""
    settings.STEWARD_RESOURCE_CLASSES = ROUTED
    app = config.celery.app
    with app.connection_for_write() as conn:
        for routed in ROUTED.values():  # left-overs of an interrupted run name another database
            conn.default_channel.queue_declare(routed["queue"])
            conn.default_channel.queue_purge(routed["queue"])
    env = os.environ | {
        "DATABASE_URL": _database_url(),
        "STEWARD_ARTIFACT_ROOT": str(django_settings.ARTIFACT_ROOT),
        "STEWARD_RESOURCE_CLASSES": json.dumps(ROUTED),
        "CELERY_BROKER_URL": app.conf.broker_url,
    }
    workers = {}
    for name, routed in ROUTED.items():
        command = [sys.executable, "-m", "celery", "-A", "config.celery", "worker", "--pool", "solo"]
        command += ["-Q", routed["queue"], "-n", f"{name}@%h", "--without-gossip", "--without-mingle"]
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        workers[name] = subprocess.Popen(  # noqa: S603 - our interpreter running Celery
            command,
            env=env | {"STEWARD_WORKER_GPUS": "0" if routed["gpus"] else ""},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=django_settings.BASE_DIR,
        )
    yield workers
    for process in workers.values():
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_each_job_runs_on_a_worker_of_its_class_s_queue_only(
    class_workers, client_for, scientist, dataset_version, registered_model, training_spec
):
    client = client_for(scientist)
    asked = ["gpu", "cpu", "gpu"]
    ids = []
    for name in asked:
        body = {
            "kind": "train",
            "dataset_version": dataset_version.pk,
            "registered_model": registered_model.pk,
            "spec": training_spec | {"resources": {"class": name}},
        }
        status, created = _post(client, body)
        assert status == 201, created
        ids.append(created["id"])

    _wait_until(
        "finished",
        lambda: (
            set(Job.objects.filter(pk__in=ids).values_list("state", flat=True)) <= {"succeeded", "failed"}
        ),
    )

    host = socket.gethostname()
    for job_id, name in zip(ids, asked, strict=True):
        job = Job.objects.get(pk=job_id)
        assert (job.state, job.error, job.attempt) == (JobState.SUCCEEDED, "", 1)
        running = [line for line in job.log_tail.splitlines() if line.startswith("running on ")]
        gpus = "GPU(s) 0" if name == "gpu" else "no GPU"
        assert running == [f"running on {name}@{host}: class {name}, {gpus}"]
    assert ModelVersion.objects.count() == 3
    # The workers ran training and registered versions without loading torch (no CUDA in them).
    for process in class_workers.values():
        assert "libtorch" not in Path(f"/proc/{process.pid}/maps").read_text()


def test_the_soft_time_limit_stops_every_rank_at_one_epoch_with_one_checkpoint(tmp_path):
    """SIGUSR1 goes to the ranks, not to torchrun (it would die of it); they agree to stop."""
    task = _task(tmp_path, checkpoint_every=0)
    task["spec"] = task["spec"] | {"epochs": 1000, "batch_size": 64}
    run = launcher.Launch(task, launcher.Limits(soft_wall_time_s=1, threads=2), tmp_path, ["0", "1"])
    epochs: list[int] = []

    with pytest.raises(launcher.LimitExceeded) as stopped:
        run.run(
            lambda event: epochs.append(event["epoch"]) if event["event"] == "epoch" else None, lambda: None
        )

    last = epochs[-1]
    after = f"{last} epoch{'s' if last > 1 else ''}"
    assert str(stopped.value) == f"stopped at the soft time limit of 1 s after {after}; checkpoint saved"
    assert epochs == list(range(1, last + 1))
    assert [path.name for path in (tmp_path / "checkpoints").iterdir()] == [f"epoch-{last:05d}.pt"]
    saved = torch.load(tmp_path / "checkpoints" / f"epoch-{last:05d}.pt", weights_only=True)
    assert (saved["epoch"], len(saved["history"])) == (last, last)

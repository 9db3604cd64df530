"""Running a claimed job end to end: the plain function behind the Celery task."""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from django.conf import settings
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from governance import datafiles
from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.model_versions import do_register_model_version
from governance.models import Dataset, DatasetVersion, ModelVersion
from governance.names import name_key
from lineage.actions import do_record_edges
from lineage.models import Relation
from lineage.nodes import NodeRef
from runners import accounting, launcher, ray_backend
from runners.actions import JOBS, do_succeed_job, job_limits
from runners.lifecycle import RUNNING, Cancelled, ClaimLost
from runners.models import Job, JobBackend, JobKind
from runners.specs import SpecError, parse_spec

logger = logging.getLogger(__name__)
LOG_TAIL_LINES = 50
# The column the child's inference adds (runners.inference, which this module does not import).
PREDICTION_COLUMN = "prediction"
# How often the worker checks a running job's cancel flag and claim, and samples its memory.
POLL_S = 0.5

# Errors that mean the input is wrong: the job fails with the message, no traceback needed.
# The compute runs in a child process (runners.launcher), which reports its errors as messages.
USER_ERRORS = (SpecError, launcher.ComputeError, datafiles.DataFileError, FileNotFoundError)


def execute_job(job_id: int, worker: str = "") -> str:
    """Run job ``job_id`` once; safe to call again for the same job (redelivery).

    ``worker``: the name of the worker running it (Celery's node name), shown in the job's log;
    the host's name by default. The child sees the GPUs of this worker's slot the job asked for
    (``STEWARD_WORKER_GPUS``, ``runners.launcher.visible_devices``).

    Returns the job's state afterwards. A job found running is left alone while its heartbeat is
    fresh, and run again (a new attempt) when its worker died (``runners.lifecycle``); a training
    job's new attempt resumes from its latest checkpoint. The compute runs in a child process
    (``runners.launcher``); this worker keeps every database write. The outputs are registered
    only while the job still runs under this delivery's attempt.
    """

    def body(attempt: int) -> None:
        job = Job.objects.get(pk=job_id)
        if job.backend == JobBackend.RAY:
            # The cluster places the run and gives it its GPUs; this worker's slot is not used.
            devices: list[str] = []
            gpus = f"{job.gpus} GPU(s) from the Ray cluster" if job.gpus else "no GPU"
        else:
            devices = launcher.visible_devices(settings.STEWARD_WORKER_GPUS, job.gpus)
            gpus = f"GPU(s) {','.join(devices)}" if devices else "no GPU"
        _append_log(
            job_id,
            attempt,
            f"running on {worker or socket.gethostname()}: class {job.resource_class}, {gpus}",
        )
        with JOBS.heartbeat(job_id, settings.STEWARD_JOB_HEARTBEAT_INTERVAL_S, attempt):
            if job.kind == JobKind.TRAIN:
                _run_training(job, attempt, devices)
            else:
                _run_inference(job, attempt, devices)

    return JOBS.run(job_id, body, user_errors=USER_ERRORS, retry_errors=(launcher.ComputeLost,))


def checkpoint_folder(job_id: int) -> Path:
    """Where job ``job_id``'s training checkpoints live in the artifact store."""
    return Path(settings.ARTIFACT_ROOT) / "checkpoints" / f"job-{job_id}"


def _append_log(job_id: int, attempt: int, line: str, **fields: Any) -> None:
    """Append a log line and update telemetry (progress, heartbeat); not an audited change.

    Raises ClaimLost when the job no longer runs under ``attempt`` (another delivery took it over
    after this worker looked dead): the run stops instead of training on for nothing.
    """
    job = Job.objects.only("log_tail").get(pk=job_id)
    lines = ([*job.log_tail.splitlines(), line])[-LOG_TAIL_LINES:]
    fields |= {"log_tail": "\n".join(lines), "heartbeat_at": timezone.now()}
    if not JOBS.record_progress(job_id, attempt, **fields):
        raise ClaimLost(f"job {job_id} no longer runs as attempt {attempt}")


def _checker(job_id: int, attempt: int) -> Callable[[], None]:
    """What the launcher runs every poll: Cancelled on a cancel request, ClaimLost when another
    delivery took the job over; either stops the child's process group."""

    def check() -> None:
        found = Job.objects.filter(pk=job_id).values_list("is_cancel_requested", "state", "attempt").first()
        if found is None or found[1:] != (RUNNING, attempt):
            raise ClaimLost(f"job {job_id} is {found}, no longer running as attempt {attempt}")
        if found[0]:
            raise Cancelled

    return check


def _ray_submission(job: Job, attempt: int) -> str:
    """The Ray submission id of the job's ``attempt`` (``ray_backend.submission_id``)."""
    return ray_backend.submission_id(job.pk, attempt, job.created_at.strftime("%Y%m%dT%H%M%S%f"))


@contextmanager
def _workdir(job: Job, attempt: int) -> Iterator[Path]:
    """The folder of one attempt's task file and outputs, removed afterwards.

    A local run's is a temporary folder; a Ray run's is in the artifact store, which the Ray
    nodes share (docs/operations.md), named after its submission, so that a redelivery that
    follows the same submission finds the outputs it writes.
    """
    if job.backend != JobBackend.RAY:
        with tempfile.TemporaryDirectory(prefix=f"steward-job-{job.pk}-") as tmp:
            yield Path(tmp)
        return
    folder = Path(settings.ARTIFACT_ROOT) / "ray" / _ray_submission(job, attempt)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _runner(
    job: Job, attempt: int, task: dict[str, Any], limits: launcher.Limits, workdir: Path, devices: list[str]
) -> launcher.Launch | ray_backend.RayLaunch:
    """The job's backend for one attempt: a child of this worker, or a Ray job (issue 16)."""
    if job.backend != JobBackend.RAY:
        return launcher.Launch(task, limits, workdir, devices)
    if not settings.STEWARD_RAY_ADDRESS:
        raise launcher.ComputeError(
            "the job runs on the ray backend but STEWARD_RAY_ADDRESS is not set on this worker",
            is_user_error=False,
        )
    submission = _ray_submission(job, attempt)
    # Written before the submission: a worker that dies right after it leaves the id behind.
    if not JOBS.record_progress(job.pk, attempt, backend_job_id=submission):
        raise ClaimLost(f"job {job.pk} no longer runs as attempt {attempt}")
    return ray_backend.RayLaunch(
        task,
        limits,
        workdir,
        address=settings.STEWARD_RAY_ADDRESS,
        submission=submission,
        gpus=job.gpus,
        earlier_submissions=[_ray_submission(job, earlier) for earlier in range(1, attempt)],
    )


def _launch(
    job: Job,
    attempt: int,
    task: dict[str, Any],
    workdir: Path,
    on_event: Callable[[dict[str, Any]], None],
    devices: list[str],
) -> dict[str, Any]:
    """Run ``task`` on the job's backend under its limits, seeing ``devices`` only (a local run;
    Ray gives its own GPUs); its usage is added to the job's accounting whatever the outcome.
    Returns the child's result event."""
    limits = job_limits(job)
    Job.objects.filter(pk=job.pk, attempt=attempt).update(limits=limits.as_dict())
    run = _runner(job, attempt, task, limits, workdir, devices)
    try:
        return run.run(
            on_event, _checker(job.pk, attempt), poll_s=POLL_S, grace_s=settings.STEWARD_JOB_KILL_GRACE_S
        )
    finally:
        _record_usage(job.pk, attempt, run.usage)


def _record_usage(job_id: int, attempt: int, usage: launcher.Usage) -> None:
    """Add an attempt's resource use and its cost to the job's accounting (telemetry, not
    audited): a failed, cancelled or lost attempt's compute is paid for too (issue 16)."""
    zero = Value(0.0)
    resource_class = Job.objects.values_list("resource_class", flat=True).get(pk=job_id)
    cost = accounting.job_cost(usage.wall_time_s, accounting.price_per_hour(resource_class))
    fields: dict[str, Any] = {
        "cost": Coalesce(F("cost"), zero) + cost,
        "wall_time_s": Coalesce(F("wall_time_s"), zero) + usage.wall_time_s,
        "cpu_time_s": Coalesce(F("cpu_time_s"), zero) + usage.cpu_time_s,
        "peak_rss_mb": Greatest(Coalesce(F("peak_rss_mb"), zero), Value(usage.peak_rss_mb)),
    }
    if usage.rows_read is not None and usage.bytes_read is not None:
        fields["rows_read"] = Coalesce(F("rows_read"), Value(0)) + usage.rows_read
        fields["bytes_read"] = Coalesce(F("bytes_read"), Value(0)) + usage.bytes_read
    if usage.gpu_time_s is not None:
        fields["gpu_time_s"] = Coalesce(F("gpu_time_s"), zero) + usage.gpu_time_s
        fields["peak_gpu_mem_mb"] = Greatest(
            Coalesce(F("peak_gpu_mem_mb"), zero), Value(usage.peak_gpu_mem_mb)
        )
    Job.objects.filter(pk=job_id, attempt=attempt).update(**fields)


def _data_task(job: Job) -> dict[str, Any]:
    version = job.dataset_version
    return {
        "path": str(version.path),
        "format": version.format,
        "filename": version.original_filename or version.file,
        "name": str(version),
        "where": job.spec.get("where") or {},
    }


def _on_training_event(job: Job, attempt: int, event: dict[str, Any]) -> None:
    """Turn one event of the training child into the job's log, progress and history."""
    kind = event.get("event")
    if kind == "log":
        extra = {"device": event["device"]} if "device" in event else {}
        _append_log(job.pk, attempt, event["message"], **extra)
    elif kind == "resumed":
        epoch = event["epoch"]
        _append_log(
            job.pk,
            attempt,
            f"resuming from epoch {epoch} (its checkpoint: model, optimizer and preprocessing)",
            history=event["history"],
        )
    elif kind == "epoch":
        epoch, epochs, record = event["epoch"], event["epochs"], event["record"]
        _checker(job.pk, attempt)()
        summary = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch")
        history = [*Job.objects.get(pk=job.pk).history, record]
        _append_log(
            job.pk,
            attempt,
            f"epoch {epoch}/{epochs} {summary}",
            progress=epoch / epochs * 0.95,
            history=history,
        )
    elif kind == "checkpoint":
        _append_log(job.pk, attempt, f"checkpoint saved at epoch {event['epoch']}")


def _run_training(job: Job, attempt: int, devices: list[str]) -> None:
    spec = parse_spec(job.spec, job.dataset_version.column_names)
    folder = checkpoint_folder(job.pk)
    resume = launcher.latest_checkpoint(folder)
    with _workdir(job, attempt) as tmp:
        task = {
            "kind": "train",
            "data": _data_task(job),
            "spec": spec.as_dict(),
            "checkpoint_dir": str(folder),
            "checkpoint_every": spec.checkpoint_every,
            "resume": str(resume) if resume else None,
            "output": str(Path(tmp) / "model.pt"),
        }
        result = _launch(
            job, attempt, task, Path(tmp), lambda event: _on_training_event(job, attempt, event), devices
        )
        artifact = Path(result["artifact"]).read_bytes()
    with JOBS.fenced(job.pk, attempt):
        version = do_register_model_version(
            model=job.registered_model,
            artifact_bytes=artifact,
            metrics=result["metrics"],
            signature=result["signature"],
            training_spec=spec.as_dict(),
            training_dataset_version=job.dataset_version,
            source_job_id=job.pk,
            actor=None,
            on_behalf_of=job.created_by,
        )
        job_node = NodeRef("job", job.pk)
        do_record_edges(
            [
                (NodeRef("dataset_version", job.dataset_version_id), job_node, Relation.INPUT),
                (job_node, NodeRef("model_version", version.pk), Relation.OUTPUT),
            ]
        )
        do_succeed_job(
            job.pk, output_model_version=version, metrics=result["metrics"], device=result["device"]
        )
    # The version is registered: the checkpoints have served (kept after a failure, for a look).
    shutil.rmtree(folder, ignore_errors=True)


def _on_inference_event(job: Job, attempt: int, event: dict[str, Any]) -> None:
    if event.get("event") == "log":
        progress = 0.8 if event["message"].startswith("writing") else 0.1
        extra = {"device": event["device"]} if "device" in event else {}
        _append_log(job.pk, attempt, event["message"], progress=progress, **extra)


def _run_inference(job: Job, attempt: int, devices: list[str]) -> None:
    model_version = job.model_version
    fmt = job.dataset_version.format
    with _workdir(job, attempt) as tmp:
        path = Path(tmp) / f"predictions.{fmt}"
        task = {
            "kind": "infer",
            "data": _data_task(job),
            "model": {
                "path": str(model_version.path),
                "sha256": model_version.sha256,
                "name": str(model_version),
                "flavor": model_version.flavor,
            },
            "output": str(path),
        }
        result = _launch(
            job, attempt, task, Path(tmp), lambda event: _on_inference_event(job, attempt, event), devices
        )
        with JOBS.fenced(job.pk, attempt):
            dataset = _predictions_dataset(job)
            predictions = do_register_dataset_version(
                dataset=dataset,
                file_path=path,
                filename=f"{dataset.name}-job{job.pk}.{fmt}",
                source=DatasetVersion.Source.JOB,
                description=f"Predictions of {model_version} on {job.dataset_version} by job #{job.pk}",
                actor=None,
                on_behalf_of=job.created_by,
            )
            job_node = NodeRef("job", job.pk)
            do_record_edges(
                [
                    (NodeRef("model_version", model_version.pk), job_node, Relation.INPUT),
                    (NodeRef("dataset_version", job.dataset_version_id), job_node, Relation.INPUT),
                    (job_node, NodeRef("dataset_version", predictions.pk), Relation.OUTPUT),
                ]
            )
            do_succeed_job(
                job.pk,
                output_dataset_version=predictions,
                metrics={"rows": float(result["rows"])},
                device=str(result["device"]),
            )


def _predictions_dataset(job: Job) -> Dataset:
    name = job.spec.get("output_dataset") or f"{job.model_version.model.name}-predictions"
    # Names are unique per team (issue 9): another team's dataset of that name is none of this job's business.
    dataset = Dataset.objects.select_for_update().filter(team_id=job.team_id, name_key=name_key(name)).first()
    if dataset is None:
        return do_create_dataset(
            team=job.team,
            name=name,
            description=f"Predictions of {job.model_version.model.name}",
            actor=None,
            on_behalf_of=job.created_by,
        )
    return dataset


def predict_in_child(model_version: ModelVersion, rows: pd.DataFrame) -> pd.Series:
    """The model version's predictions on ``rows``, aligned with their index, computed in a child
    process (``runners.launcher``) so that torch, and CUDA with it, is never loaded in the worker
    (issue 16); on the CPU (a drift check holds no GPU slot), under the settings' default limits.

    The artifact's sha256 is checked first. Raises ``launcher.ComputeError`` with the child's
    message (a changed artifact, a missing feature column, no rows).
    """
    limits = launcher.Limits(
        wall_time_s=settings.STEWARD_JOB_WALL_TIME_S or None,
        memory_mb=settings.STEWARD_JOB_MEMORY_MB or None,
        threads=settings.STEWARD_JOB_THREADS,
    )
    with tempfile.TemporaryDirectory(prefix="steward-predict-") as tmp:
        source, output = Path(tmp) / "rows.parquet", Path(tmp) / "predictions.parquet"
        source.write_bytes(datafiles.write_frame(rows, "parquet"))
        task = {
            "kind": "infer",
            "data": {
                "path": str(source),
                "format": "parquet",
                "filename": source.name,
                "name": f"the rows given to {model_version}",
                "where": {},
            },
            "model": {
                "path": str(model_version.path),
                "sha256": model_version.sha256,
                "name": str(model_version),
                "flavor": model_version.flavor,
            },
            "output": str(output),
        }
        launcher.Launch(task, limits, Path(tmp)).run(
            lambda event: None, lambda: None, poll_s=POLL_S, grace_s=settings.STEWARD_JOB_KILL_GRACE_S
        )
        predicted = datafiles.read_frame(output, "parquet", output.name)[PREDICTION_COLUMN]
    return pd.Series(predicted.to_numpy(), index=rows.index, name=PREDICTION_COLUMN)

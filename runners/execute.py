"""Running a claimed job end to end: the plain function behind the Celery task."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.utils import timezone

from governance import datafiles
from governance.actions.registry import (
    do_create_dataset,
    do_register_dataset_version,
    do_register_model_version,
)
from governance.models import Dataset, DatasetVersion
from lineage.actions import do_record_edges
from lineage.models import Relation
from lineage.nodes import NodeRef
from runners import inference, training
from runners.actions import claim_job, do_fail_job, do_mark_job_cancelled, do_succeed_job
from runners.models import TERMINAL_STATES, Job, JobKind, JobState

logger = logging.getLogger(__name__)
LOG_TAIL_LINES = 50

# Errors that mean the input is wrong: the job fails with the message, no traceback needed.
USER_ERRORS = (
    training.SpecError,
    training.TrainingError,
    inference.ArtifactError,
    datafiles.DataFileError,
    FileNotFoundError,
)


class JobCancelled(Exception):
    """A cancel was requested while the job was running."""


def execute_job(job_id: int) -> str:
    """Run job ``job_id`` once; safe to call again for the same job (redelivery).

    Returns the job's state afterwards. A job found already running means an earlier delivery's
    worker died mid-run (tasks are acked late), so it is failed with that reason, not re-run.
    """
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        logger.warning("job %s does not exist; nothing to run", job_id)
        return "missing"
    if job.state in TERMINAL_STATES:
        return job.state
    if job.state == JobState.RUNNING:
        do_fail_job(
            job_id, "the worker running this job stopped before it finished (killed or lost); resubmit it"
        )
        return JobState.FAILED
    if not claim_job(job_id):
        return Job.objects.get(pk=job_id).state
    job.refresh_from_db()
    try:
        with _heartbeat(job_id):
            if job.kind == JobKind.TRAIN:
                _run_training(job)
            else:
                _run_inference(job)
    except JobCancelled:
        do_mark_job_cancelled(job_id)
    except USER_ERRORS as exc:
        do_fail_job(job_id, str(exc))
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        do_fail_job(job_id, f"internal error: {type(exc).__name__}: {exc}")
    return Job.objects.get(pk=job_id).state


@contextmanager
def _heartbeat(job_id: int) -> Iterator[None]:
    """Touch the job's heartbeat every STEWARD_JOB_HEARTBEAT_INTERVAL_S while the body runs.

    A worker killed outright (kill -9 of the whole worker: no redelivery on every broker) stops
    the heartbeat, so beat's ``fail_stale_jobs`` fails the job within the timeout, however long
    one epoch takes.
    """
    if transaction.get_connection().in_atomic_block:
        # Called inside a caller's transaction (tests drive execute_job that way): the job row
        # is locked by it, so a second connection's heartbeat would wait on it forever.
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.STEWARD_JOB_HEARTBEAT_INTERVAL_S):
                Job.objects.filter(pk=job_id, state=JobState.RUNNING).update(heartbeat_at=timezone.now())
        except DatabaseError:
            logger.exception("job %s: heartbeat stopped", job_id)
        finally:
            close_old_connections()

    thread = threading.Thread(target=beat, name=f"job-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _append_log(job_id: int, line: str, **fields) -> None:
    """Append a log line and update telemetry (progress, heartbeat); not an audited change."""
    job = Job.objects.only("log_tail").get(pk=job_id)
    lines = ([*job.log_tail.splitlines(), line])[-LOG_TAIL_LINES:]
    Job.objects.filter(pk=job_id).update(log_tail="\n".join(lines), heartbeat_at=timezone.now(), **fields)


def _check_cancel(job_id: int) -> None:
    if Job.objects.filter(pk=job_id, is_cancel_requested=True).exists():
        raise JobCancelled


def _load_rows(job: Job, where: dict) -> tuple:
    version = job.dataset_version
    frame = datafiles.read_frame(version.path, version.format, version.original_filename or version.file)
    rows = datafiles.apply_where(frame, where or {})
    if rows.empty:
        raise training.TrainingError(f"no rows of {version} match where={where}")
    return frame, rows


def _run_training(job: Job) -> None:
    _, rows = _load_rows(job, job.spec.get("where"))
    spec = training.parse_spec(job.spec, list(rows.columns))
    device = training.select_device()
    _append_log(
        job.pk,
        f"training on {len(rows)} rows, {len(spec.features)} features, device {device}",
        device=str(device),
    )

    def on_epoch(epoch: int, epochs: int, record: dict) -> None:
        _check_cancel(job.pk)
        summary = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch")
        history = [*Job.objects.get(pk=job.pk).history, record]
        _append_log(
            job.pk, f"epoch {epoch}/{epochs} {summary}", progress=epoch / epochs * 0.95, history=history
        )

    result = training.train(rows, spec, on_epoch)
    with transaction.atomic():
        version = do_register_model_version(
            model=job.registered_model,
            artifact_bytes=result.artifact,
            metrics=result.metrics,
            signature=result.signature,
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
        do_succeed_job(job.pk, output_model_version=version, metrics=result.metrics, device=result.device)


def _run_inference(job: Job) -> None:
    model_version = job.model_version
    artifact = model_version.path.read_bytes()
    if hashlib.sha256(artifact).hexdigest() != model_version.sha256:
        raise inference.ArtifactError(f"artifact of {model_version} does not match its recorded sha256")
    loaded = inference.load_model(artifact)
    _, rows = _load_rows(job, job.spec.get("where"))
    _append_log(
        job.pk,
        f"predicting {len(rows)} rows with {model_version} on {loaded.device}",
        device=str(loaded.device),
        progress=0.1,
    )
    _check_cancel(job.pk)
    output = rows.copy()
    output[inference.PREDICTION_COLUMN] = inference.predict(rows, loaded)
    fmt = job.dataset_version.format
    _append_log(job.pk, f"writing {len(output)} predictions", progress=0.8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"predictions.{fmt}"
        path.write_bytes(datafiles.write_frame(output, fmt))
        with transaction.atomic():
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
                metrics={"rows": float(len(output))},
                device=str(loaded.device),
            )


def _predictions_dataset(job: Job) -> Dataset:
    name = job.spec.get("output_dataset") or f"{job.model_version.model.name}-predictions"
    dataset = Dataset.objects.select_for_update().filter(name=name).first()
    if dataset is None:
        return do_create_dataset(
            team=job.team,
            name=name,
            description=f"Predictions of {job.model_version.model.name}",
            actor=None,
            on_behalf_of=job.created_by,
        )
    if dataset.team_id != job.team_id:
        raise training.SpecError(f"output_dataset: {name!r} belongs to another team")
    return dataset

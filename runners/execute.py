"""Running a claimed job end to end: the plain function behind the Celery task."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from governance import datafiles
from governance.actions.datasets import do_create_dataset, do_register_dataset_version
from governance.actions.model_versions import do_register_model_version
from governance.models import Dataset, DatasetVersion
from governance.names import name_key
from lineage.actions import do_record_edges
from lineage.models import Relation
from lineage.nodes import NodeRef
from runners import inference, training
from runners.actions import JOBS, do_succeed_job
from runners.lifecycle import Cancelled, ClaimLost
from runners.models import Job, JobKind
from runners.specs import SpecError, parse_spec

logger = logging.getLogger(__name__)
LOG_TAIL_LINES = 50

# Errors that mean the input is wrong: the job fails with the message, no traceback needed.
USER_ERRORS = (
    SpecError,
    training.TrainingError,
    inference.ArtifactError,
    datafiles.DataFileError,
    FileNotFoundError,
)


def execute_job(job_id: int) -> str:
    """Run job ``job_id`` once; safe to call again for the same job (redelivery).

    Returns the job's state afterwards. A job found running is left alone while its heartbeat is
    fresh, and run again (a new attempt) when its worker died (``runners.lifecycle``). The
    outputs are registered only while the job still runs under this delivery's attempt.
    """

    def body(attempt: int) -> None:
        job = Job.objects.get(pk=job_id)
        with JOBS.heartbeat(job_id, settings.STEWARD_JOB_HEARTBEAT_INTERVAL_S, attempt):
            if job.kind == JobKind.TRAIN:
                _run_training(job, attempt)
            else:
                _run_inference(job, attempt)

    return JOBS.run(job_id, body, user_errors=USER_ERRORS)


def _append_log(job_id: int, attempt: int, line: str, **fields) -> None:
    """Append a log line and update telemetry (progress, heartbeat); not an audited change.

    Raises ClaimLost when the job no longer runs under ``attempt`` (another delivery took it over
    after this worker looked dead): the run stops instead of training on for nothing.
    """
    job = Job.objects.only("log_tail").get(pk=job_id)
    lines = ([*job.log_tail.splitlines(), line])[-LOG_TAIL_LINES:]
    fields |= {"log_tail": "\n".join(lines), "heartbeat_at": timezone.now()}
    if not JOBS.record_progress(job_id, attempt, **fields):
        raise ClaimLost(f"job {job_id} no longer runs as attempt {attempt}")


def _check_cancel(job_id: int) -> None:
    if Job.objects.filter(pk=job_id, is_cancel_requested=True).exists():
        raise Cancelled


def _load_rows(job: Job, where: dict) -> tuple:
    version = job.dataset_version
    frame = datafiles.read_frame(version.path, version.format, version.original_filename or version.file)
    rows = datafiles.apply_where(frame, where or {})
    if rows.empty:
        raise training.TrainingError(f"no rows of {version} match where={where}")
    return frame, rows


def _run_training(job: Job, attempt: int) -> None:
    _, rows = _load_rows(job, job.spec.get("where"))
    spec = parse_spec(job.spec, list(rows.columns))
    device = training.select_device()
    _append_log(
        job.pk,
        attempt,
        f"training on {len(rows)} rows, {len(spec.features)} features, device {device}",
        device=str(device),
    )

    def on_epoch(epoch: int, epochs: int, record: dict) -> None:
        _check_cancel(job.pk)
        summary = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch")
        history = [*Job.objects.get(pk=job.pk).history, record]
        _append_log(
            job.pk,
            attempt,
            f"epoch {epoch}/{epochs} {summary}",
            progress=epoch / epochs * 0.95,
            history=history,
        )

    result = training.train(rows, spec, on_epoch)
    with JOBS.fenced(job.pk, attempt):
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


def _run_inference(job: Job, attempt: int) -> None:
    model_version = job.model_version
    loaded = inference.load_checked(model_version.path.read_bytes(), model_version.sha256, str(model_version))
    _, rows = _load_rows(job, job.spec.get("where"))
    _append_log(
        job.pk,
        attempt,
        f"predicting {len(rows)} rows with {model_version} on {loaded.device}",
        device=str(loaded.device),
        progress=0.1,
    )
    _check_cancel(job.pk)
    output = rows.copy()
    output[inference.PREDICTION_COLUMN] = inference.predict(rows, loaded)
    fmt = job.dataset_version.format
    _append_log(job.pk, attempt, f"writing {len(output)} predictions", progress=0.8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"predictions.{fmt}"
        path.write_bytes(datafiles.write_frame(output, fmt))
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
                metrics={"rows": float(len(output))},
                device=str(loaded.device),
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

"""Running a claimed job end to end: the plain function behind the Celery task."""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shutil
import socket
import stat
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

import governance
from governance import datafiles, storage
from governance.actions.datasets import dataset_named, do_register_dataset_version
from governance.actions.model_versions import do_register_model_version
from governance.actions.pii import describe_plan, pii_refusal
from governance.actions.tokens import do_issue_job_token, do_revoke_job_tokens
from governance.models import Dataset, DatasetVersion, ModelVersion
from lineage.actions import do_record_edges
from lineage.models import Relation
from lineage.nodes import NodeRef
from runners import (
    accounting,
    checkpoints,
    code_runs,
    code_versions,
    evaluation_jobs,
    joblog,
    launcher,
    ray_backend,
    sandbox,
)
from runners.actions import JOBS, do_succeed_job, job_limits
from runners.checkpoints import checkpoint_folder as checkpoint_folder
from runners.child_predictions import ChildPredictions
from runners.evaluation_records import record_evaluation
from runners.lifecycle import RUNNING, Cancelled, ClaimLost
from runners.models import CodeVersion, Job, JobBackend, JobDataset, JobDatasetRole, JobKind
from runners.specs import SpecError, parse_spec

logger = logging.getLogger(__name__)
LOG_TAIL_LINES = joblog.LOG_TAIL_LINES
# The column the child's inference adds (runners.inference, which this module does not import).
PREDICTION_COLUMN = "prediction"
# How often the worker checks a running job's cancel flag and claim, and samples its memory.
POLL_S = 0.5

# Errors that mean the input is wrong: the job fails with the message, no traceback needed.
# The compute runs in a child process (runners.launcher), which reports its errors as messages.
# ArtifactUnreadable: an input erased, tampered with or missing in the store (issue 12).
USER_ERRORS = (
    SpecError,
    launcher.ComputeError,
    datafiles.DataFileError,
    FileNotFoundError,
    storage.ArtifactUnreadable,
)


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
        if why := _pii_refusal(job):
            raise SpecError(why)
        for version in _input_versions(job):
            if version.protects_id is not None:
                # Issue 12: say which data the run reads in place of the one the user named.
                _append_log(
                    job_id,
                    attempt,
                    f"reads {version}, the protected copy of {version.protects} under team "
                    f"{version.dataset.team.name}'s PII policy ({describe_plan(version.pii_protection)})",
                )
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
            elif job.kind == JobKind.CODE:
                _run_code(job, attempt, devices)
            elif job.kind == JobKind.EVALUATE:
                _run_evaluation(job, attempt, devices)
            else:
                _run_inference(job, attempt, devices)

    return JOBS.run(job_id, body, user_errors=USER_ERRORS, retry_errors=(launcher.ComputeLost,))


def _input_versions(job: Job) -> list[DatasetVersion]:
    # Training, inference and evaluation read their dataset version, a code run its inputs.
    if job.kind == JobKind.CODE:
        inputs = job.datasets.filter(role=JobDatasetRole.INPUT).select_related(
            "dataset_version__dataset__team"
        )
        return [link.dataset_version for link in inputs]
    return [job.dataset_version] if job.dataset_version_id is not None else []


def _refuse_erased_input(job: Job) -> None:
    """SpecError when the job's dataset version was erased while the job ran (GDPR Art. 17):
    what it made from the data is not registered. The row lock orders this with the erasure's
    own (``do_erase_dataset_version``): an erasure that commits first is seen here; one that
    comes after finds a registered output, like any model trained before an erasure."""
    if job.dataset_version_id is None:
        return
    version = DatasetVersion.objects.select_for_update().get(pk=job.dataset_version_id)
    if version.erased_at is not None:
        raise SpecError(
            f"its input {version} was erased while it ran ({version.erased_at:%Y-%m-%d %H:%M} UTC, "
            "GDPR Art. 17): what it made from it is not registered"
        )


def _pii_refusal(job: Job) -> str | None:
    """Why the team's PII policy refuses ``job``'s input data now, or None: the refusal at
    submission (``runners.actions.do_submit_job``, ``runners.code_runs``) is asked again when the
    job starts, since a policy set or tightened while the job waited (a start window, a budget
    hold, a queue) holds for it too; so is a protected copy made under rules since tightened."""
    for version in _input_versions(job):
        if why := pii_refusal(version):
            return f"refused when it started: {why}"
    return None


def _append_log(job_id: int, attempt: int, line: str | list[str], **fields: Any) -> None:
    """Append a log line (or several) and update telemetry (progress, heartbeat) in one write;
    not an audited change.

    Raises ClaimLost when the job no longer runs under ``attempt`` (another delivery took it over
    after this worker looked dead): the run stops instead of training on for nothing.
    """
    lines = [line] if isinstance(line, str) else line
    joblog.write_log(job_id, attempt, [(joblog.STEWARD_STREAM, text) for text in lines], **fields)


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
    job: Job,
    attempt: int,
    task: dict[str, Any],
    limits: launcher.Limits,
    workdir: Path,
    devices: list[str],
    command: launcher.Command | None = None,
    serves: bool = False,
) -> launcher.Launch | ray_backend.RayLaunch:
    """The job's backend for one attempt: a child of this worker, or a Ray job (issue 16); a
    serving child (``serves``, an evaluation's) is always this worker's."""
    if job.backend != JobBackend.RAY or serves:
        return launcher.Launch(task, limits, workdir, devices, command=command, serves=serves)
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
    *,
    command: launcher.Command | None = None,
    every_poll: Callable[[], None] | None = None,
    serving: Callable[[launcher.Launch, Callable[[], dict[str, Any]]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``task`` (or a code run's ``command``) on the job's backend under its limits, seeing
    ``devices`` only (a local run; Ray gives its own GPUs); its usage is added to the job's
    accounting whatever the outcome. ``every_poll`` runs before each cancel/claim check (a code
    run writes its buffered log then). ``serving``: the task is a serving child's, and
    ``serving(launch, follow)`` talks to it while ``follow()`` follows it (an evaluation's
    ``ChildPredictions.run``). Returns the child's result event."""
    limits = job_limits(job)
    Job.objects.filter(pk=job.pk, attempt=attempt).update(limits=limits.as_dict())
    run = _runner(job, attempt, task, limits, workdir, devices, command, serves=serving is not None)
    checker = _checker(job.pk, attempt)

    def check() -> None:
        if every_poll is not None:
            every_poll()
        checker()

    def follow() -> dict[str, Any]:
        return run.run(on_event, check, poll_s=POLL_S, grace_s=settings.STEWARD_JOB_KILL_GRACE_S)

    try:
        if serving is not None and isinstance(run, launcher.Launch):
            return serving(run, follow)
        return follow()
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


class _TrainingProgress:
    """Turns the training child's events into the job's log, progress and history (issue 17).

    Epochs and checkpoints that come faster than ``POLL_S`` are written together: one read of the
    log tail and one UPDATE per poll instead of a history re-read and two read-and-writes per
    epoch. The history is kept here, read from the row once. Each epoch is still checked against
    a cancel request and a lost claim when it arrives (one SELECT): an epoch reported after the
    cancel is not recorded, those before it are. ``flush()`` writes what is pending; the run
    calls it when the child ends.
    """

    def __init__(self, job_id: int, attempt: int):
        self.job_id, self.attempt = job_id, attempt
        self.history: list[dict[str, Any]] | None = None
        self.lines: list[str] = []
        self.fields: dict[str, Any] = {}
        self.written = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "log":
            self.lines.append(event["message"])
            if "device" in event:
                self.fields["device"] = event["device"]
            self.flush()
        elif kind == "resumed":
            self.history = list(event["history"])
            self.lines.append(
                f"resuming from epoch {event['epoch']} (its checkpoint: model, optimizer and preprocessing)"
            )
            self.fields["history"] = self.history
            self.flush()
        elif kind == "epoch":
            epoch, epochs, record = event["epoch"], event["epochs"], event["record"]
            try:
                _checker(self.job_id, self.attempt)()
            except Cancelled:
                self.flush()  # the epochs reported before the cancel request stand
                raise
            if self.history is None:
                self.history = list(Job.objects.values_list("history", flat=True).get(pk=self.job_id))
            self.history.append(record)
            summary = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch")
            self.lines.append(f"epoch {epoch}/{epochs} {summary}")
            self.fields |= {"progress": epoch / epochs * 0.95, "history": self.history}
            if time.monotonic() - self.written >= POLL_S:
                self.flush()
        elif kind == "checkpoint":
            # Managed mode stores it (encrypted) and removes the plaintext; see runners.checkpoints.
            self.lines.append(checkpoints.keep(self.job_id, event["epoch"], Path(event["path"])))

    def flush(self) -> None:
        if not self.lines and not self.fields:
            return
        lines, fields = self.lines, self.fields
        self.lines, self.fields = [], {}
        _append_log(self.job_id, self.attempt, lines, **fields)
        self.written = time.monotonic()


def _run_training(job: Job, attempt: int, devices: list[str]) -> None:
    spec = parse_spec(job.spec, job.dataset_version.column_names)
    with _workdir(job, attempt) as tmp:
        folder = checkpoints.folder(job.pk, Path(tmp))
        resume, unusable = checkpoints.resume(job.pk, folder)
        if unusable:
            _append_log(job.pk, attempt, unusable)
        task = {
            "kind": "train",
            "data": _data_task(job),
            "spec": spec.as_dict(),
            "checkpoint_dir": str(folder),
            "checkpoint_every": spec.checkpoint_every,
            "checkpoint_prune": not checkpoints.is_stored(),
            "resume": str(resume) if resume else None,
            "output": str(Path(tmp) / "model.pt"),
        }
        progress = _TrainingProgress(job.pk, attempt)
        try:
            result = _launch(job, attempt, task, Path(tmp), progress, devices)
        finally:
            with suppress(ClaimLost):  # the attempt's end says why; its last epochs are telemetry
                progress.flush()
        artifact = Path(result["artifact"]).read_bytes()
    with JOBS.fenced(job.pk, attempt):
        _refuse_erased_input(job)
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
    checkpoints.discard(job.pk)


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
            _refuse_erased_input(job)
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


def _model_task(model_version: ModelVersion) -> dict[str, Any]:
    return {
        "path": str(model_version.path),
        "sha256": model_version.sha256,
        "name": str(model_version),
        "flavor": model_version.flavor,
    }


def _run_evaluation(job: Job, attempt: int, devices: list[str]) -> None:
    """Evaluate the job's model version (and its champion) on its dataset version (issue 15).

    The rows are read here and the engine (``runners.evaluation``: pandas, NumPy, scikit-learn,
    Fairlearn) runs here; every prediction, of any flavor, comes from a serving child
    (``ChildPredictions``), so this worker never imports torch nor loads a user's pickle, and the
    model's code cannot reach the figures that judge it. What cannot be evaluated (a column the
    data lacks, one class, every prediction missing) fails the job with the engine's message.
    At success the evaluation is recorded (``record_evaluation``, on behalf of the
    submitter), with lineage model version(s) + dataset version -> job, in one fenced transaction.
    """
    # Imported here: scikit-learn and Fairlearn are not loaded by a worker that never evaluates.
    from runners.evaluation import EvaluationError, evaluate, evaluate_pair

    model_version, dataset_version = job.model_version, job.dataset_version
    try:
        spec = evaluation_jobs.evaluation_spec(job.spec)
    except EvaluationError as exc:
        raise launcher.ComputeError(str(exc)) from exc
    champion = None
    if job.spec.get("champion_version"):
        champion = ModelVersion.objects.select_related("model").get(pk=job.spec["champion_version"])
    # Checked at submission, but a version may be deleted while its job waits: say so before
    # paying for predictions the record would then refuse.
    for role, version in (("model_version", model_version), ("champion_version", champion)):
        if version is not None and version.status == ModelVersion.Status.DELETED:
            raise launcher.ComputeError(
                f"{role}: {version} was deleted after the job was submitted; nothing is evaluated"
            )
    frame = datafiles.read_frame(
        dataset_version.path,
        dataset_version.format,
        dataset_version.original_filename or dataset_version.file,
    )
    frame = datafiles.apply_where(frame, job.spec.get("where") or {})
    compared = f", against {champion} ({job.spec['champion_alias']})" if champion is not None else ""
    _append_log(
        job.pk, attempt, f"evaluating {model_version} on {len(frame)} rows of {dataset_version}{compared}"
    )
    models = {"candidate": _model_task(model_version)}
    if champion is not None:
        models["champion"] = _model_task(champion)

    def on_event(event: dict[str, Any]) -> None:
        if not predictions.on_event(event) and event.get("event") == "log":
            _append_log(job.pk, attempt, event["message"])

    def work(client: ChildPredictions) -> Any:
        started = time.monotonic()
        each_class = spec.task == "classification"  # used only without a positive label
        candidate = client.predictor("candidate", spec.positive_label, each_class=each_class)
        if champion is None:
            outcome: Any = evaluate(frame, candidate, spec)
        else:
            other = client.predictor("champion", spec.positive_label, each_class=each_class)
            outcome = evaluate_pair(frame, candidate, other, spec)
        return outcome, time.monotonic() - started

    with _workdir(job, attempt) as tmp:
        predictions = ChildPredictions(tmp)

        def serving(run: launcher.Launch, follow: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            value, result = predictions.run(run, follow, work)
            return {**result, "evaluated": value}

        try:
            result = _launch(
                job, attempt, {"kind": "serve", "models": models}, tmp, on_event, devices, serving=serving
            )
        except EvaluationError as exc:
            raise launcher.ComputeError(str(exc)) from exc
    outcome, seconds = result["evaluated"]
    if champion is None:
        results, champion_results, comparison = outcome.to_dict(), None, None
    else:
        results, champion_results = outcome.candidate.to_dict(), outcome.champion.to_dict()
        comparison = outcome.to_dict()["differences"]
    rows = results["rows"]
    _append_log(
        job.pk,
        attempt,
        f"evaluated {rows} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):.0f} rows/s), "
        f"{result['requests']} prediction requests",
        progress=0.95,
    )
    with JOBS.fenced(job.pk, attempt):
        try:
            record_evaluation(
                model_version=model_version,
                dataset_version=dataset_version,
                # With the rows it kept: a gate policy counts only evaluations of all its rows.
                spec=dict(spec.to_dict(), where=job.spec.get("where") or {}),
                results=results,
                job_id=job.pk,
                champion_version=champion,
                champion_results=champion_results,
                comparison=comparison,
                actor=None,
                on_behalf_of=job.created_by,
            )
        except ValidationError as exc:  # e.g. the version was deleted while it was evaluated
            why = "; ".join(exc.messages)
            raise launcher.ComputeError(f"the evaluation was not recorded: {why}") from exc
        job_node = NodeRef("job", job.pk)
        inputs = [model_version.pk] + ([champion.pk] if champion is not None else [])
        do_record_edges(
            [(NodeRef("model_version", pk), job_node, Relation.INPUT) for pk in inputs]
            + [(NodeRef("dataset_version", dataset_version.pk), job_node, Relation.INPUT)]
        )
        headline = {
            name: entry["value"] for name, entry in results["metrics"].items() if entry["value"] is not None
        }
        do_succeed_job(
            job.pk,
            metrics={
                **headline,
                "rows": float(rows),
                "evaluation_s": seconds,
                "rows_per_s": rows / max(seconds, 1e-9),
            },
            device=str(result["device"]),
        )


def _predictions_dataset(job: Job) -> Dataset:
    name = job.spec.get("output_dataset") or f"{job.model_version.model.name}-predictions"
    return dataset_named(
        job.team,
        name,
        description=f"Predictions of {job.model_version.model.name}",
        on_behalf_of=job.created_by,
    )


def predict_in_child(model_version: ModelVersion, rows: pd.DataFrame) -> pd.Series:
    """The model version's predictions on ``rows``, aligned with their index, computed in a child
    process (``runners.launcher``) so that torch, and CUDA with it, is never loaded in the worker
    (issue 16); on the CPU (a drift check holds no GPU slot), under the settings' default limits.

    The artifact's sha256 is checked first. Raises ``launcher.ComputeError`` with the child's
    message (a changed artifact, a missing feature column, no rows).
    """
    predicted = _in_child("infer", model_version, rows)[PREDICTION_COLUMN]
    return pd.Series(predicted.to_numpy(), index=rows.index, name=PREDICTION_COLUMN)


def embed_in_child(model_version: ModelVersion, rows: pd.DataFrame) -> np.ndarray:
    """The model version's own embedding of each row of ``rows`` (its penultimate layer's
    activations; image drift, issue 11), shape (rows, dimensions), computed in a child process as
    ``predict_in_child`` predicts: the user's pickle is loaded there, never in the worker.

    Raises ``launcher.ComputeError`` with the child's message (a changed artifact, a model that
    gives no embeddings, a missing pixel column)."""
    return _in_child("embed", model_version, rows).to_numpy(dtype=np.float64)


def _in_child(kind: str, model_version: ModelVersion, rows: pd.DataFrame) -> pd.DataFrame:
    """Run ``runners.child``'s ``kind`` task (infer or embed) of ``model_version`` on ``rows`` on
    the CPU under the settings' default limits; returns the frame it wrote."""
    limits = launcher.Limits(
        wall_time_s=settings.STEWARD_JOB_WALL_TIME_S or None,
        memory_mb=settings.STEWARD_JOB_MEMORY_MB or None,
        threads=settings.STEWARD_JOB_THREADS,
    )
    with tempfile.TemporaryDirectory(prefix=f"steward-{kind}-") as tmp:
        source, output = Path(tmp) / "rows.parquet", Path(tmp) / "output.parquet"
        source.write_bytes(datafiles.write_frame(rows, "parquet"))
        task = {
            "kind": kind,
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
        return datafiles.read_frame(output, "parquet", output.name)


# A code run's API proxy listens on this loopback port inside its sandbox (its own network).
SANDBOX_API_PORT = 5000
OUTPUT_FORMATS = ("csv", "parquet")


def materialize_code(version: CodeVersion, destination: Path) -> None:
    """Write ``version``'s files into ``destination`` (created) after checking the archive's
    sha256 (``runners.code_versions.materialize``). Raises ComputeError, not the run's fault, when
    the stored archive changed or is missing."""
    try:
        code_versions.materialize(version, destination)
    except (code_versions.ArtifactChanged, OSError) as exc:
        raise launcher.ComputeError(f"{version}: {exc}", is_user_error=False) from exc


def _chown(path: Path, uid: int | None) -> None:
    if uid is not None:
        os.chown(path, uid, uid)


def _prepare_workdir(job: Job, tmp: Path, uid: int | None) -> dict[str, Path]:
    """Lay out one attempt's folders: ``code/`` (the code, read-only to it), ``inputs/<name>.<format>``
    (copies, read-only), ``output/`` (its own), ``run/`` (the API socket), ``home/``. Returns
    {input name: host path}."""
    tmp.chmod(0o711)  # the code's user crosses it (none mode) but cannot list it
    code = tmp / "code"
    materialize_code(job.code_version, code)
    inputs = tmp / "inputs"
    inputs.mkdir(mode=0o755)
    paths = {}
    for item in job.datasets.filter(role=JobDatasetRole.INPUT).select_related("dataset_version"):
        version = item.dataset_version
        target = inputs / f"{item.name}.{version.format}"
        # A copy, not a hard link: in none mode a link would let the code write the stored file.
        shutil.copyfile(version.path, target)
        target.chmod(0o444)
        paths[item.name] = target
    for folder in (tmp / "output", tmp / "output" / "datasets", tmp / "home"):
        folder.mkdir(mode=0o755)
        _chown(folder, uid)
    (tmp / "run").mkdir(mode=0o755)
    for path in code.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    code.chmod(0o755)
    return paths


def _given_models(job: Job) -> dict[str, str]:
    """The model versions the run was given, as {name: ``models:/<model>/<version>``}, read now
    (a renamed model's current name). Raises ComputeError naming one that was deleted since the
    submission, or that its submitter may no longer see: the run cannot read it."""
    given: dict[str, int] = job.spec.get("models") or {}
    found = {
        version.pk: version
        for version in ModelVersion.objects.restrict(job.created_by)
        .filter(pk__in=list(given.values()))
        .select_related("model")
    }
    uris = {}
    for name, pk in sorted(given.items()):
        version = found.get(pk)
        if version is None or version.status == ModelVersion.Status.DELETED or version.model.deleted_at:
            shown = f"{version} is deleted" if version is not None else f"model version {pk} is gone"
            raise launcher.ComputeError(f"model input {name!r}: {shown}; the run cannot read it")
        uris[name] = code_runs.model_uri(version)
    return uris


def _code_env(
    job: Job,
    mode: str,
    tmp: Path,
    devices: list[str],
    threads: int,
    token: str,
    input_paths: dict[str, Path],
    model_uris: dict[str, str],
) -> dict[str, str]:
    """The code's whole environment (issue 17): nothing of the worker's, so none of its secrets;
    ``STEWARD_INPUT_<NAME>`` per input file, ``STEWARD_MODEL_<NAME>`` per given model's URI."""
    where = sandbox.layout(mode, tmp, Path(__file__).resolve().parent.parent)
    inside = {name: where.inputs / path.name for name, path in input_paths.items()}
    home = str(sandbox.INSIDE_TMP) if mode == "bwrap" else str(tmp / "home")
    api = f"http://127.0.0.1:{SANDBOX_API_PORT}" if mode == "bwrap" else settings.STEWARD_API_URL.rstrip("/")
    env = {
        "PATH": f"{sandbox.python_bin()}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "USER": "steward-job",
        "LOGNAME": "steward-job",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(where.steward),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "STEWARD_THREADS": str(threads),
        "STEWARD_LIVE_FLUSH_S": str(settings.STEWARD_LIVE_FLUSH_S),
        # Always set: an empty list hides every GPU from a CPU job on a GPU host.
        "CUDA_VISIBLE_DEVICES": ",".join(devices),
        "STEWARD_JOB_ID": str(job.pk),
        "STEWARD_INPUTS_DIR": str(where.inputs),
        "STEWARD_OUTPUT_DIR": str(where.output),
        "MLFLOW_TRACKING_URI": api,
        "MLFLOW_TRACKING_TOKEN": token,
        "MLFLOW_RUN_ID": job.mlflow_run_id,
        "MLFLOW_EXPERIMENT_ID": str(job.experiment_id or ""),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    }
    env |= {code_runs.model_variable(name): uri for name, uri in model_uris.items()}
    return env | {code_runs.input_variable(name): str(path) for name, path in inside.items()}


def _folder_use(folders: list[Path], most_entries: int) -> tuple[int, int]:
    """(bytes allocated on disk, entries) under ``folders``, links not followed; stops counting
    past ``most_entries`` entries."""
    used = entries = 0
    pending = list(folders)
    while pending and entries <= most_entries:
        with contextlib.suppress(OSError), os.scandir(pending.pop()) as found:
            for entry in found:
                entries += 1
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    used += info.st_blocks * 512
                    if stat.S_ISDIR(info.st_mode):
                        pending.append(Path(entry.path))
    return used, entries


def _disk_guard(folders: list[Path]) -> Callable[[], None]:
    """What a code run checks every poll: its folders on the worker's disk (output, home) hold at
    most ``STEWARD_CODE_OUTPUT_MAX_BYTES`` and ``STEWARD_CODE_OUTPUT_MAX_FILES`` entries, else
    LimitExceeded stops it (a code filling the disk would stop every job of the worker)."""
    most_bytes = settings.STEWARD_CODE_OUTPUT_MAX_BYTES
    most_entries = settings.STEWARD_CODE_OUTPUT_MAX_FILES

    def check() -> None:
        used, entries = _folder_use(folders, most_entries)
        if used > most_bytes:
            raise launcher.LimitExceeded(
                f"the code wrote more than STEWARD_CODE_OUTPUT_MAX_BYTES ({most_bytes} bytes) "
                "to its output and home folders; stopped"
            )
        if entries > most_entries:
            raise launcher.LimitExceeded(
                f"the code made more than STEWARD_CODE_OUTPUT_MAX_FILES ({most_entries}) files "
                "and folders in its output and home folders; stopped"
            )

    return check


def _api_target() -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(settings.STEWARD_API_URL)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.hostname or "127.0.0.1", port


def _run_code(job: Job, attempt: int, devices: list[str]) -> None:
    """Run a code version's entry point in the sandbox (issue 17); at success register the
    dataset versions it declared, with lineage (code version, dataset and model inputs -> job ->
    outputs), in one fenced transaction. A given model version deleted since the submission
    fails the run before its code starts."""
    try:
        mode = sandbox.resolve_mode(settings.STEWARD_SANDBOX)
    except sandbox.SandboxError as exc:
        raise launcher.ComputeError(str(exc), is_user_error=False) from exc
    uid = settings.STEWARD_SANDBOX_UID if os.geteuid() == 0 else None
    if mode == "none":
        as_user = f" as uid {uid}" if uid is not None else ""
        _append_log(job.pk, attempt, sandbox.NONE_WARNING.format(as_user=as_user))
    limits = job_limits(job)
    expires = timezone.now() + datetime.timedelta(
        seconds=(limits.wall_time_s or settings.STEWARD_JOB_MAX_WALL_TIME_S or 86400) + 300
    )
    model_uris = _given_models(job)
    with _workdir(job, attempt) as tmp:
        input_paths = _prepare_workdir(job, tmp, uid)
        # One token per attempt: a new attempt ends the previous one's.
        do_revoke_job_tokens(job_id=job.pk)
        _, token = do_issue_job_token(job_id=job.pk, user=job.created_by, expires_at=expires)
        try:
            env = _code_env(job, mode, tmp, devices, limits.threads, token, input_paths, model_uris)
            where = sandbox.layout(mode, tmp, Path(__file__).resolve().parent.parent)
            entry = job.code_version.entry_points[job.entry_point]
            parameters = job.spec.get("parameters") or {}
            declared = entry.get("parameters") or {}
            # A path parameter naming an input is that input's file (issue 17).
            paths = {
                pname: str(where.inputs / input_paths[value].name)
                for pname, value in parameters.items()
                if declared.get(pname, {}).get("type") == "path" and value in input_paths
            }
            # A uri or string parameter naming a given model is its models:/ URI.
            paths |= code_runs.model_parameters(declared, parameters, model_uris)
            line = code_runs.command_line(entry["command"], parameters, paths)
            _append_log(job.pk, attempt, f"sandbox: {mode}; running {job.entry_point}: {line}")
            command = sandbox.build(
                mode,
                run_line=line,
                env=env,
                workdir=tmp,
                steward_packages=[
                    Path(__file__).resolve().parent,
                    Path(governance.__file__).resolve().parent,
                ],
                api_target=_api_target(),
                api_port=SANDBOX_API_PORT,
                uid=settings.STEWARD_SANDBOX_UID,
                # /tmp and /dev/shm hold together at most the job's memory limit.
                tmpfs_bytes=limits.memory_mb * 2**19 if limits.memory_mb else None,
            )
            buffer = joblog.LogBuffer(job.pk, attempt, settings.STEWARD_LIVE_FLUSH_S)
            guard = _disk_guard([tmp / "output", tmp / "home"])

            def every_poll() -> None:
                buffer.flush()
                guard()

            def on_event(event: dict[str, Any]) -> None:
                if event.get("event") == "output":
                    buffer.add(event["stream"], event["text"])

            try:
                _launch(
                    job,
                    attempt,
                    {"kind": "code"},
                    tmp,
                    on_event,
                    devices,
                    command=command,
                    every_poll=every_poll,
                )
                # The bound holds for what is registered, whatever the last poll saw: a code that
                # writes its output and exits between two polls is measured here.
                guard()
            finally:
                with contextlib.suppress(ClaimLost):
                    buffer.flush(force=True)
        finally:
            do_revoke_job_tokens(job_id=job.pk)
        outputs = _declared_outputs(job, tmp / "output", attempt)
        with JOBS.fenced(job.pk, attempt):
            produced = _register_outputs(job, outputs)
            job_node = NodeRef("job", job.pk)
            edges = [(NodeRef("code_version", job.code_version_id), job_node, Relation.INPUT)]
            edges += [
                (NodeRef("dataset_version", item.dataset_version_id), job_node, Relation.INPUT)
                for item in job.datasets.filter(role=JobDatasetRole.INPUT)
            ]
            edges += [
                (NodeRef("model_version", pk), job_node, Relation.INPUT)
                for pk in sorted((job.spec.get("models") or {}).values())
            ]
            edges += [(job_node, NodeRef("dataset_version", v.pk), Relation.OUTPUT) for v in produced]
            do_record_edges(edges)
            do_succeed_job(job.pk, output_dataset_version=produced[0] if produced else None)


def _declared_outputs(job: Job, output: Path, attempt: int) -> dict[str, Path]:
    """The files of the run's declared output datasets (``output/datasets/<name>.csv|.parquet``).
    Raises ComputeError naming a declared one that is missing, given twice, or not a plain file;
    logs and ignores undeclared files."""
    declared = (job.spec.get("outputs") or {}).get("datasets") or []
    folder = output / "datasets"
    found: dict[str, list[Path]] = {}
    if folder.is_dir() and not folder.is_symlink():
        for path in sorted(folder.iterdir()):
            stem, _, suffix = path.name.rpartition(".")
            if stem in declared and suffix in OUTPUT_FORMATS:
                found.setdefault(stem, []).append(path)
            else:
                _append_log(job.pk, attempt, f"output datasets/{path.name} is not a declared output; ignored")
    files = {}
    for name in declared:
        paths = found.get(name, [])
        if not paths:
            raise launcher.ComputeError(
                f"declared output dataset {name!r}: "
                f"no file datasets/{name}.csv or .parquet in $STEWARD_OUTPUT_DIR"
            )
        if len(paths) > 1:
            raise launcher.ComputeError(
                f"declared output dataset {name!r}: both a .csv and a .parquet; write one"
            )
        info = paths[0].lstat()
        # Not a link nor a second name of another file: the worker reads it with its own rights.
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise launcher.ComputeError(f"output datasets/{paths[0].name}: not a regular file")
        files[name] = paths[0]
    return files


def _register_outputs(job: Job, files: dict[str, Path]) -> list[DatasetVersion]:
    """Register each output file as the next version of the team's dataset of its name (created
    if absent), on behalf of the submitter; the caller's fenced transaction holds them all."""
    produced = []
    for name, path in files.items():
        dataset = dataset_named(
            job.team, name, description=f"Written by code run #{job.pk}", on_behalf_of=job.created_by
        )
        try:
            version = do_register_dataset_version(
                dataset=dataset,
                file_path=path,
                filename=path.name,
                source=DatasetVersion.Source.JOB,
                description=f"Written by {job.code_version} ({job.entry_point}) in job #{job.pk}",
                actor=None,
                on_behalf_of=job.created_by,
            )
        except ValidationError as exc:  # e.g. a schema-locked dataset given other columns
            raise launcher.ComputeError(f"output dataset {name!r}: {'; '.join(exc.messages)}") from exc
        JobDataset.objects.create(job=job, role=JobDatasetRole.OUTPUT, name=name, dataset_version=version)
        produced.append(version)
    return produced

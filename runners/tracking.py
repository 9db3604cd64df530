"""Tracked runs (issue 9): MLflow experiments, runs, metric history, inputs and logged models.

The one audited way to change them; ``runners.api.mlflow`` parses the MLflow client's requests and
calls these. Each action re-checks CHANGE on the team inside its transaction. Audited: experiment
create/rename/delete/restore, run start/end/delete/restore, inputs (lineage), logged model
create/finalize/delete. Not audited, on purpose: metric points, parameters and tags logged to a
running run. They are telemetry, like a job's heartbeat and per-epoch history (one event per
metric point would flood the audit log and its Merkle tree); the run's end event records the
final parameters and metrics, and the metric history itself is kept in ``RunMetric``.

Artifacts of runs and logged models are stored file by file in the artifact store, recorded by
their MLflow path (``runners.run_artifacts``); registering a version copies them into the version.
"""

from __future__ import annotations

import datetime
import math
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from governance.actions.checks import checked_name, ensure_can
from governance.actions.teams import TEAM_TAG, default_team
from governance.audit import record_audit_event, snapshot
from governance.job_scope import JobScope
from governance.models import DatasetVersion, Evaluation, ModelVersion, Team
from governance.names import name_key
from governance.permissions import CHANGE, RestrictedQuerySet
from lineage.actions import do_record_edges
from lineage.models import Relation
from lineage.nodes import NodeRef
from runners import run_artifacts
from runners.evaluation_records import record_evaluation
from runners.lineage_events import announce_job
from runners.models import (
    TERMINAL_STATES,
    Experiment,
    ExternalDataset,
    Job,
    JobDataset,
    JobDatasetRole,
    JobKind,
    JobState,
    LifecycleStage,
    LoggedModel,
    LoggedModelStatus,
    RunInput,
    RunMetric,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# MLflow's limits for runs (mlflow/utils/validation.py), so a client that works against MLflow
# works here: keys 250 characters, parameter values 6,000, tag values 8,000; one log-batch at most
# 1,000 metrics, 100 parameters, 100 tags.
KEY_MAX = 250
PARAM_VALUE_MAX = 6000
TAG_VALUE_MAX = 8000
BATCH_METRICS_MAX = 1000
BATCH_PARAMS_MAX = 100
BATCH_TAGS_MAX = 100
RUN_NAME_MAX = 250

# MLflow's run statuses and Steward's job states, both ways.
STATUS_TO_STATE = {
    "RUNNING": JobState.RUNNING,
    "SCHEDULED": JobState.QUEUED,
    "FINISHED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "KILLED": JobState.CANCELLED,
}
STATE_TO_STATUS: dict[str, str] = {
    **{state.value: status for status, state in STATUS_TO_STATE.items()},
    JobState.HELD.value: "SCHEDULED",  # a held code run waits, as a queued one
}
# What MLflow calls a run (issue 17): a tracked run, or a code run (with its experiment), whose
# code logs through its job token. The code's own end status is this tag, never the job's state.
RUN_KINDS = (JobKind.TRACKED, JobKind.CODE)
CODE_STATUS_TAG = "steward.code_status"


class NameTaken(ValidationError):
    """A name the team already uses (MLflow's RESOURCE_ALREADY_EXISTS)."""


def mlflow_runs() -> RestrictedQuerySet:
    """The jobs the MLflow API serves as runs: tracked runs and code runs that have an experiment."""
    return Job.objects.filter(kind__in=RUN_KINDS, experiment__isnull=False)


def job_scope_of(job_id: int) -> JobScope | None:
    """The scope of code run ``job_id``'s token (``governance.job_scope``); None if no such run.
    Registered as governance's job scope loader in ``RunnersConfig.ready``."""
    found = (
        Job.objects.filter(pk=job_id, kind=JobKind.CODE)
        .values("team_id", "experiment_id", "state", given=F("spec__models"))
        .first()
    )
    if found is None:
        return None
    # The model versions it was given (``runners.code_runs``): {name: model version pk}.
    given = found["given"] if isinstance(found["given"], dict) else {}
    return JobScope(
        job_id=job_id,
        team_id=found["team_id"],
        experiment_id=found["experiment_id"],
        state=found["state"],
        model_versions=frozenset(pk for pk in given.values() if isinstance(pk, int)),
    )


def decimal_pk(raw: object) -> int | None:
    """The primary key a decimal id names (ASCII digits only, at most 18 of them so it fits a
    64-bit column), None when it cannot name one. ``str.isdigit`` alone is not enough: it is true
    for "²" (which ``int`` refuses) and for Arabic-Indic digits (which ``int`` accepts)."""
    text = str(raw)
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None


def run_pk(run_id: object) -> int | None:
    """The job id an MLflow run id names (its decimal digits), None when it cannot name one."""
    return decimal_pk(run_id)


def run_artifact_location(job: Job) -> str:
    """Where a run's artifacts go: ``mlflow-artifacts:/experiments/<id>/<run id>/artifacts``, which
    the client resolves against the tracking URI to Steward's artifact proxy."""
    return f"mlflow-artifacts:/experiments/{job.experiment_id}/{job.mlflow_run_id}/artifacts"


def _checked_key(key: Any, field: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValidationError({field: "a key is a non-empty string"})
    if len(key) > KEY_MAX:
        raise ValidationError({field: f"key {key[:40]!r}... is longer than {KEY_MAX} characters"})
    if key.startswith("/") or ".." in key.split("/"):
        raise ValidationError({field: f"key {key!r} may not start with / or contain .."})
    return key


def _checked_value(value: Any, field: str, limit: int) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        value = str(value)
    if len(value) > limit:
        raise ValidationError({field: f"a value has at most {limit} characters, got {len(value)}"})
    return value


def _checked_tags(tags: dict[str, Any] | None, field: str = "tags") -> dict[str, str]:
    return {_checked_key(k, field): _checked_value(v, field, TAG_VALUE_MAX) for k, v in (tags or {}).items()}


# --- Experiments ---------------------------------------------------------------------------


def _check_experiment_name(name: str) -> str:
    return checked_name(name, noun="experiment name", max_length=500)


def _ensure_name_free(team_id: int, name: str, exclude_pk: int | None = None) -> None:
    taken = Experiment.objects.filter(team_id=team_id, name_key=name_key(name))
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise NameTaken(
            {"name": f"your team already has an experiment named {name!r} (names ignore case and width)"}
        )


def do_create_experiment(
    *, name: str, tags: dict[str, Any] | None = None, artifact_location: str = "", actor: User
) -> Experiment:
    """Create an experiment in the actor's default team (or the team the ``steward.team`` tag
    names); its artifacts go through Steward's artifact proxy.

    Raises NameTaken when the team has the name, ValidationError for a bad name, tag or a custom
    ``artifact_location`` (Steward keeps artifacts in its own store), PermissionDenied without
    CHANGE on the team.
    """
    name = _check_experiment_name(name)
    tags = _checked_tags(tags)
    if artifact_location:
        raise ValidationError(
            {"artifact_location": "Steward stores artifacts itself; leave artifact_location empty"}
        )
    team = default_team(actor, team_slug=tags.get(TEAM_TAG))
    with transaction.atomic():
        ensure_can(actor, CHANGE, team.pk)
        _ensure_name_free(team.pk, name)
        experiment = Experiment.objects.create(
            team=team, name=name, name_key=name_key(name), tags=tags, created_by=actor
        )
        experiment.artifact_location = f"mlflow-artifacts:/experiments/{experiment.pk}"
        experiment.save(update_fields=["artifact_location"])
        record_audit_event(
            actor=actor, action="experiment.create", obj=experiment, after=snapshot(experiment)
        )
    return experiment


def _locked_experiment(experiment: Experiment, actor: User) -> Experiment:
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    ensure_can(actor, CHANGE, experiment.team_id)
    return experiment


def _save_experiment(experiment: Experiment, fields: list[str], action: str | None, before, actor) -> None:
    experiment.updated_at = timezone.now()
    experiment.save(update_fields=[*fields, "updated_at"])
    if action:
        record_audit_event(
            actor=actor, action=action, obj=experiment, before=before, after=snapshot(experiment)
        )


def do_rename_experiment(*, experiment: Experiment, new_name: str, actor: User) -> Experiment:
    """Rename an experiment; NameTaken when the team has the new name."""
    new_name = _check_experiment_name(new_name)
    with transaction.atomic():
        experiment = _locked_experiment(experiment, actor)
        _ensure_name_free(experiment.team_id, new_name, exclude_pk=experiment.pk)
        before = snapshot(experiment)
        experiment.name, experiment.name_key = new_name, name_key(new_name)
        _save_experiment(experiment, ["name", "name_key"], "experiment.rename", before, actor)
    return experiment


def do_set_experiment_lifecycle(*, experiment: Experiment, deleted: bool, actor: User) -> Experiment:
    """Delete (MLflow's soft delete: lifecycle stage ``deleted``, runs kept) or restore."""
    stage = LifecycleStage.DELETED if deleted else LifecycleStage.ACTIVE
    with transaction.atomic():
        experiment = _locked_experiment(experiment, actor)
        if experiment.lifecycle_stage == stage:
            return experiment
        before = snapshot(experiment)
        experiment.lifecycle_stage = stage
        action = "experiment.delete" if deleted else "experiment.restore"
        _save_experiment(experiment, ["lifecycle_stage"], action, before, actor)
    return experiment


def do_set_experiment_tag(*, experiment: Experiment, key: str, value: str | None, actor: User) -> Experiment:
    """Set (``value`` a string) or delete (``value`` None; a missing tag is a no-op) one tag."""
    key = _checked_key(key, "key")
    with transaction.atomic():
        experiment = _locked_experiment(experiment, actor)
        if key == TEAM_TAG and value != experiment.tags.get(TEAM_TAG):
            raise ValidationError({"key": f"{TEAM_TAG} is set when the experiment is created"})
        if value is None:
            if key not in experiment.tags:
                return experiment
            experiment.tags.pop(key)
        else:
            experiment.tags[key] = _checked_value(value, "value", TAG_VALUE_MAX)
        _save_experiment(experiment, ["tags"], None, None, actor)
    return experiment


# --- Runs ----------------------------------------------------------------------------------


def _ms_to_datetime(ms: int | None):
    if ms is None:
        return timezone.now()
    try:
        return datetime.datetime.fromtimestamp(int(ms) / 1000, tz=datetime.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise ValidationError({"time": f"{ms!r} is not a time in milliseconds since 1970"}) from None


def do_start_run(
    *,
    experiment: Experiment,
    run_name: str = "",
    start_time_ms: int | None = None,
    tags: dict[str, Any] | None = None,
    actor: User,
) -> Job:
    """Start a tracked run (a Job of kind ``tracked``, running) in ``experiment``.

    Raises ValidationError for a deleted experiment, a bad tag or run name; PermissionDenied
    without CHANGE on the experiment's team."""
    tags = _checked_tags(tags)
    run_name = _checked_value(run_name or tags.get("mlflow.runName", ""), "run_name", RUN_NAME_MAX)
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        ensure_can(actor, CHANGE, experiment.team_id)
        if experiment.lifecycle_stage != LifecycleStage.ACTIVE:
            raise ValidationError(
                {"experiment_id": f"experiment {experiment.name!r} is deleted; restore it first"}
            )
        _check_team_tag(tags, experiment.team)
        started = _ms_to_datetime(start_time_ms)
        job = Job.objects.create(
            team_id=experiment.team_id,
            kind=JobKind.TRACKED,
            state=JobState.RUNNING,
            experiment=experiment,
            run_name=run_name,
            tags=tags,
            created_by=actor,
            created_at=started,
            started_at=started,
            heartbeat_at=timezone.now(),
        )
        if not job.run_name:
            job.run_name = f"run-{job.pk}"
        job.tags.setdefault("mlflow.runName", job.run_name)
        job.save(update_fields=["run_name", "tags"])
        record_audit_event(actor=actor, action="run.start", obj=job, after=snapshot(job))
        announce_job(job.pk, JobState.RUNNING)  # an OpenLineage START, when configured (issue 10)
    return job


def _check_team_tag(tags: dict[str, str], team: Team) -> None:
    # A run lives in its experiment's team; a steward.team tag naming another would mislead every
    # reader (and default_team would honour it elsewhere), so it may only repeat the team's slug.
    if TEAM_TAG in tags and tags[TEAM_TAG] != team.slug:
        raise ValidationError(
            {"tags": f"{TEAM_TAG} is {tags[TEAM_TAG]!r} but the run is in team {team.slug!r}"}
        )


def _locked_run(job: Job, actor: User) -> Job:
    job = mlflow_runs().select_for_update().get(pk=job.pk)
    ensure_can(actor, CHANGE, job.team_id)
    if job.kind == JobKind.CODE and job.state != JobState.RUNNING:
        # What a code run logged is final once the worker ended it (or before it starts).
        raise ValidationError({"run_id": f"code run {job.mlflow_run_id} is {job.state}, not running"})
    return job


def _run_record(job: Job) -> dict[str, Any]:
    # What a run's end event records: its fields plus the final parameters and metrics.
    return {**(snapshot(job) or {}), "params": job.params, "metrics": job.metrics}


def do_update_run(
    *,
    job: Job,
    status: str | None = None,
    end_time_ms: int | None = None,
    run_name: str | None = None,
    actor: User,
) -> Job:
    """Rename a run and/or move it to an MLflow status (RUNNING, FINISHED, FAILED, KILLED).

    A finished run's state is final: another terminal status is a ValidationError (the same one
    again is a no-op). Ending a run is audited (``run.end``) with its parameters and metrics.
    A code run's state is the worker's (issue 17): the status its code sends (``mlflow.end_run``)
    is kept as the tag ``steward.code_status`` and the job stays as it is.
    """
    if status is not None and status not in STATUS_TO_STATE:
        raise ValidationError(
            {"status": f"unknown run status {status!r}; one of {', '.join(STATUS_TO_STATE)}"}
        )
    with transaction.atomic():
        job = _locked_run(job, actor)
        before = snapshot(job)
        fields: list[str] = []
        if run_name:
            job.run_name = _checked_value(run_name, "run_name", RUN_NAME_MAX)
            job.tags["mlflow.runName"] = job.run_name
            fields += ["run_name", "tags"]
        if job.kind == JobKind.CODE:
            if status:
                job.tags[CODE_STATUS_TAG] = status
                fields.append("tags")
            if fields:
                job.save(update_fields=sorted(set(fields)))
            return job
        state = STATUS_TO_STATE[status] if status else None
        ended = False
        if state is not None and state != job.state:
            if job.state in TERMINAL_STATES:
                raise ValidationError(
                    {
                        "status": f"run {job.mlflow_run_id} already ended {STATE_TO_STATUS[job.state]}; "
                        f"it cannot become {status}"
                    }
                )
            job.state = state
            fields.append("state")
            if state in TERMINAL_STATES:
                job.finished_at = _ms_to_datetime(end_time_ms)
                job.progress = 1.0 if state == JobState.SUCCEEDED else job.progress
                fields += ["finished_at", "progress"]
                ended = True
        if fields:
            job.save(update_fields=fields)
        if ended:
            record_audit_event(actor=actor, action="run.end", obj=job, before=before, after=_run_record(job))
            announce_job(job.pk, job.state)
            do_record_self_reported_evaluations(job, actor=actor)
    return job


def do_set_run_lifecycle(*, job: Job, deleted: bool, actor: User) -> Job:
    """Delete (soft, MLflow's lifecycle stage) or restore a run; audited. A code run is a job
    like any other (issue 17): ValidationError, it is cancelled or kept, not deleted."""
    with transaction.atomic():
        job = _locked_run(job, actor)
        if job.kind == JobKind.CODE:
            raise ValidationError(
                {"run_id": f"code run {job.mlflow_run_id} is a job: cancel it instead of deleting it"}
            )
        if (job.deleted_at is not None) == deleted:
            return job
        before = snapshot(job)
        job.deleted_at = timezone.now() if deleted else None
        job.save(update_fields=["deleted_at"])
        record_audit_event(
            actor=actor,
            action="run.delete" if deleted else "run.restore",
            obj=job,
            before=before,
            after=snapshot(job),
        )
    return job


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    timestamp_ms: int
    step: int
    dataset_name: str = ""
    dataset_digest: str = ""


def parse_metric(raw: Any) -> MetricPoint:
    """One MLflow metric ``{"key", "value", "timestamp", "step"}``, with MLflow 3's optional
    ``dataset_name`` and ``dataset_digest`` (the dataset it was computed on): value a number (NaN
    and infinities allowed, as MLflow: JSON's "NaN", "Infinity", "-Infinity" strings too).
    ValidationError on ``metrics`` naming what is wrong."""
    if not isinstance(raw, dict):
        raise ValidationError({"metrics": "each metric is an object with key, value, timestamp and step"})
    key = _checked_key(raw.get("key"), "metrics")
    value = raw.get("value")
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        value = float(value.replace("Infinity", "inf"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError({"metrics": f"metric {key!r}: value must be a number, got {str(value)[:40]!r}"})
    try:
        timestamp = int(raw.get("timestamp") or timezone.now().timestamp() * 1000)
        step = int(raw.get("step") or 0)
    except (TypeError, ValueError, OverflowError):
        # OverflowError: JSON's 1e400 is an infinite float.
        raise ValidationError({"metrics": f"metric {key!r}: timestamp and step must be integers"}) from None
    if not (-(2**63) <= timestamp < 2**63 and -(2**63) <= step < 2**63):
        raise ValidationError({"metrics": f"metric {key!r}: timestamp and step must fit 64 bits"})
    return MetricPoint(
        key,
        float(value),
        timestamp,
        step,
        dataset_name=_checked_value(raw.get("dataset_name"), "metrics", 500),
        dataset_digest=_checked_value(raw.get("dataset_digest"), "metrics", 64),
    )


def json_number(value: float | None) -> float | str:
    """A metric value for JSON: proto3's "NaN", "Infinity", "-Infinity" for non-finite values
    (``None`` is a stored NaN)."""
    if value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def do_log_batch(
    *,
    job: Job,
    metrics: list[Any] = (),  # type: ignore[assignment]
    params: list[Any] = (),  # type: ignore[assignment]
    tags: list[Any] = (),  # type: ignore[assignment]
    actor: User,
) -> Job:
    """Log metric points, parameters and tags to a run (MLflow's log-batch; log-metric,
    log-parameter and set-tag are batches of one).

    Metric points are appended to the history; ``Job.metrics`` keeps each key's latest point (the
    highest step, then timestamp, as MLflow). A parameter is set once: logging it again with
    another value is a ValidationError. Not audited (telemetry; see the module docstring).
    ValidationError for a malformed item or over MLflow's limits; PermissionDenied without CHANGE.
    """
    for items, limit, noun in (
        (metrics, BATCH_METRICS_MAX, "metrics"),
        (params, BATCH_PARAMS_MAX, "params"),
        (tags, BATCH_TAGS_MAX, "tags"),
    ):
        if not isinstance(items, list | tuple):
            raise ValidationError({noun: "a list"})
        if len(items) > limit:
            raise ValidationError({noun: f"at most {limit} per batch, got {len(items)}"})
    points = [parse_metric(m) for m in metrics]
    new_params: dict[str, str] = {}
    for raw in params:
        if not isinstance(raw, dict):
            raise ValidationError({"params": "each parameter is an object with key and value"})
        key = _checked_key(raw.get("key"), "params")
        value = _checked_value(raw.get("value"), "params", PARAM_VALUE_MAX)
        if key in new_params and new_params[key] != value:
            # As MLflow: one batch may not give a parameter two values (it is logged once).
            raise ValidationError({"params": f"parameter {key!r} is given twice with different values"})
        new_params[key] = value
    new_tags: dict[str, str] = {}
    for raw in tags:
        if not isinstance(raw, dict):
            raise ValidationError({"tags": "each tag is an object with key and value"})
        new_tags[_checked_key(raw.get("key"), "tags")] = _checked_value(
            raw.get("value"), "tags", TAG_VALUE_MAX
        )
    with transaction.atomic():
        job = _locked_run(job, actor)
        if job.deleted_at is not None:
            raise ValidationError({"run_id": f"run {job.mlflow_run_id} is deleted"})
        for key, value in new_params.items():
            if key in job.params and job.params[key] != value:
                raise ValidationError(
                    {
                        "params": f"parameter {key!r} is already {job.params[key]!r}; "
                        "a parameter is logged once"
                    }
                )
        _check_team_tag(new_tags, job.team)
        job.params.update(new_params)
        job.tags.update(new_tags)
        if "mlflow.runName" in new_tags:
            job.run_name = new_tags["mlflow.runName"][:RUN_NAME_MAX]
        # The same point logged again is one point, as in MLflow's SQL store (whose key is
        # run, key, timestamp, step, value): MLflow 3 re-sends a run's metrics for a logged model.
        # Only the stored points that could be one of these (same key, step and timestamp) are
        # read: reading every point of the keys made each batch cost the run's whole history.
        seen = set()
        if points:
            seen = set(
                RunMetric.objects.filter(
                    job=job,
                    key__in={p.key for p in points},
                    step__in={p.step for p in points},
                    timestamp_ms__in={p.timestamp_ms for p in points},
                ).values_list("key", "timestamp_ms", "step", "value")
            )
        fresh = []
        for p in points:
            point = (p.key, p.timestamp_ms, p.step, None if math.isnan(p.value) else p.value)
            if point not in seen:
                seen.add(point)
                fresh.append(
                    RunMetric(
                        job=job,
                        key=point[0],
                        value=point[3],
                        timestamp_ms=point[1],
                        step=point[2],
                        dataset_name=p.dataset_name,
                        dataset_digest=p.dataset_digest,
                    )
                )
        RunMetric.objects.bulk_create(fresh)
        for key in {p.key for p in points}:
            latest = (
                RunMetric.objects.filter(job=job, key=key).order_by("-step", "-timestamp_ms", "-id").first()
            )
            if latest is not None:
                job.metrics[key] = json_number(latest.value)
        job.heartbeat_at = timezone.now()
        job.save(update_fields=["params", "tags", "run_name", "metrics", "heartbeat_at"])
    return job


def do_delete_run_tag(*, job: Job, key: str, actor: User) -> Job:
    """Remove a run tag; a missing tag is a RESOURCE_DOES_NOT_EXIST in MLflow, here a
    ValidationError naming it."""
    with transaction.atomic():
        job = _locked_run(job, actor)
        if key not in job.tags:
            raise ValidationError({"key": f"run {job.mlflow_run_id} has no tag {key!r}"})
        job.tags.pop(key)
        job.save(update_fields=["tags"])
    return job


def _matching_dataset_version(team_id: int, digest: str) -> DatasetVersion | None:
    """The team's dataset version whose sha256 is ``digest`` (MLflow dataset digests a client
    sets to the file's sha256 link to it; MLflow's own short digests match none)."""
    if len(digest) != 64:
        return None
    return (
        DatasetVersion.objects.filter(dataset__team_id=team_id, sha256=digest.lower()).order_by("-id").first()
    )


def do_log_inputs(*, job: Job, datasets: list[Any], actor: User) -> list[RunInput]:
    """Record the datasets a run read (``mlflow.log_input``), each linked by digest to a Steward
    dataset version of the run's team when one matches, else to an external dataset; records the
    lineage edges dataset -> run (input). Logging the same input twice is a no-op. Audited
    (``run.log_inputs``): inputs are lineage, which governance answers for."""
    parsed = []
    if not isinstance(datasets, list):
        raise ValidationError({"datasets": "a list"})
    for raw in datasets:
        dataset = raw.get("dataset") if isinstance(raw, dict) else None
        if not isinstance(dataset, dict):
            raise ValidationError({"datasets": "each input is an object with a dataset"})
        name = _checked_value(dataset.get("name"), "datasets", 500)
        digest = _checked_value(dataset.get("digest"), "datasets", 64)
        if not name or not digest:
            raise ValidationError({"datasets": "a dataset needs a name and a digest"})
        input_tags = {
            t.get("key"): _checked_value(t.get("value"), "datasets", TAG_VALUE_MAX)
            for t in raw.get("tags") or []
            if isinstance(t, dict) and isinstance(t.get("key"), str)
        }
        parsed.append((name, digest, dataset, input_tags))
    created = []
    with transaction.atomic():
        job = _locked_run(job, actor)
        for name, digest, dataset, input_tags in parsed:
            context = input_tags.get("mlflow.data.context", "")[:250]
            if RunInput.objects.filter(job=job, name=name, digest=digest, context=context).exists():
                continue
            version = _matching_dataset_version(job.team_id, digest)
            external = None
            if version is None:
                external, _ = ExternalDataset.objects.get_or_create(
                    team_id=job.team_id,
                    name=name,
                    digest=digest,
                    defaults={
                        "source_type": _checked_value(dataset.get("source_type"), "datasets", 64),
                        "source": _checked_value(dataset.get("source"), "datasets", 10_000),
                        "schema": _checked_value(dataset.get("schema"), "datasets", 100_000),
                        "first_run": job,
                    },
                )
            run_input = RunInput.objects.create(
                job=job,
                name=name,
                digest=digest,
                source_type=_checked_value(dataset.get("source_type"), "datasets", 64),
                source=_checked_value(dataset.get("source"), "datasets", 10_000),
                schema=_checked_value(dataset.get("schema"), "datasets", 100_000),
                profile=_checked_value(dataset.get("profile"), "datasets", 100_000),
                context=context,
                tags=input_tags,
                dataset_version=version,
                external_dataset=external,
            )
            node = NodeRef.of(version) if version is not None else NodeRef.of(external)
            do_record_edges([(node, NodeRef.of(job), Relation.INPUT)])
            record_audit_event(
                actor=actor,
                action="run.log_inputs",
                obj=job,
                after={"input": name, "digest": digest, "context": context, "node": node.key},
            )
            created.append(run_input)
    return created


def do_record_run_output(job_id: int, version: ModelVersion) -> None:
    """Record the lineage edge run -> model version for a version registered from run ``job_id``
    (its artifacts or its logged model). Runs inside the registration's transaction
    (``governance.sources.ResolvedSource.on_registered``); the registration's own audit event
    covers it, like the edges a training job records. The first version a run registers is also
    its ``output_model_version`` (the job page's and API's "output"), as a training job's is.

    ValidationError, which rolls the registration back, when one of the run's inputs (a code
    run's given dataset versions, a tracked run's logged inputs that matched one) was erased
    (GDPR Art. 17): what a run made from erased data is not registered, as a training job's
    is not (``runners.execute``). The inputs are locked, so an erasure orders with this."""
    inputs = (
        DatasetVersion.objects.select_for_update()
        .filter(
            Q(
                pk__in=JobDataset.objects.filter(job_id=job_id, role=JobDatasetRole.INPUT).values(
                    "dataset_version"
                )
            )
            | Q(pk__in=RunInput.objects.filter(job_id=job_id).values("dataset_version"))
            | Q(pk__in=Job.objects.filter(pk=job_id).values("dataset_version"))
        )
        .order_by("pk")
    )
    erased = next((version for version in inputs if version.erased_at is not None), None)
    if erased is not None:
        raise ValidationError(
            {
                "source": f"run {job_id} read {erased}, which was erased on "
                f"{erased.erased_at:%Y-%m-%d %H:%M} UTC (GDPR Art. 17): what it made is not registered"
            }
        )
    do_record_edges([(NodeRef("job", job_id), NodeRef.of(version), Relation.OUTPUT)])
    Job.objects.filter(pk=job_id, output_model_version__isnull=True).update(output_model_version=version)
    # A version registered from a run that already ended with its evaluation logged (issue 15).
    job = Job.objects.get(pk=job_id)
    do_record_self_reported_evaluations(job, actor=None, versions=[version])


# The input contexts (``mlflow.log_input(dataset, context=...)``) that say a run evaluated on an
# input, and those that say it trained on one. MLflow 3's ``mlflow.evaluate`` logs its data with
# no context (or its ``metric_prefix``) but logs every metric against the dataset.
EVALUATION_CONTEXTS = frozenset({"evaluation", "eval", "test"})
TRAINING_CONTEXTS = frozenset({"training", "train"})
# The run's artifact-root files a self-reported evaluation names (mlflow.evaluate's plots and
# tables are written there); more are left out, the run keeps them all.
EVALUATION_ARTIFACTS_MAX = 50


def _finite_latest(points: Any) -> dict[str, float]:
    """``{key: value}`` of each key's latest point (highest step, then timestamp, as
    ``Job.metrics``) among ``points`` (RunMetric rows), keeping finite values only."""
    latest: dict[str, float | None] = {}
    for key, value in points.order_by("key", "-step", "-timestamp_ms", "-id").values_list("key", "value"):
        latest.setdefault(key, value)
    return {key: value for key, value in latest.items() if value is not None and math.isfinite(value)}


def _evaluation_data(job: Job) -> tuple[RunInput, dict[str, float]] | None:
    """The input a run evaluated on and the metrics it reported on it (issue 15), or None.

    An input whose points were logged against it (MLflow 3's metric ``dataset_name`` and
    ``dataset_digest``, as ``mlflow.evaluate`` logs them) gives those points' latest values,
    unless its context says the run trained on it; else the first input with an evaluation
    context gives all the run's latest finite metrics (points logged without a dataset, as
    MLflow 2 clients log them). Evaluation-context inputs are tried first."""
    inputs = sorted(
        job.run_inputs.exclude(context__in=TRAINING_CONTEXTS).select_related("dataset_version"),
        key=lambda run_input: (run_input.context not in EVALUATION_CONTEXTS, run_input.pk),
    )
    for run_input in inputs:
        metrics = _finite_latest(
            job.metric_history.filter(dataset_name=run_input.name, dataset_digest=run_input.digest)
        )
        if metrics:
            return run_input, metrics
    for run_input in inputs:
        if run_input.context in EVALUATION_CONTEXTS:
            metrics = {
                key: value
                for key, value in (job.metrics or {}).items()
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            }
            return (run_input, metrics) if metrics else None
    return None


def _run_root_artifacts(job: Job) -> list[str]:
    """The ``mlflow-artifacts:/`` URIs of the files at the run's artifact root, sorted, at most
    ``EVALUATION_ARTIFACTS_MAX`` (folders, such as a logged model's, are left out)."""
    location = run_artifact_location(job)
    names = run_artifacts.root_files(run_artifacts.artifact_prefix(location))
    return [f"{location}/{name}" for name in names[:EVALUATION_ARTIFACTS_MAX]]


def do_record_self_reported_evaluations(
    job: Job, *, actor: User | None, versions: list[ModelVersion] | None = None
) -> list[Evaluation]:
    """Record what a tracked run reported about its own model (issue 15) as self-reported
    evaluations: when the run succeeded and reported metrics on one of its inputs (metrics logged
    against the input's dataset, as ``mlflow.evaluate`` logs them, or an input whose context is
    one of ``EVALUATION_CONTEXTS`` with the run's metrics; see ``_evaluation_data``), each version
    it registered (``versions``, by default those whose ``source_job_id`` is the run) gets one
    ``Evaluation`` (source ``self_reported``) holding those metrics' latest values, without
    intervals, on the input's dataset version when its digest matched one (else none), and in
    ``results["artifacts"]`` the URIs of the files at the run's artifact root (where
    ``mlflow.evaluate`` logs its plots and tables) when there are any; a version of another team's
    model than that dataset version's gets none (the record would join two teams' rows). Once per
    run and version;
    audited through ``record_evaluation`` (``actor``, or the system on behalf of the run's
    creator). Self-reported evaluations are shown, never trusted by a promotion gate."""
    if job.kind != JobKind.TRACKED or job.state != JobState.SUCCEEDED:
        return []
    found = _evaluation_data(job)
    if found is None:
        return []
    data, metrics = found
    if versions is None:
        registered = ModelVersion.objects.filter(source_job_id=job.pk).select_related("model")
        versions = list(registered.order_by("pk"))
    done = set(
        Evaluation.objects.filter(job_id=job.pk, source=Evaluation.Source.SELF_REPORTED).values_list(
            "model_version_id", flat=True
        )
    )
    data_team = data.dataset_version.dataset.team_id if data.dataset_version is not None else None
    pending = [
        version
        for version in versions
        if version.pk not in done
        and version.status != ModelVersion.Status.DELETED
        # A version registered into another team's model than the run's data: the record would
        # join two teams' rows and is refused, which failed the run's end (or the registration)
        # with it. Self-reported evaluations are information; none is recorded.
        and (data_team is None or version.model.team_id == data_team)
    ]
    if not pending:
        return []
    results: dict[str, Any] = {"metrics": dict(sorted(metrics.items()))}
    artifacts = _run_root_artifacts(job)
    if artifacts:
        results["artifacts"] = artifacts
    return [
        record_evaluation(
            model_version=version,
            dataset_version=data.dataset_version,
            spec={"context": data.context, "input": data.name, "digest": data.digest},
            results=results,
            source=Evaluation.Source.SELF_REPORTED,
            job_id=job.pk,
            actor=actor,
            on_behalf_of=None if actor is not None else job.created_by,
        )
        for version in pending
    ]


# --- Logged models (MLflow 3) --------------------------------------------------------------


def do_create_logged_model(
    *,
    experiment: Experiment,
    name: str = "",
    source_run: Job | None = None,
    model_type: str = "",
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    actor: User,
) -> LoggedModel:
    """Create a pending logged model in ``experiment``, produced by ``source_run`` (a run of the
    same experiment); its artifacts go to ``mlflow-artifacts:/experiments/<id>/models/<model id>/
    artifacts``. Audited (``logged_model.create``)."""
    tags = _checked_tags(tags)
    params = {
        _checked_key(k, "params"): _checked_value(v, "params", PARAM_VALUE_MAX)
        for k, v in (params or {}).items()
    }
    model_id = f"m-{uuid.uuid4().hex}"
    name = _checked_value(name or f"model-{model_id[2:10]}", "name", 500)
    with transaction.atomic():
        experiment = _locked_experiment(experiment, actor)
        if source_run is not None and source_run.experiment_id != experiment.pk:
            raise ValidationError({"source_run_id": "the source run belongs to another experiment"})
        model = LoggedModel.objects.create(
            id=model_id,
            experiment=experiment,
            source_run=source_run,
            name=name,
            model_type=_checked_value(model_type, "model_type", 500),
            artifact_location=f"mlflow-artifacts:/experiments/{experiment.pk}/models/{model_id}/artifacts",
            params=params,
            tags=tags,
            created_by=actor,
        )
        record_audit_event(actor=actor, action="logged_model.create", obj=model, after=snapshot(model))
    return model


def _locked_logged_model(model: LoggedModel, actor: User) -> LoggedModel:
    model = LoggedModel.objects.select_for_update().select_related("experiment").get(pk=model.pk)
    ensure_can(actor, CHANGE, model.experiment.team_id)
    return model


def do_finalize_logged_model(*, model: LoggedModel, status: str, actor: User) -> LoggedModel:
    """Set a logged model's status (READY once its artifacts are uploaded, or UPLOAD_FAILED);
    audited (``logged_model.finalize``)."""
    if status not in LoggedModelStatus.values:
        raise ValidationError(
            {"status": f"unknown status {status!r}; one of {', '.join(LoggedModelStatus.values)}"}
        )
    with transaction.atomic():
        model = _locked_logged_model(model, actor)
        before = snapshot(model)
        model.status = status
        model.updated_at = timezone.now()
        model.save(update_fields=["status", "updated_at"])
        record_audit_event(
            actor=actor, action="logged_model.finalize", obj=model, before=before, after=snapshot(model)
        )
    return model


def do_update_logged_model(
    *,
    model: LoggedModel,
    set_tags: dict[str, Any] | None = None,
    delete_tag: str | None = None,
    params: dict[str, Any] | None = None,
    actor: User,
) -> LoggedModel:
    """Set tags, delete one tag (missing: no-op) or add parameters of a logged model. Not audited
    (metadata the client attaches, like run tags)."""
    set_tags = _checked_tags(set_tags)
    params = {
        _checked_key(k, "params"): _checked_value(v, "params", PARAM_VALUE_MAX)
        for k, v in (params or {}).items()
    }
    with transaction.atomic():
        model = _locked_logged_model(model, actor)
        model.tags.update(set_tags)
        if delete_tag is not None:
            model.tags.pop(delete_tag, None)
        model.params.update(params)
        model.updated_at = timezone.now()
        model.save(update_fields=["tags", "params", "updated_at"])
    return model


def do_delete_logged_model(*, model: LoggedModel, actor: User) -> LoggedModel:
    """Soft-delete a logged model (versions registered from it keep their own copy); audited."""
    with transaction.atomic():
        model = _locked_logged_model(model, actor)
        if model.deleted_at is None:
            before = snapshot(model)
            model.deleted_at = timezone.now()
            model.save(update_fields=["deleted_at"])
            record_audit_event(
                actor=actor, action="logged_model.delete", obj=model, before=before, after=snapshot(model)
            )
    return model

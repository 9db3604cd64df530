"""Submitting, cancelling and finishing jobs: the one audited way to change a Job's state."""

from __future__ import annotations

import datetime
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from governance.actions.checks import ensure_can
from governance.actions.pii import pii_refusal
from governance.audit import record_audit_event, snapshot
from governance.datafiles import unstorable
from governance.models import DatasetVersion, ModelVersion, RegisteredModel, Team
from governance.permissions import CHANGE, MANAGE
from runners import evaluation_jobs, kubernetes, windows
from runners.budgets import hold_reason
from runners.launcher import Limits
from runners.lifecycle import CANCELLED, Lifecycle
from runners.lineage_events import announce_job
from runners.models import TERMINAL_STATES, Job, JobBackend, JobKind, JobSchedule, JobState
from runners.pii_protection import readable_version
from runners.serving.predictors import refusal
from runners.serving.rows import columns_of
from runners.specs import (
    SUBMISSION_FIELDS,
    SpecError,
    parse_limits,
    parse_resources,
    parse_spec,
    split_backend,
    where_from_spec,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

# The job's queue -> running -> finished lifecycle, shared with drift checks (runners.lifecycle).
JOBS: Lifecycle[Job] = Lifecycle(
    model=Job,
    noun="job",
    task_name="runners.tasks.run_job",
    terminal=TERMINAL_STATES,
    broker_error="could not reach the task broker to start the job: {exc}",
    orphan_error=(
        "the worker running this job stopped before it finished (killed or lost) "
        "on each of {attempts} attempts; resubmit it"
    ),
    undelivered_error=(
        "sent to the task queue {count} times and no worker started it; is a worker consuming its queue?"
    ),
    audit_start=True,
    cancel_flag="is_cancel_requested",
    # Each attempt starts its telemetry afresh: a dead attempt's epochs are not this one's.
    on_claim=lambda now: {"progress": 0.0, "history": [], "metrics": {}},
    not_run={"kind": JobKind.TRACKED},
    deliverable=lambda now: _deliverable(now),
    # Each job goes to its resource class's queue, on the first send and on every re-send.
    queue_field="resource_class",
    queue_for=lambda resource_class: job_queue(resource_class),
    # Each start and end is an OpenLineage RunEvent when a receiver is configured (issue 10).
    on_transition=announce_job,
)

INFERENCE_SPEC_FIELDS = frozenset({"where", "output_dataset", "limits", "resources"}) | SUBMISSION_FIELDS


def job_queue(resource_class: str) -> str:
    """The Celery queue of ``resource_class`` (``STEWARD_RESOURCE_CLASSES[...]["queue"]``), read at
    each send so a re-send follows the settings. Raises LookupError when the class is no longer
    offered: the job fails with that reason rather than run on a worker of another class."""
    found = settings.STEWARD_RESOURCE_CLASSES.get(resource_class)
    if found is None:
        raise LookupError(
            f"resource class {resource_class!r} is no longer offered (STEWARD_RESOURCE_CLASSES: "
            f"{', '.join(sorted(settings.STEWARD_RESOURCE_CLASSES))}); resubmit with another class"
        )
    return str(found["queue"])


def limit_maxima(team: Team) -> dict[str, int]:
    """The most a job of ``team`` may ask for in its spec's ``limits`` (issue 16): the platform's
    maxima, each replaced by the team's own in ``STEWARD_JOB_TEAM_LIMITS`` when it has one."""
    platform = {
        "wall_time_s": settings.STEWARD_JOB_MAX_WALL_TIME_S,
        "soft_wall_time_s": settings.STEWARD_JOB_MAX_WALL_TIME_S,
        "memory_mb": settings.STEWARD_JOB_MAX_MEMORY_MB,
        "threads": settings.STEWARD_JOB_MAX_THREADS,
    }
    return platform | dict(settings.STEWARD_JOB_TEAM_LIMITS.get(team.slug, {}))


def job_limits(job: Job) -> Limits:
    """The limits ``job`` runs under: its spec's ``limits``, else the settings' defaults, each
    bounded by ``limit_maxima`` (a maximum lowered after submission still applies)."""
    asked = job.spec.get("limits") or {}
    most = limit_maxima(job.team)

    def pick(name: str, default: int) -> int | None:
        value = asked.get(name, default) or None
        return None if value is None else min(value, most[name])

    return Limits(
        wall_time_s=pick("wall_time_s", settings.STEWARD_JOB_WALL_TIME_S),
        soft_wall_time_s=pick("soft_wall_time_s", settings.STEWARD_JOB_SOFT_WALL_TIME_S),
        memory_mb=pick("memory_mb", settings.STEWARD_JOB_MEMORY_MB),
        threads=pick("threads", settings.STEWARD_JOB_THREADS) or 1,
    )


def job_backend(asked: str | None, resource_class: str) -> str:
    """Where a job runs (issue 16): the spec's ``backend``, else its resource class's
    (``STEWARD_RESOURCE_CLASSES[cls]["backend"]``), else local.

    Raises SpecError naming ``backend`` when it is ray and no cluster is configured
    (``STEWARD_RAY_ADDRESS``), or kubernetes (this deployment renders manifests, submits none).
    """
    configured = settings.STEWARD_RESOURCE_CLASSES.get(resource_class, {}).get("backend")
    backend = asked or configured or JobBackend.LOCAL
    whence = "" if asked else f" (resource class {resource_class!r}'s default)"
    if backend == JobBackend.RAY and not settings.STEWARD_RAY_ADDRESS:
        raise SpecError(
            f"backend: 'ray'{whence} needs a Ray cluster and this deployment has none "
            "(STEWARD_RAY_ADDRESS is not set); use 'local'"
        )
    if backend == JobBackend.KUBERNETES and not settings.STEWARD_KUBERNETES_SUBMIT:
        raise SpecError(
            f"backend: 'kubernetes'{whence}: this deployment does not submit to Kubernetes "
            "(STEWARD_KUBERNETES_SUBMIT is off); use 'local' or 'ray' (GET /api/jobs/<id>/kubernetes-"
            "manifest/ shows the manifest of any job)"
        )
    if backend not in JobBackend.values:
        raise SpecError(f"backend: resource class {resource_class!r} names an unknown backend {backend!r}")
    return str(backend)


def kubernetes_manifest(job: Job) -> str:
    """The Kubernetes manifest of ``job`` as YAML (``runners.kubernetes``): its limits
    (``job_limits``), GPUs and team, the image, namespace and volume in the settings. Raises
    ValidationError for a tracked run (it ran elsewhere) or GPUs that do not split over nodes."""
    if job.kind == JobKind.TRACKED:
        raise ValidationError({"kind": f"{job} ran outside Steward; it has no manifest"})
    limits = job_limits(job)
    inputs = kubernetes.ManifestInputs(
        job_id=job.pk,
        team=job.team.slug,
        kind=job.kind,
        image=settings.STEWARD_KUBERNETES_IMAGE,
        namespace=settings.STEWARD_KUBERNETES_NAMESPACE,
        artifacts_claim=settings.STEWARD_KUBERNETES_ARTIFACTS_CLAIM,
        artifact_root=str(settings.ARTIFACT_ROOT),
        threads=limits.threads,
        memory_mb=limits.memory_mb,
        wall_time_s=None if limits.wall_time_s is None else int(limits.wall_time_s),
        gpus=job.gpus,
        max_attempts=settings.STEWARD_JOB_MAX_ATTEMPTS,
        gpus_per_node=settings.STEWARD_KUBERNETES_GPUS_PER_NODE,
    )
    try:
        return kubernetes.to_yaml(kubernetes.manifest(inputs))
    except kubernetes.ManifestError as exc:
        raise ValidationError({"gpus": str(exc)}) from exc


def _check_inference_spec(spec: Any, dataset_version: DatasetVersion, model_version: ModelVersion) -> dict:
    if not isinstance(spec, dict):
        raise SpecError("spec: expected a JSON object")
    unknown = sorted(set(spec) - INFERENCE_SPEC_FIELDS)
    if unknown:
        allowed = ", ".join(sorted(INFERENCE_SPEC_FIELDS | {"backend"}))
        raise SpecError(f"spec: unknown field(s) {', '.join(unknown)}; allowed: {allowed}")
    parse_limits(spec.get("limits"), limit_maxima(model_version.model.team))
    resources = parse_resources(
        spec.get("resources"), settings.STEWARD_RESOURCE_CLASSES, settings.STEWARD_DEFAULT_RESOURCE_CLASS
    )
    columns = dataset_version.column_names
    expected = columns_of(model_version.signature, model_version.flavor_details) or []
    missing = [c.name for c in expected if c.is_required and c.name not in columns]
    if missing:
        raise SpecError(
            f"dataset version lacks the model's feature column(s) {', '.join(map(repr, missing))}"
        )
    where_from_spec(spec.get("where"), columns)
    output = spec.get("output_dataset", "")
    if not isinstance(output, str) or len(output) > 200 or (output and not output.strip()):
        raise SpecError("output_dataset: a dataset name of 1 to 200 characters")
    if unstorable(output):
        raise SpecError(f"output_dataset: {unstorable(output)}")
    if output:
        spec = {**spec, "output_dataset": output.strip()}
    return {**spec, "resources": resources}


@dataclass(frozen=True)
class Submission:
    """What ``check_submission`` found valid: the job's team, its spec as stored (training
    parameters normalised, window and backend fields kept), when it may start and where it runs."""

    team_id: int
    spec: dict[str, Any]
    not_before: datetime.datetime | None
    backend: str


def check_submission(
    *,
    kind: str,
    dataset_version: DatasetVersion,
    spec: Any,
    registered_model: RegisteredModel | None = None,
    model_version: ModelVersion | None = None,
    now: datetime.datetime | None = None,
) -> Submission:
    """Validate a training, inference or evaluation job before it is queued (``do_submit_job``;
    a job schedule checks its template with it too). No permission check: the caller's action
    does it.

    Training needs ``registered_model`` (the new version goes there) and a spec valid for the
    dataset's columns; inference needs ``model_version`` and a dataset holding its features;
    evaluation needs ``model_version`` and an evaluation spec whose columns the dataset holds
    (``runners.evaluation_jobs.check_evaluation_spec``; it runs on the local backend only).
    Each spec may ask for ``resources`` (a class of ``STEWARD_RESOURCE_CLASSES`` and its GPUs,
    ``runners.specs.parse_resources``): stored on the job, they pick its queue. Either may name
    its ``backend`` (see ``job_backend``; the class's own by default), stored on the job, not the
    spec. The spec's ``start_window`` / ``not_before`` give ``not_before`` (``now`` inside the
    window, else its next opening; ``runners.windows``). Raises ValidationError naming the bad
    field or column.
    """
    if kind == JobKind.TRAIN:
        if registered_model is None:
            raise ValidationError({"registered_model": "a training job needs the model to register into"})
        # The registry would refuse the version at the end (issue 9): refuse the job before it
        # runs and is paid for.
        if registered_model.deleted_at is not None:
            raise ValidationError({"registered_model": f"model {registered_model.name} was deleted"})
        if registered_model.archived_at is not None:
            raise ValidationError(
                {
                    "registered_model": f"model {registered_model.name} is archived; "
                    "unarchive it to train new versions"
                }
            )
        team_id = registered_model.team_id
    elif kind in (JobKind.INFER, JobKind.EVALUATE):
        if model_version is None:
            noun = "an inference" if kind == JobKind.INFER else "an evaluation"
            raise ValidationError({"model_version": f"{noun} job needs a model version"})
        if model_version.status == ModelVersion.Status.DELETED or model_version.model.deleted_at is not None:
            raise ValidationError({"model_version": f"{model_version} was deleted"})
        why = refusal(model_version.flavor)
        if why:
            # Every flavor that can predict runs (issue 17); a bare state dict or an unknown
            # file cannot, whatever runtime the child has.
            raise ValidationError({"model_version": f"{model_version}: {why}"})
        team_id = model_version.model.team_id
    else:
        raise ValidationError({"kind": f"unknown job kind {kind!r}; one of train, infer, evaluate"})
    if dataset_version.erased_at is not None:
        erased = f"{dataset_version.erased_at:%Y-%m-%d}"
        raise ValidationError({"dataset_version": f"{dataset_version} was erased on {erased} (GDPR Art. 17)"})
    try:
        asked_backend, spec = split_backend(spec)
        if kind == JobKind.TRAIN:
            maxima = limit_maxima(Team.objects.get(pk=team_id))
            checked = parse_spec(
                spec,
                dataset_version.column_names,
                maxima=maxima,
                classes=settings.STEWARD_RESOURCE_CLASSES,
                default_class=settings.STEWARD_DEFAULT_RESOURCE_CLASS,
            ).as_dict()
        elif kind == JobKind.EVALUATE and model_version is not None:
            checked = evaluation_jobs.check_evaluation_spec(
                spec,
                dataset_version,
                model_version,
                maxima=limit_maxima(model_version.model.team),
                classes=settings.STEWARD_RESOURCE_CLASSES,
                default_class=settings.STEWARD_DEFAULT_RESOURCE_CLASS,
            )
        elif model_version is not None:  # always, for an inference job (checked above)
            checked = _check_inference_spec(spec, dataset_version, model_version)
        backend = job_backend(asked_backend, checked["resources"]["class"])
        if kind == JobKind.EVALUATE and backend != JobBackend.LOCAL:
            # The engine runs in the worker beside the child that predicts (issue 15).
            raise SpecError(f"backend: an evaluation job runs on its worker (local), not {backend!r}")
        window, not_before = windows.start_time(spec, now or timezone.now())
    except SpecError as exc:
        raise ValidationError({"spec": str(exc)}) from exc
    if dataset_version.dataset.team_id != team_id:
        # A job's inputs and outputs stay in one team: otherwise another team's rows (and names,
        # through lineage and related links) would land where that team has no say.
        raise ValidationError(
            {"dataset_version": "the dataset version belongs to another team than the model"}
        )
    checked = {key: value for key, value in checked.items() if key not in SUBMISSION_FIELDS}
    return Submission(team_id=team_id, spec=checked | window, not_before=not_before, backend=backend)


def do_submit_job(
    *,
    kind: str,
    dataset_version: DatasetVersion,
    spec: Any,
    actor: User,
    registered_model: RegisteredModel | None = None,
    model_version: ModelVersion | None = None,
    schedule: JobSchedule | None = None,
    now: datetime.datetime | None = None,
) -> Job:
    """Validate and queue a training, inference or evaluation job; the task is sent after commit,
    or, when the spec asks for a start window, by the sweeper once the window opens (issue 16).

    ``schedule``: the recurring job that fired it; ``now``: the submission time (tests pass it to
    place a job inside or outside its window). See ``check_submission`` for the rules. A job on
    a version its team's PII policy masks, hashes or drops reads its protected copy instead
    (``runners.pii_protection``; made if missing, its spec checked again against it); one its
    policy blocks (``governance.actions.pii.pii_refusal``: blocked findings, or an unresolved
    scan) is refused, whatever its kind. Raises ValidationError naming the bad field, column or
    PII finding; PermissionDenied without the right.
    """
    submission = check_submission(
        kind=kind,
        dataset_version=dataset_version,
        spec=spec,
        registered_model=registered_model,
        model_version=model_version,
        now=now,
    )
    with transaction.atomic():
        ensure_can(actor, CHANGE, submission.team_id)
        # Issue 12: personal data the team's policy blocks never reaches a run, and what it
        # protects is read through the protected copy (checked after the permission, so an
        # outsider learns nothing of it).
        readable = readable_version(dataset_version, actor=actor, field="dataset_version")
        if readable != dataset_version:
            try:
                submission = check_submission(
                    kind=kind,
                    dataset_version=readable,
                    spec=spec,
                    registered_model=registered_model,
                    model_version=model_version,
                    now=now,
                )
            except ValidationError as exc:
                problems = "; ".join(exc.messages)
                raise ValidationError(
                    {"dataset_version": f"on {readable}, the protected copy jobs read: {problems}"}
                ) from exc
            dataset_version = readable
        if why := pii_refusal(dataset_version):
            raise ValidationError({"dataset_version": why})
        return queue_job(
            submission,
            kind=kind,
            actor=actor,
            dataset_version=dataset_version,
            registered_model=registered_model,
            model_version=model_version,
            schedule=schedule,
        )


def queue_job(submission: Submission, *, kind: str, actor: User, **fields: Any) -> Job:
    """Write the job ``submission`` describes (caller's transaction, permission already checked):
    held when its team is past its budget, else queued and sent after commit; its ``job.submit``
    audit event. ``fields``: the kind's own columns (inputs, model, code version, schedule)."""
    # A team past its budget (issue 16): the job waits, held, for an owner to release it.
    held = hold_reason(Team.objects.get(pk=submission.team_id))
    job = Job.objects.create(
        team_id=submission.team_id,
        kind=kind,
        spec=submission.spec,
        created_by=actor,
        celery_task_id=str(uuid.uuid4()),
        backend=submission.backend,
        not_before=submission.not_before,
        state=JobState.HELD if held else JobState.QUEUED,
        hold_reason=held,
        resource_class=submission.spec["resources"]["class"],
        gpus=submission.spec["resources"]["gpus"],
        **fields,
    )
    record_audit_event(actor=actor, action="job.submit", obj=job, after=snapshot(job))
    # enqueue sends nothing before the job is deliverable (its window, its backend).
    if not held:
        transaction.on_commit(lambda: enqueue_job(job.pk))
    return job


def do_release_job(*, job: Job, actor: User) -> Job:
    """Release a job held by its team's budget: held -> queued, sent to a worker after commit.

    Only the team's model owners and platform admins (``manage``) may: they decide to spend past
    the budget. Raises ValidationError when the job is not held; PermissionDenied otherwise.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        ensure_can(actor, MANAGE, job.team_id)
        if job.state != JobState.HELD:
            raise ValidationError({"state": f"job #{job.pk} is {job.state}, not held; nothing to release"})
        before = snapshot(job)
        job.state, job.hold_reason = JobState.QUEUED, ""
        job.save(update_fields=["state", "hold_reason"])
        record_audit_event(actor=actor, action="job.release", obj=job, before=before, after=snapshot(job))
        job_id = job.pk
        transaction.on_commit(lambda: enqueue_job(job_id))
    return job


def _deliverable(now: datetime.datetime) -> Q:
    """Jobs Celery may deliver at ``now``: their start window has opened, and no Kubernetes
    submitter runs them (``STEWARD_KUBERNETES_SUBMIT``)."""
    return (Q(not_before__isnull=True) | Q(not_before__lte=now)) & ~Q(backend=JobBackend.KUBERNETES)


def enqueue_job(job_id: int) -> bool:
    """Send the job's task to the broker; a broker outage leaves it queued with ``dispatch_error``
    for ``do_redispatch_queued_jobs`` to send again (issue 16). True if it was sent."""
    return JOBS.enqueue(job_id)


def do_redispatch_queued_jobs(after_s: int, max_dispatches: int) -> list[int]:
    """Send again queued jobs with no live delivery; fail those sent ``max_dispatches`` times."""
    return JOBS.redispatch(after_s, max_dispatches)


def do_cancel_job(*, job: Job, actor: User) -> Job:
    """Cancel a queued or held job at once, or ask a running one to stop: its worker polls the flag and
    kills the job's process group (``runners.execute``; cancelled within seconds).

    Raises ValidationError when the job has already finished.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        ensure_can(actor, CHANGE, job.team_id)
        if job.kind == JobKind.TRACKED:
            raise ValidationError({"kind": f"{job} runs outside Steward; its MLflow client ends it"})
        if job.state in TERMINAL_STATES:
            raise ValidationError({"state": f"job #{job.pk} already {job.state}; nothing to cancel"})
        if job.is_cancel_requested:
            raise ValidationError({"state": f"job #{job.pk} is already stopping after a cancel request"})
        before = snapshot(job)
        if job.state in (JobState.QUEUED, JobState.HELD):
            job.state = JobState.CANCELLED
            job.finished_at = timezone.now()
            job.error = f"cancelled by {actor.get_username()} before it started"
            job.hold_reason = ""
        job.is_cancel_requested = True
        job.save(update_fields=["state", "finished_at", "error", "is_cancel_requested", "hold_reason"])
        record_audit_event(actor=actor, action="job.cancel", obj=job, before=before, after=snapshot(job))
        if job.state == JobState.CANCELLED:
            JOBS.announce(job.pk, CANCELLED)
    return job


def claim_job(job_id: int) -> bool:
    """Move a queued job to running with a conditional UPDATE; False if another delivery got it."""
    return JOBS.claim(job_id)


def do_fail_job(job_id: int, reason: str) -> bool:
    """Mark a job failed with ``reason``; False if it had already finished."""
    return JOBS.fail(job_id, reason)


def do_succeed_job(job_id: int, **outputs: Any) -> bool:
    """Mark a job succeeded with its outputs (caller's transaction holds the outputs' rows: a run
    opens it with ``JOBS.fenced``, so it commits only under the run's own claim)."""
    with transaction.atomic():
        return JOBS.finish(job_id, JobState.SUCCEEDED, "job.succeed", progress=1.0, **outputs)[1]


def do_fail_stale_jobs(timeout_s: int) -> list[int]:
    """Fail running jobs whose heartbeat is older than ``timeout_s`` seconds (their worker died)."""
    return JOBS.fail_stale(timeout_s)

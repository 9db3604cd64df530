"""Recurring jobs (issue 16): create, change, pause, resume, delete and fire job schedules.

A schedule is a job template (kind, dataset, model or model version, spec) and a five-field cron
expression read in its timezone. Its django-celery-beat ``PeriodicTask`` (``runners.beat``) calls
``runners.tasks.fire_job_schedule``, which submits a job through ``do_submit_job`` on the
dataset's latest version, as the schedule's creator (their rights and limits apply then, not when
it was created). A firing never stacks a job on one still queued, held or running, and a firing
that cannot submit records why; both are audited and shown on the schedule.

An evaluation schedule (issue 15) evaluates a model version, or whoever holds an alias of a model
(``model_alias``, e.g. ``production``), on the newest labelled data of its dataset
(``governance.queries.newest_labelled_version``, the rule retraining on drift follows); both are
resolved at each firing.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance.actions.checks import check_alias_name, ensure_can
from governance.audit import record_audit_event, snapshot
from governance.models import Dataset, DatasetVersion, ModelAlias, ModelVersion, RegisteredModel
from governance.permissions import CHANGE
from governance.queries import newest_labelled_version
from runners.actions import check_submission, do_submit_job
from runners.beat import Cron, keep_periodic_task
from runners.models import TERMINAL_STATES, Job, JobKind, JobSchedule
from runners.specs import SpecError
from runners.windows import parse_timezone

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

FIRE_TASK = "runners.tasks.fire_job_schedule"
# What a person may set on a schedule (the kind is fixed once created: a training schedule's
# template is not an inference job's).
SCHEDULE_FIELDS = (
    "name",
    "dataset",
    "registered_model",
    "model_version",
    "model_alias",
    "spec",
    "cron",
    "cron_timezone",
)


def latest_version(dataset: Dataset) -> DatasetVersion | None:
    """The dataset's newest version (highest number), or None when it has none."""
    return DatasetVersion.objects.filter(dataset=dataset).order_by("-version").first()


def evaluated_version(schedule: JobSchedule) -> ModelVersion | None:
    """The model version the schedule's job runs with: its ``model_version``, or, for an evaluation
    of an alias, the version holding ``model_alias`` on ``registered_model`` now (None for a
    training schedule). Raises ValidationError on ``model_alias`` when the model has no such
    alias."""
    if not schedule.model_alias:
        return schedule.model_version
    model = schedule.registered_model
    held = (
        ModelAlias.objects.filter(model=model, name=schedule.model_alias)
        .select_related("model_version__model")
        .first()
    )
    if held is None:
        raise ValidationError({"model_alias": f"model {model} has no alias {schedule.model_alias!r} now"})
    return held.model_version


def job_data(schedule: JobSchedule, model_version: ModelVersion | None) -> DatasetVersion | None:
    """The dataset version the schedule's job runs on now: for an evaluation, the newest labelled
    data of its dataset for ``model_version`` (``newest_labelled_version``, with the spec's
    ``target``; ValidationError on ``dataset`` when no version holds the label and features);
    otherwise the dataset's latest version, or None when it has none."""
    if schedule.kind != JobKind.EVALUATE or model_version is None:
        return latest_version(schedule.dataset)
    target = schedule.spec.get("target") if isinstance(schedule.spec, dict) else None
    try:
        return newest_labelled_version(
            schedule.dataset, model_version, target=target if isinstance(target, str) else None
        )
    except ValidationError as exc:
        raise ValidationError({"dataset": exc.messages}) from exc


def _check_subject(schedule: JobSchedule, errors: dict[str, str]) -> None:
    """Which model or model version the kind needs (the other is cleared); adds to ``errors``."""
    schedule.model_alias = (schedule.model_alias or "").strip()
    if schedule.model_alias and schedule.kind != JobKind.EVALUATE:
        errors["model_alias"] = "only an evaluation schedule follows an alias; this one names its model"
    if schedule.kind == JobKind.TRAIN:
        schedule.model_version = None
    elif schedule.kind == JobKind.INFER or (schedule.kind == JobKind.EVALUATE and not schedule.model_alias):
        schedule.registered_model = None
    elif schedule.kind == JobKind.EVALUATE:
        try:
            check_alias_name(schedule.model_alias)
        except ValidationError as exc:
            errors["model_alias"] = " ".join(exc.message_dict["alias"])
        if schedule.model_version is not None:
            errors["model_version"] = (
                "an evaluation schedule names a model version or an alias of a model (model_alias), not both"
            )
        elif schedule.registered_model is None:
            alias = schedule.model_alias
            errors["registered_model"] = f"the alias {alias!r} needs the model whose alias it is"
        elif _unusable(schedule):
            errors["registered_model"] = _unusable(schedule)
    else:
        errors["kind"] = f"one of train, infer, evaluate; got {schedule.kind!r}"


def _clean_schedule(schedule: JobSchedule) -> None:
    """Validate a schedule's settings together and set its team; raises ValidationError naming
    the field (``cron``, ``cron_timezone``, ``spec``, ``dataset``, ``name``...)."""
    errors: dict[str, str] = {}
    schedule.name = (schedule.name or "").strip()
    if not schedule.name or len(schedule.name) > 200:
        errors["name"] = "a schedule needs a name of 1 to 200 characters"
    try:
        Cron.parse(schedule.cron or "", schedule.cron_timezone).check()
    except ValueError as exc:
        errors["cron"] = f"not a cron expression: {exc}"
    try:
        parse_timezone(schedule.cron_timezone, "cron_timezone")
    except SpecError as exc:
        errors["cron_timezone"] = str(exc)
    if isinstance(schedule.spec, dict) and "not_before" in schedule.spec:
        # A fixed instant would be in the past from the second firing on; a window recurs.
        errors["spec"] = "not_before: a schedule cannot start its jobs at one fixed time; use start_window"
    _check_subject(schedule, errors)
    if errors:
        raise ValidationError(errors)
    model_version = evaluated_version(schedule)
    newest = job_data(schedule, model_version)
    if newest is None:
        raise ValidationError({"dataset": f"{schedule.dataset} has no version yet; upload one first"})
    # The template must make a valid job today (its latest data, its model); each firing checks again.
    try:
        submission = check_submission(
            kind=schedule.kind,
            dataset_version=newest,
            spec=schedule.spec,
            registered_model=schedule.registered_model if schedule.kind == JobKind.TRAIN else None,
            model_version=model_version,
        )
    except ValidationError as exc:
        # The schedule names a dataset, not one of its versions.
        if not hasattr(exc, "error_dict"):
            raise
        raise ValidationError(
            {
                ("dataset" if key == "dataset_version" else key): value
                for key, value in exc.message_dict.items()
            }
        ) from exc
    schedule.team_id = submission.team_id
    if schedule.dataset.team_id != schedule.team_id:
        raise ValidationError({"dataset": "the dataset belongs to another team than the model"})


def _sync_periodic_task(schedule: JobSchedule) -> None:
    task = keep_periodic_task(
        schedule.periodic_task,
        name=f"job-schedule-{schedule.pk}",
        task_name=FIRE_TASK,
        args=[schedule.pk],
        is_enabled=schedule.is_enabled,
        description=f"{schedule.team}: {schedule}",
        cron=Cron.parse(schedule.cron, schedule.cron_timezone),
    )
    if schedule.periodic_task_id != (task.pk if task is not None else None):
        schedule.periodic_task = task
        schedule.save(update_fields=["periodic_task"])


def _name_taken(schedule: JobSchedule) -> bool:
    return (
        JobSchedule.objects.filter(team_id=schedule.team_id, name=schedule.name)
        .exclude(pk=schedule.pk)
        .exists()
    )


def do_create_job_schedule(
    *,
    name: str,
    kind: str,
    dataset: Dataset,
    cron: str,
    actor: User,
    spec: Any = None,
    cron_timezone: str = "UTC",
    registered_model: RegisteredModel | None = None,
    model_version: ModelVersion | None = None,
    model_alias: str = "",
    is_enabled: bool = True,
) -> JobSchedule:
    """Create a recurring job and its beat entry (enabled unless ``is_enabled`` is False).

    Training needs ``registered_model``, inference ``model_version``; evaluation
    ``model_version``, or ``registered_model`` and ``model_alias`` (held now). The spec must make
    a valid job now on the dataset's latest version (an evaluation: its newest labelled version,
    else a ValidationError on ``dataset``). Raises ValidationError naming the field (a ``cron``
    celery's crontab does not parse, an unknown ``cron_timezone``...); PermissionDenied without
    the CHANGE right on the model's team.
    """
    schedule = JobSchedule(
        name=name,
        kind=kind,
        dataset=dataset,
        registered_model=registered_model,
        model_version=model_version,
        model_alias=model_alias,
        spec=spec if spec is not None else {},
        cron=cron,
        cron_timezone=cron_timezone,
        is_enabled=is_enabled,
        created_by=actor,
    )
    _clean_schedule(schedule)
    with transaction.atomic():
        ensure_can(actor, CHANGE, schedule.team_id)
        if _name_taken(schedule):
            raise ValidationError({"name": f"the team already has a job schedule named {schedule.name!r}"})
        schedule.save()
        _sync_periodic_task(schedule)
        record_audit_event(actor=actor, action="job_schedule.create", obj=schedule, after=snapshot(schedule))
    return schedule


def do_update_job_schedule(*, schedule: JobSchedule, actor: User, **changes: Any) -> JobSchedule:
    """Change a schedule's settings (``SCHEDULE_FIELDS``, and ``is_enabled`` through pause and
    resume) and its beat entry; validated as on creation. Raises ValidationError naming the field;
    PermissionDenied without the CHANGE right on its team (before and after the change)."""
    unknown = sorted(set(changes) - {*SCHEDULE_FIELDS, "is_enabled"})
    if unknown:
        raise ValidationError({"detail": f"unknown or fixed job schedule field(s): {', '.join(unknown)}"})
    with transaction.atomic():
        schedule = JobSchedule.objects.select_for_update().get(pk=schedule.pk)
        ensure_can(actor, CHANGE, schedule.team_id)
        before = snapshot(schedule)
        if set(changes) == {"is_enabled"} and schedule.is_enabled == changes["is_enabled"]:
            state = "running" if schedule.is_enabled else "paused"
            raise ValidationError({"is_enabled": f"{schedule} is already {state}"})
        for name, value in changes.items():
            setattr(schedule, name, value)
        if set(changes) != {"is_enabled"}:
            _clean_schedule(schedule)
            ensure_can(actor, CHANGE, schedule.team_id)
            if _name_taken(schedule):
                raise ValidationError(
                    {"name": f"the team already has a job schedule named {schedule.name!r}"}
                )
        if snapshot(schedule) == before:
            return schedule  # nothing changed: nothing to record
        schedule.save()
        _sync_periodic_task(schedule)
        action = "job_schedule.update"
        if set(changes) == {"is_enabled"}:
            action = "job_schedule.resume" if schedule.is_enabled else "job_schedule.pause"
        record_audit_event(actor=actor, action=action, obj=schedule, before=before, after=snapshot(schedule))
    return schedule


def do_pause_job_schedule(*, schedule: JobSchedule, actor: User) -> JobSchedule:
    """Stop firing the schedule (its beat entry is disabled); its jobs already submitted go on."""
    return do_update_job_schedule(schedule=schedule, actor=actor, is_enabled=False)


def do_resume_job_schedule(*, schedule: JobSchedule, actor: User) -> JobSchedule:
    """Fire the schedule again at its next cron time."""
    return do_update_job_schedule(schedule=schedule, actor=actor, is_enabled=True)


def do_delete_job_schedule(*, schedule: JobSchedule, actor: User) -> None:
    """Delete a schedule and its beat entry; the jobs it submitted stay (their schedule empties)."""
    with transaction.atomic():
        schedule = JobSchedule.objects.select_for_update().get(pk=schedule.pk)
        ensure_can(actor, CHANGE, schedule.team_id)
        record_audit_event(actor=actor, action="job_schedule.delete", obj=schedule, before=snapshot(schedule))
        task = schedule.periodic_task
        schedule.delete()
        if task is not None:
            task.delete()


def _unusable(schedule: JobSchedule) -> str:
    """Why the schedule's model or model version cannot take a job now; empty if it can."""
    model = schedule.registered_model
    if model is not None and model.deleted_at is not None:
        return f"its model {model} was deleted"
    if model is not None and model.archived_at is not None:
        return f"its model {model} is archived; unarchive it or delete this schedule"
    version = schedule.model_version
    if version is not None and version.status != ModelVersion.Status.READY:
        return f"its model version {version} is {version.status}"
    if version is not None and version.model.deleted_at is not None:
        return f"the model of {version} was deleted"
    return ""


def _record_firing(
    schedule: JobSchedule, now: datetime.datetime, action: str, outcome: str, job: Job | None
) -> None:
    before = snapshot(schedule)
    schedule.last_fired_at = now
    schedule.last_outcome = outcome[:4000]
    fields = ["last_fired_at", "last_outcome"]
    if job is not None:
        schedule.last_job = job
        fields.append("last_job")
    schedule.save(update_fields=fields)
    record_audit_event(
        actor=None,
        on_behalf_of=schedule.created_by,
        action=action,
        obj=schedule,
        before=before,
        after=dict(snapshot(schedule) or {}, outcome=schedule.last_outcome, job_id=job.pk if job else None),
    )


def _reason(exc: ValidationError) -> str:
    if not hasattr(exc, "error_dict"):
        return " ".join(exc.messages)
    return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())


def do_fire_job_schedule(schedule_id: int, *, now: datetime.datetime | None = None) -> Job | None:
    """Submit the schedule's job now (beat calls it at each cron time); returns the job, or None
    when none was submitted, with the reason recorded on the schedule and audited:

    - ``job_schedule.skip``: paused, or its previous job is still queued, held or running (a
      firing does not stack a second one);
    - ``job_schedule.fire_fail``: its model or model version was deleted or archived, its dataset
      has no version, an evaluation's alias is held by nobody or no version of its dataset holds
      the label and the model's features, or the submission was refused (the creator lost the
      right, the latest data lacks a column the spec names...);
    - ``job_schedule.fire``: the job submitted, as the creator, on the dataset's latest version
      (an evaluation: of the alias's holder now, on the newest labelled version).

    The schedule row is locked for the firing, so two deliveries of one firing submit one job.
    A schedule deleted meanwhile is a no-op (None, nothing recorded).
    """
    now = now or timezone.now()
    with transaction.atomic():
        schedule = (
            # Lock the schedule row only: PostgreSQL cannot lock the nullable side of the joins.
            JobSchedule.objects.select_for_update(of=("self",))
            .select_related("registered_model", "model_version__model", "dataset", "created_by", "team")
            .filter(pk=schedule_id)
            .first()
        )
        if schedule is None:
            logger.warning("job schedule %s no longer exists; nothing fired", schedule_id)
            return None
        previous = schedule.last_job
        if not schedule.is_enabled:
            _record_firing(schedule, now, "job_schedule.skip", "skipped: the schedule is paused", None)
            return None
        if previous is not None and previous.state not in TERMINAL_STATES:
            outcome = f"skipped: its previous job #{previous.pk} is still {previous.state}"
            _record_firing(schedule, now, "job_schedule.skip", outcome, None)
            return None
        reason = _unusable(schedule)
        model_version, newest = schedule.model_version, None
        if not reason:
            try:
                model_version = evaluated_version(schedule)
                newest = job_data(schedule, model_version)
            except ValidationError as exc:
                reason = _reason(exc)
        if not reason and newest is None:
            reason = f"its dataset {schedule.dataset} has no version"
        job = None
        if not reason and newest is not None:
            try:
                job = do_submit_job(
                    kind=schedule.kind,
                    dataset_version=newest,
                    spec=schedule.spec,
                    actor=schedule.created_by,
                    registered_model=schedule.registered_model if schedule.kind == JobKind.TRAIN else None,
                    model_version=model_version,
                    schedule=schedule,
                    now=now,
                )
            except ValidationError as exc:
                reason = _reason(exc)
            except PermissionDenied as exc:
                reason = (
                    f"{schedule.created_by.get_username()} may no longer submit jobs for this team ({exc})"
                )
        if job is None:
            _record_firing(schedule, now, "job_schedule.fire_fail", f"failed: {reason}", None)
            return None
        of = f" of {model_version}" if schedule.kind == JobKind.EVALUATE else ""
        _record_firing(schedule, now, "job_schedule.fire", f"submitted job #{job.pk}{of} on {newest}", job)
    return job

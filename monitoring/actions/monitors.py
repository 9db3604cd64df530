"""Monitors: create, change, pause, resume and delete them, with their beat schedule kept in step.

The settable fields are ``monitoring.models.MONITOR_FIELDS``, the one list (issue 8) the API
serializer takes its fields from too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import current_app
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance import datafiles
from governance.actions.checks import ensure_can
from governance.audit import record_audit_event, snapshot
from governance.models import DatasetVersion, ModelVersion
from governance.permissions import CHANGE, VIEW, can
from monitoring.actions.checks import default_columns, group_config, monitor_engine_config
from monitoring.engine.embedding import IMAGE
from monitoring.models import MONITOR_BOUNDS, MONITOR_FIELDS, CurrentSource, Monitor
from monitoring.models.monitors import performance_test_errors
from runners.beat import keep_periodic_task

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

RUN_MONITOR_TASK = "monitoring.tasks.run_monitor"
BUILD_PROFILES_TASK = "monitoring.tasks.build_reference_profiles"


def _clean_monitor(monitor: Monitor, actor: User | None) -> None:
    """Validate a monitor's settings together. Raises ValidationError naming the field."""
    errors: dict[str, str] = {}
    if not monitor.name.strip():
        errors["name"] = "a monitor needs a name"
    reference = monitor.reference_dataset_version
    try:
        monitor.reference_where = datafiles.check_where(monitor.reference_where, reference.column_names)
    except datafiles.RowFilterError as exc:
        errors["reference_where"] = str(exc)
    if actor is not None and not can(actor, VIEW, reference.dataset.team_id, fresh=True):
        errors["reference_dataset_version"] = "you may not read this dataset version"
    if monitor.source == CurrentSource.DATASET:
        if monitor.current_dataset is None:
            errors["current_dataset"] = "choose the dataset whose uploaded versions are checked"
        elif actor is not None and not can(actor, VIEW, monitor.current_dataset.team_id, fresh=True):
            errors["current_dataset"] = "you may not read this dataset"
    elif monitor.source in (CurrentSource.PREDICTIONS, CurrentSource.SERVED):
        monitor.current_dataset = None
    else:
        errors["source"] = f"unknown source {monitor.source!r}"
    if not monitor.columns:
        monitor.columns = default_columns(monitor.model_version, reference)
        if monitor.source == CurrentSource.SERVED:
            # Served rows are what callers sent: the features, never the target (labels come
            # later, joined on the prediction id).
            target = monitor.model_version.signature.get("target")
            monitor.columns = [column for column in monitor.columns if column != target]
    missing = [column for column in monitor.columns if column not in reference.column_names]
    if missing:
        errors["columns"] = (
            f"{', '.join(map(repr, missing))} not in the reference dataset version {reference}"
        )
    elif not monitor.columns:
        errors["columns"] = "the reference holds none of the model's columns"
    allowed = {*monitor.columns, "prediction"}
    # An image (column kind "image") is named apart from the columns; it takes a threshold and a
    # weight like a column (monitor_engine_config checks the model gives embeddings).
    kinds = monitor.column_kinds if isinstance(monitor.column_kinds, dict) else {}
    images = {name for name, kind in kinds.items() if kind == IMAGE}
    per_column = ("methods", "thresholds", "column_kinds", "weights")
    for name in per_column:
        value = getattr(monitor, name)
        if not isinstance(value, dict):
            errors[name] = "must be an object of column -> value"
            continue
        takes_prediction = name in ("methods", "thresholds")
        known = (allowed if takes_prediction else set(monitor.columns)) | (
            images if name != "methods" else set()
        )
        stray = sorted(set(value) - known)
        if stray:
            also = " or 'prediction'" if takes_prediction else ""
            errors[name] = f"{', '.join(map(repr, stray))} is not a monitored column{also}"
    if "columns" not in errors and not errors.keys() & set(per_column):
        try:
            monitor_engine_config(monitor)
        except ValidationError as exc:
            errors.update({key: messages[0] for key, messages in exc.message_dict.items()})
    try:
        # Stored as the engine reads them (a segment column's name becomes {"column", "top"}).
        groups = group_config(
            monitor.time_window, monitor.segment_by, monitor.alert_on_groups, reference=reference
        )
        monitor.time_window = groups.get("time_window") or {}
        monitor.segment_by = groups.get("segment_by") or {}
    except ValidationError as exc:
        errors.update({key: messages[0] for key, messages in exc.message_dict.items()})
    # Upper bounds keep every value inside what timedelta and beat's schedules can represent: a
    # 10**18-minute schedule or reopen window raised OverflowError in beat and in every check.
    for name, low, high, unit in MONITOR_BOUNDS:
        value = getattr(monitor, name)
        if value is not None and not low <= value <= high:
            errors[name] = f"must be from {low} to {high} {unit}"
    if monitor.schedule_minutes is not None and monitor.schedule_minutes < 1:
        errors["schedule_minutes"] = "must be at least 1 minute, or empty to run only on request"
    if not 0 <= monitor.performance_tolerance < 1:
        errors["performance_tolerance"] = "must be in [0, 1)"
    errors.update(performance_test_errors(monitor))
    if monitor.label_key and monitor.label_key not in {*reference.column_names, "prediction_id"}:
        # The outputs of batch inference copy the reference's columns, so the key is one of them.
        errors["label_key"] = f"{monitor.label_key!r} is not a column of the reference {reference}"
    if monitor.escalation_policy is not None and monitor.escalation_policy.team_id != monitor.team_id:
        errors["escalation_policy"] = "the policy belongs to another team"
    if monitor.retrain_on_drift:
        try:
            monitor.retrain_where = datafiles.check_where(monitor.retrain_where, reference.column_names)
        except datafiles.RowFilterError as exc:
            errors["retrain_where"] = str(exc)
    if errors:
        raise ValidationError(errors)


def _sync_schedule(monitor: Monitor) -> None:
    """Create, update or delete the monitor's django-celery-beat PeriodicTask (caller's transaction)."""
    task = keep_periodic_task(
        monitor.periodic_task,
        name=f"monitor-{monitor.pk}",
        task_name=RUN_MONITOR_TASK,
        args=[monitor.pk],
        is_enabled=monitor.is_active,
        description=str(monitor),
        every_minutes=monitor.schedule_minutes,
    )
    if monitor.periodic_task_id != (task.pk if task is not None else None):
        monitor.periodic_task = task
        monitor.save(update_fields=["periodic_task"])


def do_create_monitor(
    *,
    model_version: ModelVersion,
    name: str,
    actor: User,
    reference_dataset_version: DatasetVersion | None = None,
    **options: Any,
) -> Monitor:
    """Create a monitor of ``model_version`` (fields as on ``Monitor``; see ``MONITOR_FIELDS``).

    Defaults: the training dataset version and the training spec's row filter as reference, the
    model's features and target as columns. Creates its PeriodicTask when ``schedule_minutes`` is
    set, and asks a worker after commit to build the reference profiles. Raises ValidationError
    naming the bad field; PermissionDenied without the right.
    """
    unknown = sorted(set(options) - set(MONITOR_FIELDS))
    if unknown:
        raise ValidationError({"detail": f"unknown monitor field(s): {', '.join(unknown)}"})
    reference = reference_dataset_version or model_version.training_dataset_version
    if reference is None:
        raise ValidationError(
            {"reference_dataset_version": f"{model_version} has no training data; choose a reference"}
        )
    if reference_dataset_version is None:
        options.setdefault("reference_where", model_version.training_spec.get("where") or {})
    with transaction.atomic():
        ensure_can(actor, CHANGE, model_version.model.team_id)
        monitor = Monitor(
            team_id=model_version.model.team_id,
            model_version=model_version,
            name=name,
            reference_dataset_version=reference,
            created_by=actor,
            **options,
        )
        _clean_monitor(monitor, actor)
        if Monitor.objects.filter(model_version=model_version, name=monitor.name).exists():
            raise ValidationError({"name": f"{model_version} already has a monitor named {monitor.name!r}"})
        monitor.save()
        _sync_schedule(monitor)
        record_audit_event(actor=actor, action="monitor.create", obj=monitor, after=snapshot(monitor))
        monitor_id = monitor.pk
        transaction.on_commit(lambda: enqueue_reference_profiles(monitor_id))
    return monitor


def do_update_monitor(*, monitor: Monitor, actor: User, **changes: Any) -> Monitor:
    """Change a monitor's settings (``MONITOR_FIELDS`` and ``is_active``) and its schedule."""
    unknown = sorted(set(changes) - {*MONITOR_FIELDS, "is_active"})
    if unknown:
        raise ValidationError({"detail": f"unknown monitor field(s): {', '.join(unknown)}"})
    with transaction.atomic():
        monitor = Monitor.objects.select_for_update().get(pk=monitor.pk)
        ensure_can(actor, CHANGE, monitor.team_id)
        before = snapshot(monitor)
        for name, value in changes.items():
            setattr(monitor, name, value)
        _clean_monitor(monitor, actor)
        if (
            Monitor.objects.filter(model_version=monitor.model_version, name=monitor.name)
            .exclude(pk=monitor.pk)
            .exists()
        ):
            raise ValidationError(
                {"name": f"{monitor.model_version} already has a monitor named {monitor.name!r}"}
            )
        monitor.updated_at = timezone.now()
        monitor.save()
        _sync_schedule(monitor)
        after = snapshot(monitor)
        action = "monitor.update"
        if set(changes) == {"is_active"}:
            action = "monitor.resume" if monitor.is_active else "monitor.pause"
        record_audit_event(actor=actor, action=action, obj=monitor, before=before, after=after)
    return monitor


def do_pause_monitor(*, monitor: Monitor, actor: User) -> Monitor:
    """Stop the monitor's schedule (its PeriodicTask is disabled); checks on request still run."""
    return do_update_monitor(monitor=monitor, actor=actor, is_active=False)


def do_resume_monitor(*, monitor: Monitor, actor: User) -> Monitor:
    """Run the monitor on its schedule again (its PeriodicTask is enabled)."""
    return do_update_monitor(monitor=monitor, actor=actor, is_active=True)


def do_delete_monitor(*, monitor: Monitor, actor: User) -> None:
    """Delete a monitor and its PeriodicTask; its checks and alerts stay (their monitor becomes empty)."""
    with transaction.atomic():
        monitor = Monitor.objects.select_for_update().get(pk=monitor.pk)
        ensure_can(actor, CHANGE, monitor.team_id)
        before = snapshot(monitor)
        record_audit_event(actor=actor, action="monitor.delete", obj=monitor, before=before)
        task = monitor.periodic_task
        monitor.delete()
        if task is not None:
            task.delete()


def enqueue_reference_profiles(monitor_id: int) -> None:
    """Ask a worker to build the monitor's reference profiles now rather than at its first check.

    Sent by name: the task layer sits above the actions.
    """
    try:
        current_app.send_task(BUILD_PROFILES_TASK, args=[monitor_id], retry=False)
    except Exception:
        # Not fatal: the first check builds what is missing.
        logger.warning("could not enqueue the profile build of monitor %s", monitor_id, exc_info=True)

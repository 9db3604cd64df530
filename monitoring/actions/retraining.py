"""Retraining on drift: which data to retrain on, the job's submission, and its record on the alert.

Once per incident round (the check that opened or re-opened the alert), a monitor with
``retrain_on_drift`` submits a training job through ``runners.actions.do_submit_job`` as the
monitor's creator; the version it registers waits for approval like any other.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance.audit import record_audit_event, snapshot
from governance.queries import newest_labelled_version
from monitoring.models import Alert, AlertEvent, AlertEventKind, AlertState, CheckState, DriftCheck, Monitor
from runners.actions import do_submit_job

# (monitor, check) -> id of the submitted training job; raises ValidationError/PermissionDenied.
Retrainer = Callable[[Monitor, DriftCheck], int]


def do_record_retraining(
    *, alert_id: int, check_id: int, job_id: int | None, note: str = "", now: datetime.datetime | None = None
) -> Alert:
    """Record on the alert (and its check) the retraining job submitted for it, or why none was."""
    now = now or timezone.now()
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert_id)
        before = snapshot(alert)
        alert.retrain_job_id = job_id
        alert.save(update_fields=["retrain_job_id"])
        if job_id is not None:
            DriftCheck.objects.filter(pk=check_id).update(retrain_job_id=job_id)
        AlertEvent.objects.create(
            alert=alert, kind=AlertEventKind.RETRAIN, at=now, drift_check_id=check_id, note=note
        )
        record_audit_event(
            actor=None,
            action="alert.retrain" if job_id is not None else "alert.retrain_refused",
            obj=alert,
            before=before,
            after=dict(snapshot(alert) or {}, retrain_job_id=job_id, note=note),
        )
    return alert


def submit_retraining(monitor: Monitor, check: DriftCheck) -> int:
    """Submit a training job of the monitored model on the newest labelled data; returns its id.

    The data is the newest labelled data of the reference's dataset
    (``governance.queries.newest_labelled_version``: its newest version holding the model's target
    and features, the rule scheduled evaluations follow too); the spec is the version's training
    spec with the monitor's ``retrain_where``. The job is submitted as the monitor's creator
    (their rights are re-checked); the version it registers waits for approval like any other,
    through the alias's promotion gates. Raises ValidationError when there is nothing to train on.
    """
    model_version = monitor.model_version
    newest = newest_labelled_version(monitor.reference_dataset_version.dataset, model_version)
    if monitor.created_by is None:
        raise ValidationError("the monitor's creator no longer exists; nobody to submit the job as")
    spec = dict(model_version.training_spec or {}, where=monitor.retrain_where or {})
    job = do_submit_job(
        kind="train",
        dataset_version=newest,
        registered_model=model_version.model,
        spec=spec,
        actor=monitor.created_by,
    )
    return job.pk


def retrain_if_opened(check_id: int, retrainer: Retrainer) -> None:
    """Submit retraining once per incident round: when this check opened or re-opened the alert."""
    check = DriftCheck.objects.select_related("monitor").get(pk=check_id)
    monitor = check.monitor
    if monitor is None or not monitor.retrain_on_drift or check.state != CheckState.SUCCEEDED:
        return
    alert = Alert.objects.filter(
        dedup_key=monitor.dedup_key, state=AlertState.OPEN, retrain_job_id__isnull=True
    ).first()
    opened_here = (
        alert is not None
        and AlertEvent.objects.filter(
            alert=alert, drift_check_id=check_id, kind__in=[AlertEventKind.OPEN, AlertEventKind.REOPEN]
        ).exists()
    )
    if alert is None or not opened_here:
        return
    try:
        job_id = retrainer(monitor, check)
    except (ValidationError, PermissionDenied) as exc:
        reason = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        do_record_retraining(
            alert_id=alert.pk, check_id=check_id, job_id=None, note=f"not submitted: {reason}"
        )
        return
    do_record_retraining(alert_id=alert.pk, check_id=check_id, job_id=job_id, note=f"training job #{job_id}")

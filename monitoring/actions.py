"""Requesting drift checks and handling alerts: the one audited way to change them."""

from __future__ import annotations

import logging
import uuid

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance.actions import ensure_can
from governance.audit import record_audit_event, snapshot
from governance.models import DatasetVersion, ModelVersion
from governance.permissions import CHANGE, VIEW, can
from monitoring.models import Alert, AlertState, CheckState, DriftCheck, Severity

logger = logging.getLogger(__name__)


def default_columns(
    model_version: ModelVersion, reference: DatasetVersion, current: DatasetVersion
) -> list[str]:
    """The model's features and target that both dataset versions hold, in signature order."""
    wanted = [*model_version.signature.get("features", []), model_version.signature.get("target")]
    both = set(reference.column_names) & set(current.column_names)
    return [column for column in wanted if column and column in both]


def do_request_drift_check(
    *,
    model_version: ModelVersion,
    current_dataset_version: DatasetVersion,
    actor,
    columns: list[str] | None = None,
    drift_share: float = 0.5,
) -> DriftCheck:
    """Queue a drift check of ``current_dataset_version`` against the version's training data.

    Raises ValidationError when the version has no training dataset, a named column is absent
    from either side, or ``drift_share`` is outside (0, 1]; PermissionDenied without the right.
    """
    reference = model_version.training_dataset_version
    if reference is None:
        raise ValidationError(
            {"model_version": f"{model_version} has no training dataset version to compare to"}
        )
    if not 0 < drift_share <= 1:
        raise ValidationError({"drift_share": f"must be in (0, 1], got {drift_share}"})
    if columns is None:
        columns = default_columns(model_version, reference, current_dataset_version)
    else:
        for side, version in (("reference", reference), ("current", current_dataset_version)):
            missing = [c for c in columns if c not in version.column_names]
            if missing:
                names = ", ".join(map(repr, missing))
                raise ValidationError({"columns": f"{names} not in the {side} dataset version {version}"})
    if not columns:
        raise ValidationError({"columns": "the two dataset versions share none of the model's columns"})
    with transaction.atomic():
        ensure_can(actor, CHANGE, model_version.model.team_id)
        ensure_can(actor, VIEW, current_dataset_version.dataset.team_id)
        check = DriftCheck.objects.create(
            team_id=model_version.model.team_id,
            model_version=model_version,
            reference_dataset_version=reference,
            current_dataset_version=current_dataset_version,
            columns=columns,
            drift_share=drift_share,
            created_by=actor,
            celery_task_id=str(uuid.uuid4()),
        )
        record_audit_event(actor=actor, action="drift_check.request", obj=check, after=snapshot(check))
        transaction.on_commit(lambda: enqueue_drift_check(check.pk))
    return check


def enqueue_drift_check(check_id: int) -> None:
    """Send the check's task; a broker outage fails the check with the reason."""
    from monitoring.tasks import run_drift_check

    check = DriftCheck.objects.get(pk=check_id)
    try:
        run_drift_check.apply_async(args=[check_id], task_id=check.celery_task_id, retry=True)
    except Exception as exc:
        logger.exception("could not enqueue drift check %s", check_id)
        do_finish_drift_check(check_id, error=f"could not reach the task broker to run the check: {exc}")


def claim_drift_check(check_id: int) -> bool:
    """queued -> running with a conditional UPDATE; False if another delivery claimed it."""
    return bool(
        DriftCheck.objects.filter(pk=check_id, state=CheckState.QUEUED).update(
            state=CheckState.RUNNING, started_at=timezone.now()
        )
    )


def do_finish_drift_check(check_id: int, *, result=None, report: str = "", error: str = "") -> DriftCheck:
    """Record a check's outcome (``result`` is a ``monitoring.drift.DriftResult``) or its error.

    When any column drifted, opens an alert for the model's owner (or adds to the open one) in
    the same transaction; the owner's email is sent after commit.
    """
    with transaction.atomic():
        check = DriftCheck.objects.select_for_update().get(pk=check_id)
        if check.state in (CheckState.SUCCEEDED, CheckState.FAILED):
            return check
        before = snapshot(check)
        check.finished_at = timezone.now()
        if result is None:
            check.state, check.error = CheckState.FAILED, error[:4000]
        else:
            check.state = CheckState.SUCCEEDED
            check.results = result.columns_as_dicts()
            check.is_dataset_drift = result.is_dataset_drift
            check.drifted_count = result.drifted_count
            check.drifted_fraction = result.drifted_fraction
            check.sampled_rows = result.sampled_rows
            check.report = report
        check.save()
        record_audit_event(
            actor=None,
            on_behalf_of=check.created_by,
            action="drift_check.fail" if result is None else "drift_check.complete",
            obj=check,
            before=before,
            after=snapshot(check),
        )
        if result is not None and result.drifted_count:
            _raise_alert(check)
    return check


def _raise_alert(check: DriftCheck) -> Alert:
    model_version = check.model_version
    drifted = check.drifted_columns
    severity = Severity.CRITICAL if check.is_dataset_drift else Severity.WARNING
    title = f"Data drift on {model_version}: {len(drifted)} of {len(check.results)} columns"
    summary = "\n".join(
        f"{c['column']}: {c['method']} = {c['score']:.4g} (threshold {c['threshold']:.4g})" for c in drifted
    )
    alert = (
        Alert.objects.select_for_update()
        .filter(model_version=model_version, state__in=[AlertState.OPEN, AlertState.ACKNOWLEDGED])
        .first()
    )
    if alert is not None:
        before = snapshot(alert)
        alert.occurrences += 1
        alert.last_seen_at = timezone.now()
        alert.drift_check = check
        alert.title, alert.summary = title, summary
        if severity == Severity.CRITICAL:
            alert.severity = severity
        alert.save()
        record_audit_event(
            actor=None,
            on_behalf_of=check.created_by,
            action="alert.repeat",
            obj=alert,
            before=before,
            after=snapshot(alert),
        )
        return alert
    alert = Alert.objects.create(
        team_id=check.team_id,
        model_version=model_version,
        drift_check=check,
        owner=model_version.model.owner,
        severity=severity,
        title=title,
        summary=summary,
    )
    record_audit_event(
        actor=None, on_behalf_of=check.created_by, action="alert.open", obj=alert, after=snapshot(alert)
    )
    from monitoring.notify import send_alert_email

    transaction.on_commit(lambda: send_alert_email(alert.pk))
    return alert


def _ensure_may_handle(actor, alert: Alert) -> None:
    if actor.pk != alert.owner_id and not can(actor, CHANGE, alert.team_id, fresh=True):
        raise PermissionDenied(
            "only the model's owner or the team's model owners and data scientists may do this"
        )


def do_acknowledge_alert(*, alert: Alert, actor) -> Alert:
    """open -> acknowledged. Raises ValidationError if the alert is not open."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        _ensure_may_handle(actor, alert)
        if alert.state != AlertState.OPEN:
            raise ValidationError({"state": f"alert #{alert.pk} is {alert.state}, not open"})
        before = snapshot(alert)
        alert.state = AlertState.ACKNOWLEDGED
        alert.acknowledged_by, alert.acknowledged_at = actor, timezone.now()
        alert.save()
        record_audit_event(
            actor=actor, action="alert.acknowledge", obj=alert, before=before, after=snapshot(alert)
        )
    return alert


def do_resolve_alert(*, alert: Alert, actor) -> Alert:
    """open or acknowledged -> resolved. Raises ValidationError if already resolved."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        _ensure_may_handle(actor, alert)
        if alert.state == AlertState.RESOLVED:
            raise ValidationError({"state": f"alert #{alert.pk} is already resolved"})
        before = snapshot(alert)
        alert.state = AlertState.RESOLVED
        alert.resolved_by, alert.resolved_at = actor, timezone.now()
        alert.save()
        record_audit_event(
            actor=actor, action="alert.resolve", obj=alert, before=before, after=snapshot(alert)
        )
    return alert

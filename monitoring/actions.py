"""Monitors, drift checks, alerts, escalations, channels and policies: the one audited way to change them.

Each ``do_<verb>_<noun>`` runs in one transaction, re-checks the actor's permission inside it,
writes its audit event in that transaction and schedules side effects with ``on_commit``.
``actor=None`` is the system (a Celery task). Who may do what:

- monitors and drift checks: members who may *change* the team's objects (model owners, data
  scientists);
- channels and escalation policies: members who may *manage* the team (model owners);
- an alert: its owner, or whoever may change the team's objects.

Alerts follow Healthchecks' outbox (``hc/api/models.py: Flip``): a breach changes the alert and
writes an ``AlertEvent`` in the check's transaction; escalation steps are claimed by a conditional
UPDATE of the alert row (``do_escalate_alert``), which writes the step's ``Notification`` rows; they
are delivered after commit (``monitoring.notify``).
"""

from __future__ import annotations

import datetime
import json
import logging
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from governance import datafiles
from governance.actions.checks import ensure_can
from governance.audit import record_audit_event, snapshot
from governance.models import DatasetVersion, Membership, ModelVersion, Team, TeamRole
from governance.permissions import CHANGE, MANAGE, VIEW, can
from monitoring import escalation
from monitoring.engine import CheckConfig
from monitoring.models import (
    UNRESOLVED,
    Alert,
    AlertEvent,
    AlertEventKind,
    AlertState,
    Channel,
    ChannelKind,
    CheckState,
    CurrentSource,
    DriftCheck,
    EscalationLevel,
    EscalationPolicy,
    Monitor,
    Notification,
    NotificationState,
    Severity,
)

logger = logging.getLogger(__name__)

MAX_SNOOZE = datetime.timedelta(days=30)
# Without a policy an alert is emailed once to the model's owner (the behaviour before policies).
DEFAULT_LEVELS = (escalation.Level(delay=datetime.timedelta(hours=1), repeat=0),)
RUN_MONITOR_TASK = "monitoring.tasks.run_monitor"


# Drift checks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckOutcome:
    """What a finished check found (built by ``monitoring.execute``).

    ``results``: per-column dicts of the engine (``ColumnResult.to_dict``); ``prediction``: the
    prediction column's dict or None; ``performance``: ``{"task", "rows", "status", "metrics":
    {metric: {current, baseline, baseline_source, change, is_degraded}}}`` or None.
    """

    results: list[dict]
    is_dataset_drift: bool
    drifted_count: int
    drifted_fraction: float
    prediction: dict | None = None
    performance: dict | None = None
    is_performance_drift: bool | None = None
    evidently_results: list[dict] = field(default_factory=list)
    sampled_rows: int | None = None
    report_error: str = ""

    @classmethod
    def from_evidently(cls, result: Any) -> CheckOutcome:
        """An outcome whose verdicts are evidently's (a ``monitoring.drift.DriftResult``)."""
        columns = [
            dict(column, status="drift" if column["is_drifted"] else "ok")
            for column in result.columns_as_dicts()
        ]
        return cls(
            results=columns,
            is_dataset_drift=result.is_dataset_drift,
            drifted_count=result.drifted_count,
            drifted_fraction=result.drifted_fraction,
            evidently_results=result.columns_as_dicts(),
            sampled_rows=result.sampled_rows,
        )


MAX_DELAY_MINUTES = 30 * 24 * 60
# (field, lowest, highest, unit) of a monitor's integer settings.
MONITOR_BOUNDS = (
    ("window_versions", 1, 1000, "dataset versions"),
    ("schedule_minutes", 1, 366 * 24 * 60, "minutes"),
    ("reopen_within_hours", 0, 366 * 24, "hours"),
    ("auto_resolve_after", 0, 10_000, "clean checks"),
    ("min_sample_size", 1, 1_000_000_000, "rows"),
)


def default_columns(model_version: ModelVersion, *versions: DatasetVersion) -> list[str]:
    """The model's features and target that every one of ``versions`` holds, in signature order."""
    wanted = [*model_version.signature.get("features", []), model_version.signature.get("target")]
    present = set.intersection(*(set(version.column_names) for version in versions))
    return [column for column in wanted if column and column in present]


def _engine_config(
    columns: list[str],
    drift_share: float,
    min_sample_size: int | None = None,
    methods: dict | None = None,
    thresholds: dict | None = None,
) -> dict:
    """The engine's CheckConfig as a dict. Raises ValidationError naming the bad field."""
    values: dict[str, Any] = {"columns": tuple(columns), "drift_share": drift_share}
    if min_sample_size is not None:
        values["min_sample_size"] = min_sample_size
    if methods:
        values["methods"] = dict(methods)
    if thresholds:
        values["thresholds"] = dict(thresholds)
    try:
        return CheckConfig(**values).to_dict()
    except (ValueError, TypeError) as exc:
        message = str(exc)
        field_of = {
            "drift_share": "drift_share",
            "min_sample_size": "min_sample_size",
            "threshold": "thresholds",
        }
        key = next((field for word, field in field_of.items() if word in message), "methods")
        raise ValidationError({key: message}) from exc


def do_request_drift_check(
    *,
    model_version: ModelVersion,
    current_dataset_version: DatasetVersion,
    actor,
    columns: list[str] | None = None,
    drift_share: float = 0.5,
) -> DriftCheck:
    """Queue a drift check of ``current_dataset_version`` against the version's training data.

    The reference is the training dataset version with the training spec's row filter. Raises
    ValidationError when the version has no training dataset, a named column is absent from
    either side, or ``drift_share`` is outside (0, 1]; PermissionDenied without the right.
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
    config = {
        "engine": _engine_config(columns, drift_share),
        "check_predictions": True,
        "check_performance": True,
        "performance_tolerance": 0.1,
    }
    with transaction.atomic():
        ensure_can(actor, CHANGE, model_version.model.team_id)
        ensure_can(actor, VIEW, current_dataset_version.dataset.team_id)
        check = DriftCheck.objects.create(
            team_id=model_version.model.team_id,
            model_version=model_version,
            reference_dataset_version=reference,
            reference_where=model_version.training_spec.get("where") or {},
            current_dataset_version=current_dataset_version,
            window=_window([current_dataset_version]),
            columns=columns,
            config=config,
            drift_share=drift_share,
            created_by=actor,
            celery_task_id=str(uuid.uuid4()),
        )
        record_audit_event(actor=actor, action="drift_check.request", obj=check, after=snapshot(check))
        transaction.on_commit(lambda: enqueue_drift_check(check.pk))
    return check


def _window(versions: Sequence[DatasetVersion]) -> dict:
    return {
        "dataset_versions": [version.pk for version in versions],
        "labels": [str(version) for version in versions],
        "rows": sum(version.row_count for version in versions),
    }


def do_run_monitor(*, monitor: Monitor, actor, now: datetime.datetime | None = None) -> DriftCheck:
    """Queue a check of the monitor's current window (``actor=None``: the schedule).

    Raises ValidationError when the source has no data yet; PermissionDenied without the right.
    """
    from monitoring.queries import window_of

    now = now or timezone.now()
    with transaction.atomic():
        monitor = (
            Monitor.objects.select_for_update().select_related("model_version__model").get(pk=monitor.pk)
        )
        ensure_can(actor, CHANGE, monitor.team_id)
        versions = window_of(monitor)
        if not versions:
            source = (
                f"inference outputs of {monitor.model_version}"
                if monitor.source == CurrentSource.PREDICTIONS
                else f"versions of dataset {monitor.current_dataset}"
            )
            raise ValidationError({"source": f"there are no {source} to check yet"})
        check = DriftCheck.objects.create(
            team_id=monitor.team_id,
            model_version=monitor.model_version,
            monitor=monitor,
            reference_dataset_version=monitor.reference_dataset_version,
            reference_where=monitor.reference_where,
            current_dataset_version=versions[-1],
            window=_window(versions),
            columns=monitor.columns,
            config={
                "engine": _engine_config(
                    monitor.columns,
                    monitor.drift_share,
                    monitor.min_sample_size,
                    {k: v for k, v in monitor.methods.items() if k in monitor.columns},
                    {k: v for k, v in monitor.thresholds.items() if k in monitor.columns},
                ),
                "check_predictions": monitor.check_predictions,
                "check_performance": monitor.check_performance,
                "performance_tolerance": monitor.performance_tolerance,
                "prediction_method": monitor.methods.get("prediction"),
                "prediction_threshold": monitor.thresholds.get("prediction"),
            },
            drift_share=monitor.drift_share,
            created_by=actor or monitor.created_by,
            created_at=now,
            celery_task_id=str(uuid.uuid4()),
        )
        Monitor.objects.filter(pk=monitor.pk).update(last_checked_at=now)
        record_audit_event(
            actor=actor,
            on_behalf_of=None if actor else monitor.created_by,
            action="drift_check.request",
            obj=check,
            after=snapshot(check),
        )
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
            state=CheckState.RUNNING, started_at=timezone.now(), stage="starting"
        )
    )


def record_check_progress(check_id: int, progress: float, stage: str) -> None:
    """Telemetry of a running check (not an audited change, like a job's heartbeat)."""
    DriftCheck.objects.filter(pk=check_id, state=CheckState.RUNNING).update(
        progress=progress, stage=stage[:200]
    )


def do_finish_drift_check(
    check_id: int,
    *,
    result: CheckOutcome | Any = None,
    report: str = "",
    error: str = "",
    now: datetime.datetime | None = None,
) -> DriftCheck:
    """Record a check's outcome or its error; redelivery of a finished check changes nothing.

    ``result`` is a ``CheckOutcome`` (or an evidently ``DriftResult``, whose verdicts are then used).
    A breach (a drifted column, prediction or metric) opens, adds to or re-opens the alert of the
    monitor (or of the model version, for a check without a monitor) in the same transaction; a
    clean check of a monitor counts towards auto-resolving its open alert.
    """
    now = now or timezone.now()
    if result is not None and not isinstance(result, CheckOutcome):
        result = CheckOutcome.from_evidently(result)
    with transaction.atomic():
        check = DriftCheck.objects.select_for_update().get(pk=check_id)
        if check.is_finished:
            return check
        before = snapshot(check)
        check.finished_at = now
        check.progress = 1.0
        if result is None:
            check.state, check.error, check.stage = CheckState.FAILED, error[:4000], "failed"
        else:
            check.state, check.stage = CheckState.SUCCEEDED, "done"
            check.results = result.results
            check.is_dataset_drift = result.is_dataset_drift
            check.drifted_count = result.drifted_count
            check.drifted_fraction = result.drifted_fraction
            check.prediction = result.prediction
            check.performance = result.performance
            check.is_performance_drift = result.is_performance_drift
            check.evidently_results = result.evidently_results
            check.sampled_rows = result.sampled_rows
            check.report = report
            check.report_error = result.report_error[:4000]
        check.save()
        record_audit_event(
            actor=None,
            on_behalf_of=check.created_by,
            action="drift_check.fail" if result is None else "drift_check.complete",
            obj=check,
            before=before,
            after=snapshot(check),
        )
        if result is not None and (check.is_breach or check.monitor_id is not None):
            # Serialise alert decisions per dedup key: two checks finishing together must not
            # both open an alert (the partial unique constraint would fail the second).
            if check.monitor_id is not None:
                Monitor.objects.select_for_update().filter(pk=check.monitor_id).first()
            else:
                ModelVersion.objects.select_for_update().filter(pk=check.model_version_id).first()
        if result is not None and check.is_breach:
            _record_breach(check, now)
        elif result is not None and check.monitor_id is not None:
            _record_clean_check(check, now)
    return check


# Alerts raised by checks ----------------------------------------------------------------------


def _dedup_key(check: DriftCheck) -> str:
    return f"monitor:{check.monitor_id}" if check.monitor_id else f"model_version:{check.model_version_id}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _evidence(check: DriftCheck) -> dict:
    """What the alert shows and sends: drifted columns vs thresholds, windows, links."""
    base = settings.STEWARD_BASE_URL.rstrip("/")
    monitor = check.monitor
    performance = check.performance or {}
    keys = ("column", "kind", "method", "score", "threshold", "status", "message")
    return {
        "check_id": check.pk,
        "check_url": f"{base}{check.get_absolute_url()}",
        "report_url": f"{base}{reverse('drift_check_report', args=[check.pk])}" if check.report else "",
        "runbook_url": monitor.runbook_url if monitor else "",
        "monitor": monitor.name if monitor else "",
        "reference": {
            "dataset_version": str(check.reference_dataset_version),
            "where": check.reference_where,
        },
        "window": {"dataset_versions": check.window.get("labels", []), "rows": check.window.get("rows")},
        "drift_share": check.drift_share,
        "is_dataset_drift": check.is_dataset_drift,
        "columns_tested": sum(1 for r in check.results if r.get("status") in ("ok", "drift")),
        "drifted_columns": [{key: column.get(key) for key in keys} for column in check.drifted_columns],
        "prediction": (
            {key: check.prediction.get(key) for key in keys}
            if (check.prediction or {}).get("is_drifted")
            else None
        ),
        "performance": {
            name: values for name, values in performance.get("metrics", {}).items() if values["is_degraded"]
        },
    }


def _headline(check: DriftCheck) -> tuple[str, str]:
    """The alert's title and its one-line-per-finding summary."""
    drifted = check.drifted_columns
    tested = sum(1 for r in check.results if r.get("status", "ok") in ("ok", "drift"))
    title = f"Data drift on {check.model_version}: {len(drifted)} of {tested} columns"
    lines = [
        f"{c['column']}: {c['method']} = {_fmt(c['score'])} (threshold {_fmt(c['threshold'])})"
        for c in drifted
    ]
    prediction = check.prediction or {}
    if prediction.get("is_drifted"):
        title += ", prediction drift"
        lines.append(
            f"prediction: {prediction['method']} = {_fmt(prediction['score'])} "
            f"(threshold {_fmt(prediction['threshold'])})"
        )
    for name, values in (check.performance or {}).get("metrics", {}).items():
        if values["is_degraded"]:
            change = values["change"]
            worse = f" ({change:+.0%})" if change is not None else ""
            title += f", {name} {_fmt(values['current'])}{worse}"
            lines.append(
                f"{name}: {_fmt(values['current'])} against baseline {_fmt(values['baseline'])}{worse}"
            )
    return title[:300], "\n".join(lines)


def _severity(check: DriftCheck) -> str:
    if check.is_dataset_drift or check.is_performance_drift:
        return Severity.CRITICAL
    return check.monitor.severity if check.monitor_id else Severity.WARNING


def _event(alert: Alert, kind: str, *, at, actor=None, check=None, note: str = "", **step) -> AlertEvent:
    return AlertEvent.objects.create(
        alert=alert,
        kind=kind,
        at=at,
        actor=actor,
        drift_check_id=check.pk if check else None,
        note=note,
        **step,
    )


def _record_breach(check: DriftCheck, now: datetime.datetime) -> Alert:
    """Open, add to, or re-open the alert for ``check``'s dedup key (caller's transaction)."""
    key = _dedup_key(check)
    title, summary = _headline(check)
    severity = _severity(check)
    alert = Alert.objects.select_for_update().filter(dedup_key=key, state__in=UNRESOLVED).first()
    if alert is not None:
        before = snapshot(alert)
        alert.occurrences += 1
        alert.last_seen_at = now
        alert.drift_check = check
        alert.title, alert.summary, alert.evidence = title, summary, _evidence(check)
        alert.clean_checks = 0
        if severity == Severity.CRITICAL:
            alert.severity = severity
        alert.save()
        _event(alert, AlertEventKind.REPEAT, at=now, check=check, note=title)
        record_audit_event(
            actor=None,
            on_behalf_of=check.created_by,
            action="alert.repeat",
            obj=alert,
            before=before,
            after=snapshot(alert),
        )
        return alert
    monitor = check.monitor
    recent = None
    if monitor is not None:
        recent = (
            Alert.objects.select_for_update()
            .filter(
                dedup_key=key,
                state=AlertState.RESOLVED,
                resolved_at__gte=now - datetime.timedelta(hours=monitor.reopen_within_hours),
            )
            .order_by("-resolved_at", "-id")
            .first()
        )
    if recent is not None:
        alert = recent
        before = snapshot(alert)
        alert.state = AlertState.OPEN
        alert.reopened_at = alert.last_seen_at = now
        alert.occurrences += 1
        alert.drift_check = check
        alert.title, alert.summary, alert.evidence = title, summary, _evidence(check)
        alert.severity = severity
        alert.clean_checks = 0
        alert.acknowledged_by = alert.acknowledged_at = alert.resolved_by = alert.resolved_at = None
        alert.snoozed_until = alert.snoozed_by = None
        alert.escalation_policy = monitor.escalation_policy
        alert.escalation_round += 1
        alert.escalation_step, alert.escalation_level, alert.next_escalation_at = 0, None, now
        alert.retrain_job_id = None
        alert.save()
        kind, action = AlertEventKind.REOPEN, "alert.reopen"
    else:
        alert = Alert.objects.create(
            team_id=check.team_id,
            model_version=check.model_version,
            monitor=monitor,
            dedup_key=key,
            drift_check=check,
            owner=check.model_version.model.owner,
            severity=severity,
            title=title,
            summary=summary,
            evidence=_evidence(check),
            runbook_url=monitor.runbook_url if monitor else "",
            escalation_policy=monitor.escalation_policy if monitor else None,
            created_at=now,
            last_seen_at=now,
            next_escalation_at=now,
        )
        before, kind, action = None, AlertEventKind.OPEN, "alert.open"
    _event(alert, kind, at=now, check=check, note=title)
    record_audit_event(
        actor=None,
        on_behalf_of=check.created_by,
        action=action,
        obj=alert,
        before=before,
        after=snapshot(alert),
    )
    alert_id = alert.pk
    # The first escalation step (level 1: the owner, without a policy) goes out once committed.
    transaction.on_commit(lambda: do_escalate_alert(alert_id, now=now))
    return alert


def _record_clean_check(check: DriftCheck, now: datetime.datetime) -> Alert | None:
    """Count a clean check against the monitor's unresolved alert; resolve it after N in a row."""
    alert = (
        Alert.objects.select_for_update().filter(dedup_key=_dedup_key(check), state__in=UNRESOLVED).first()
    )
    if alert is None:
        return None
    before = snapshot(alert)
    alert.clean_checks += 1
    needed = check.monitor.auto_resolve_after
    is_resolved = bool(needed) and alert.clean_checks >= needed
    if is_resolved:
        alert.state = AlertState.RESOLVED
        alert.resolved_at, alert.resolved_by = now, None
        alert.next_escalation_at = alert.snoozed_until = None
    alert.save()
    note = f"{alert.clean_checks} clean check(s) in a row"
    _event(
        alert,
        AlertEventKind.AUTO_RESOLVE if is_resolved else AlertEventKind.CLEAN,
        at=now,
        check=check,
        note=note,
    )
    record_audit_event(
        actor=None,
        on_behalf_of=check.created_by,
        action="alert.auto_resolve" if is_resolved else "alert.clean_check",
        obj=alert,
        before=before,
        after=snapshot(alert),
    )
    return alert


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
            after=dict(snapshot(alert), retrain_job_id=job_id, note=note),
        )
    return alert


# Alerts handled by people ---------------------------------------------------------------------


def _ensure_may_handle(actor, alert: Alert) -> None:
    if actor.pk != alert.owner_id and not can(actor, CHANGE, alert.team_id, fresh=True):
        raise PermissionDenied(
            "only the model's owner or the team's model owners and data scientists may do this"
        )


def do_acknowledge_alert(*, alert: Alert, actor, now: datetime.datetime | None = None) -> Alert:
    """open -> acknowledged: escalation stops. Raises ValidationError if the alert is not open."""
    now = now or timezone.now()
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        _ensure_may_handle(actor, alert)
        if alert.state != AlertState.OPEN:
            raise ValidationError({"state": f"alert #{alert.pk} is {alert.state}, not open"})
        before = snapshot(alert)
        alert.state = AlertState.ACKNOWLEDGED
        alert.acknowledged_by, alert.acknowledged_at = actor, now
        alert.next_escalation_at = None
        alert.save()
        _event(alert, AlertEventKind.ACKNOWLEDGE, at=now, actor=actor)
        record_audit_event(
            actor=actor, action="alert.acknowledge", obj=alert, before=before, after=snapshot(alert)
        )
    return alert


def do_snooze_alert(
    *, alert: Alert, until: datetime.datetime, actor, now: datetime.datetime | None = None
) -> Alert:
    """Hold an unresolved alert's escalation until ``until`` (at most 30 days ahead).

    Breaches keep appending meanwhile. Raises ValidationError if the alert is resolved or
    ``until`` is not in the future.
    """
    now = now or timezone.now()
    if until <= now:
        raise ValidationError({"until": "must be in the future"})
    if until > now + MAX_SNOOZE:
        raise ValidationError({"until": "must be at most 30 days ahead"})
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        _ensure_may_handle(actor, alert)
        if alert.state == AlertState.RESOLVED:
            raise ValidationError({"state": f"alert #{alert.pk} is resolved; nothing to snooze"})
        before = snapshot(alert)
        alert.snoozed_until, alert.snoozed_by = until, actor
        alert.save()
        _event(alert, AlertEventKind.SNOOZE, at=now, actor=actor, note=f"until {until.isoformat()}")
        record_audit_event(
            actor=actor, action="alert.snooze", obj=alert, before=before, after=snapshot(alert)
        )
    return alert


def do_resolve_alert(*, alert: Alert, actor, now: datetime.datetime | None = None) -> Alert:
    """open or acknowledged -> resolved. Raises ValidationError if already resolved."""
    now = now or timezone.now()
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        _ensure_may_handle(actor, alert)
        if alert.state == AlertState.RESOLVED:
            raise ValidationError({"state": f"alert #{alert.pk} is already resolved"})
        before = snapshot(alert)
        alert.state = AlertState.RESOLVED
        alert.resolved_by, alert.resolved_at = actor, now
        alert.next_escalation_at = alert.snoozed_until = None
        alert.save()
        _event(alert, AlertEventKind.RESOLVE, at=now, actor=actor)
        record_audit_event(
            actor=actor, action="alert.resolve", obj=alert, before=before, after=snapshot(alert)
        )
    return alert


# Escalation -----------------------------------------------------------------------------------


def _levels_of(alert: Alert) -> list[EscalationLevel | None]:
    """The alert's policy levels (targets and channels prefetched), or [None] for the default level."""
    if alert.escalation_policy_id is None:
        return [None]
    return list(
        EscalationLevel.objects.filter(policy_id=alert.escalation_policy_id)
        .select_related("owners_of")
        .prefetch_related("users", "channels")
        .order_by("position")
    ) or [None]


def _plans(levels: list[EscalationLevel | None]) -> list[escalation.Level]:
    if levels == [None]:
        return list(DEFAULT_LEVELS)
    return [escalation.Level(datetime.timedelta(minutes=lv.delay_minutes), lv.repeat) for lv in levels]


def level_targets(alert: Alert, level: EscalationLevel | None) -> list:
    """The people a level notifies: its users, a team's model owners, and the alert team's members
    with its role; the model's owner when there is no policy. Sorted by username."""
    if level is None:
        return [alert.owner]
    people = {user.pk: user for user in level.users.all()}
    memberships = Membership.objects.none()
    if level.owners_of_id is not None:
        memberships |= Membership.objects.filter(team_id=level.owners_of_id, role=TeamRole.MODEL_OWNER)
    if level.role:
        memberships |= Membership.objects.filter(team_id=alert.team_id, role=level.role)
    for membership in memberships.select_related("user"):
        people[membership.user_id] = membership.user
    return sorted(people.values(), key=lambda user: user.get_username())


def do_escalate_alert(alert_id: int, *, now: datetime.datetime | None = None) -> list[int]:
    """Send the alert's due escalation step, if it is still due; returns the new notification ids.

    The step is claimed with a conditional UPDATE of the alert (state open, not snoozed, the same
    round, step and due time), so of several workers racing for it exactly one writes its
    notifications; they are delivered after commit. Level notifications go through the level's
    active channels, or by email straight to its targets when it has none.
    """
    now = now or timezone.now()
    with transaction.atomic():
        alert = Alert.objects.select_related("owner").filter(pk=alert_id).first()
        if (
            alert is None
            or alert.state != AlertState.OPEN
            or alert.next_escalation_at is None
            or alert.next_escalation_at > now
            or alert.is_snoozed(now)
        ):
            return []
        levels = _levels_of(alert)
        plans = _plans(levels)
        step = escalation.step_at(plans, alert.escalation_step)
        unchanged = Q(
            pk=alert.pk,
            state=AlertState.OPEN,
            escalation_round=alert.escalation_round,
            escalation_step=alert.escalation_step,
            next_escalation_at=alert.next_escalation_at,
        ) & (Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now))
        if step is None:  # the policy shrank under an open alert: nothing left to send
            Alert.objects.filter(unchanged).update(next_escalation_at=None)
            return []
        next_at = escalation.next_due(plans, step, now)
        claimed = Alert.objects.filter(unchanged).update(
            escalation_step=F("escalation_step") + 1, escalation_level=step.level, next_escalation_at=next_at
        )
        if not claimed:
            return []
        level = levels[step.level]
        targets = level_targets(alert, level)
        ids = _write_notifications(alert, step, level, targets, now)
        names = ", ".join(user.get_username() for user in targets) or "no one"
        _event(
            alert, AlertEventKind.ESCALATE, at=now, level=step.level, repeat=step.repeat, note=f"to {names}"
        )
        record_audit_event(
            actor=None,
            action="alert.escalate",
            obj=alert,
            before={"escalation_step": alert.escalation_step, "escalation_level": alert.escalation_level},
            after={
                "escalation_round": alert.escalation_round,
                "escalation_step": alert.escalation_step + 1,
                "escalation_level": step.level,
                "repeat": step.repeat,
                "next_escalation_at": next_at.isoformat() if next_at else None,
                "notifications": ids,
            },
        )

        def deliver() -> None:
            from monitoring.notify import deliver_notifications

            deliver_notifications(ids, now=now)

        transaction.on_commit(deliver)
    return ids


def _write_notifications(
    alert: Alert, step: escalation.Step, level: EscalationLevel | None, targets: list, now
) -> list[int]:
    emails = sorted({user.email for user in targets if user.email})
    usernames = [user.get_username() for user in targets]
    channels = [channel for channel in level.channels.all() if channel.is_active] if level else []
    common = {
        "alert": alert,
        "round": alert.escalation_round,
        "level": step.level,
        "repeat": step.repeat,
        "next_attempt_at": now,
        "created_at": now,
    }
    rows = []
    for channel in channels:
        if channel.kind == ChannelKind.EMAIL:
            recipients = [channel.email_address] if channel.email_address else emails
        else:
            recipients = usernames
        rows.append(
            Notification.objects.create(channel=channel, kind=channel.kind, recipients=recipients, **common)
        )
    if not channels:  # no channel (or all disabled): email the targets so the step is not lost
        rows.append(
            Notification.objects.create(channel=None, kind=ChannelKind.EMAIL, recipients=emails, **common)
        )
    return [row.pk for row in rows]


# Deliveries -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryResult:
    """A transport's answer: ``permanent`` failures are not retried and disable the channel."""

    ok: bool
    response_code: int | None = None
    error: str = ""
    permanent: bool = False


MAX_ATTEMPTS = 5
RETRY_BASE = datetime.timedelta(minutes=1)


def retry_delay(attempts: int) -> datetime.timedelta:
    """Exponential backoff after the ``attempts``-th failure: 1, 2, 4, 8 minutes."""
    return RETRY_BASE * 2 ** (attempts - 1)


def claim_notification(notification_id: int, now: datetime.datetime) -> bool:
    """pending/retrying (and due) -> sending with a conditional UPDATE; counts the attempt.

    ``next_attempt_at`` becomes the claim time while sending: ``release_stale_sending`` measures
    from it.
    """
    due = Notification.objects.filter(
        pk=notification_id,
        state__in=[NotificationState.PENDING, NotificationState.RETRYING],
        next_attempt_at__lte=now,
    )
    return bool(due.update(state=NotificationState.SENDING, attempts=F("attempts") + 1, next_attempt_at=now))


def do_record_delivery(
    notification_id: int, result: DeliveryResult, *, now: datetime.datetime
) -> Notification:
    """Store an attempt's result; schedule a retry with backoff, or fail for good.

    A permanent failure (the transport says so, or the ``MAX_ATTEMPTS``-th failure) disables the
    channel and tells its owner after commit. Channel counters are telemetry, not audited;
    disabling a channel is audited.
    """
    with transaction.atomic():
        row = Notification.objects.select_for_update().get(pk=notification_id)
        if row.state != NotificationState.SENDING:
            return row
        row.response_code = result.response_code
        if result.ok:
            row.state, row.sent_at, row.error = NotificationState.SENT, now, ""
        elif result.permanent or row.attempts >= MAX_ATTEMPTS:
            row.state, row.error = NotificationState.FAILED, result.error[:4000]
        else:
            row.state, row.error = NotificationState.RETRYING, result.error[:4000]
            row.next_attempt_at = now + retry_delay(row.attempts)
        row.save()
        if row.channel_id is None:
            return row
        if result.ok:
            Channel.objects.filter(pk=row.channel_id).update(consecutive_failures=0, last_success_at=now)
            return row
        Channel.objects.filter(pk=row.channel_id).update(
            consecutive_failures=F("consecutive_failures") + 1,
            last_error=result.error[:4000],
            last_error_at=now,
        )
        if row.state == NotificationState.FAILED:
            attempts = f"after {row.attempts} attempt{'s' if row.attempts > 1 else ''}"
            _disable_channel(row.channel_id, f"{result.error} ({attempts}, notification #{row.pk})", now)
    return row


def _disable_channel(channel_id: int, reason: str, now: datetime.datetime) -> None:
    channel = Channel.objects.select_for_update().get(pk=channel_id)
    if not channel.is_active:
        return
    before = snapshot(channel)
    channel.is_active, channel.disabled_reason, channel.disabled_at = False, reason[:4000], now
    channel.save(update_fields=["is_active", "disabled_reason", "disabled_at"])
    record_audit_event(
        actor=None, action="channel.disable", obj=channel, before=before, after=snapshot(channel)
    )

    def tell() -> None:
        from monitoring.notify import tell_channel_owner

        tell_channel_owner(channel_id)

    transaction.on_commit(tell)


def release_stale_sending(now: datetime.datetime, older_than: datetime.timedelta) -> int:
    """Deliveries left ``sending`` by a worker that died go back to ``retrying`` (sent at least once
    more: receivers deduplicate by the ``X-Steward-Delivery`` id)."""
    return Notification.objects.filter(
        state=NotificationState.SENDING, next_attempt_at__lt=now - older_than
    ).update(state=NotificationState.RETRYING, next_attempt_at=now)


# Monitors -------------------------------------------------------------------------------------

MONITOR_FIELDS = (
    "name",
    "reference_dataset_version",
    "reference_where",
    "source",
    "current_dataset",
    "window_versions",
    "columns",
    "methods",
    "thresholds",
    "drift_share",
    "min_sample_size",
    "check_predictions",
    "check_performance",
    "performance_tolerance",
    "severity",
    "runbook_url",
    "escalation_policy",
    "schedule_minutes",
    "auto_resolve_after",
    "reopen_within_hours",
    "retrain_on_drift",
    "retrain_where",
)


def _clean_monitor(monitor: Monitor, actor) -> None:
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
    elif monitor.source == CurrentSource.PREDICTIONS:
        monitor.current_dataset = None
    else:
        errors["source"] = f"unknown source {monitor.source!r}"
    if not monitor.columns:
        monitor.columns = default_columns(monitor.model_version, reference)
    missing = [column for column in monitor.columns if column not in reference.column_names]
    if missing:
        errors["columns"] = (
            f"{', '.join(map(repr, missing))} not in the reference dataset version {reference}"
        )
    elif not monitor.columns:
        errors["columns"] = "the reference holds none of the model's columns"
    allowed = {*monitor.columns, "prediction"}
    for name in ("methods", "thresholds"):
        stray = sorted(set(getattr(monitor, name)) - allowed)
        if stray:
            errors[name] = f"{', '.join(map(repr, stray))} is not a monitored column or 'prediction'"
    if "columns" not in errors and "methods" not in errors and "thresholds" not in errors:
        try:
            _engine_config(
                monitor.columns,
                monitor.drift_share,
                monitor.min_sample_size,
                monitor.methods,
                monitor.thresholds,
            )
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
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    task = monitor.periodic_task
    if monitor.schedule_minutes is None:
        if task is not None:
            monitor.periodic_task = None
            monitor.save(update_fields=["periodic_task"])
            task.delete()
        return
    interval = IntervalSchedule.objects.filter(
        every=monitor.schedule_minutes, period=IntervalSchedule.MINUTES
    ).first() or IntervalSchedule.objects.create(
        every=monitor.schedule_minutes, period=IntervalSchedule.MINUTES
    )
    if task is None:
        task = PeriodicTask(name=f"monitor-{monitor.pk}")
    task.task = RUN_MONITOR_TASK
    task.interval = interval
    task.args = json.dumps([monitor.pk])
    task.enabled = monitor.is_active
    task.description = str(monitor)[:200]
    task.save()
    if monitor.periodic_task_id != task.pk:
        monitor.periodic_task = task
        monitor.save(update_fields=["periodic_task"])


def do_create_monitor(
    *, model_version: ModelVersion, name: str, actor, reference_dataset_version=None, **options
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


def do_update_monitor(*, monitor: Monitor, actor, **changes) -> Monitor:
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


def do_pause_monitor(*, monitor: Monitor, actor) -> Monitor:
    """Stop the monitor's schedule (its PeriodicTask is disabled); checks on request still run."""
    return do_update_monitor(monitor=monitor, actor=actor, is_active=False)


def do_resume_monitor(*, monitor: Monitor, actor) -> Monitor:
    return do_update_monitor(monitor=monitor, actor=actor, is_active=True)


def do_delete_monitor(*, monitor: Monitor, actor) -> None:
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
    """Ask a worker to build the monitor's reference profiles now rather than at its first check."""
    from monitoring.tasks import build_reference_profiles

    try:
        build_reference_profiles.apply_async(args=[monitor_id], retry=False)
    except Exception:
        # Not fatal: the first check builds what is missing.
        logger.warning("could not enqueue the profile build of monitor %s", monitor_id, exc_info=True)


# Channels -------------------------------------------------------------------------------------


def _clean_channel(channel: Channel) -> None:
    errors = {}
    if not channel.name.strip():
        errors["name"] = "a channel needs a name"
    if channel.kind == ChannelKind.EMAIL:
        channel.url = ""
    elif channel.kind in (ChannelKind.WEBHOOK, ChannelKind.SLACK):
        channel.email_address = ""
        if not channel.url.startswith(("https://", "http://")):
            errors["url"] = "a webhook needs an http(s) URL"
    else:
        errors["kind"] = f"unknown kind {channel.kind!r}; one of email, webhook, slack"
    if not Membership.objects.filter(user_id=channel.owner_id, team_id=channel.team_id).exists():
        errors["owner"] = "the owner must be a member of the team"
    if errors:
        raise ValidationError(errors)


def do_create_channel(
    *, team: Team, name: str, kind: str, actor, owner=None, email_address: str = "", url: str = ""
) -> Channel:
    """Create a delivery channel; a webhook channel gets a random 256-bit HMAC secret.

    Raises ValidationError naming the field (the owner, default the actor, must be in the team).
    """
    with transaction.atomic():
        ensure_can(actor, MANAGE, team.pk)
        channel = Channel(
            team=team,
            name=name.strip(),
            kind=kind,
            owner=owner or actor,
            email_address=email_address,
            url=url,
            secret=secrets.token_hex(32) if kind == ChannelKind.WEBHOOK else "",
            created_by=actor,
        )
        _clean_channel(channel)
        if Channel.objects.filter(team=team, name=channel.name).exists():
            raise ValidationError({"name": f"{team} already has a channel named {channel.name!r}"})
        channel.save()
        record_audit_event(actor=actor, action="channel.create", obj=channel, after=snapshot(channel))
    return channel


def do_update_channel(*, channel: Channel, actor, **changes) -> Channel:
    """Change name, owner, address or URL, or (re-)enable / disable it. Re-enabling clears the failure."""
    allowed = {"name", "owner", "email_address", "url", "is_active"}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValidationError({"detail": f"unknown channel field(s): {', '.join(unknown)}"})
    with transaction.atomic():
        channel = Channel.objects.select_for_update().get(pk=channel.pk)
        ensure_can(actor, MANAGE, channel.team_id)
        before = snapshot(channel)
        for name, value in changes.items():
            setattr(channel, name, value)
        if changes.get("is_active") is True and not before["is_active"]:
            channel.disabled_reason, channel.disabled_at, channel.consecutive_failures = "", None, 0
        if changes.get("is_active") is False and before["is_active"]:
            channel.disabled_reason = f"disabled by {actor.get_username()}"
            channel.disabled_at = timezone.now()
        _clean_channel(channel)
        if Channel.objects.filter(team_id=channel.team_id, name=channel.name).exclude(pk=channel.pk).exists():
            raise ValidationError({"name": f"{channel.team} already has a channel named {channel.name!r}"})
        channel.save()
        record_audit_event(
            actor=actor, action="channel.update", obj=channel, before=before, after=snapshot(channel)
        )
    return channel


def do_rotate_channel_secret(*, channel: Channel, actor) -> Channel:
    """Give a webhook channel a new HMAC secret (the old one stops verifying at once)."""
    with transaction.atomic():
        channel = Channel.objects.select_for_update().get(pk=channel.pk)
        ensure_can(actor, MANAGE, channel.team_id)
        if channel.kind != ChannelKind.WEBHOOK:
            raise ValidationError({"kind": "only webhook channels have a secret"})
        channel.secret = secrets.token_hex(32)
        channel.save(update_fields=["secret"])
        record_audit_event(
            actor=actor, action="channel.rotate_secret", obj=channel, before=None, after={"secret": "rotated"}
        )
    return channel


# Escalation policies --------------------------------------------------------------------------


def _clean_levels(team_id: int, levels: Sequence[dict], actor) -> list[dict]:
    """Validate level dicts ``{delay_minutes, repeat, users, owners_of, role, channels}``."""
    if not levels:
        raise ValidationError({"levels": "a policy needs at least one level"})
    members = set(Membership.objects.filter(team_id=team_id).values_list("user_id", flat=True))
    cleaned = []
    for number, raw in enumerate(levels, start=1):
        unknown = sorted(set(raw) - {"delay_minutes", "repeat", "users", "owners_of", "role", "channels"})
        if unknown:
            raise ValidationError({"levels": f"level {number}: unknown field(s) {', '.join(unknown)}"})
        delay, repeat = raw.get("delay_minutes", 15), raw.get("repeat", 0)
        users, channels = list(raw.get("users") or []), list(raw.get("channels") or [])
        owners_of, role = raw.get("owners_of"), raw.get("role") or ""
        problem = None
        if not isinstance(delay, int) or isinstance(delay, bool) or not 1 <= delay <= MAX_DELAY_MINUTES:
            problem = f"delay_minutes must be a whole number of minutes from 1 to {MAX_DELAY_MINUTES}"
        elif not isinstance(repeat, int) or isinstance(repeat, bool) or not 0 <= repeat <= 100:
            problem = "repeat must be a whole number from 0 to 100"
        elif role and role not in TeamRole.values:
            problem = f"unknown role {role!r}"
        elif not (users or owners_of or role or channels):
            problem = "name at least one target (a user, a team's owners, a role) or a channel"
        elif any(user.pk not in members for user in users):
            problem = "every user must be a member of the policy's team"
        elif any(channel.team_id != team_id for channel in channels):
            problem = "every channel must belong to the policy's team"
        elif owners_of is not None and actor is not None and not can(actor, VIEW, owners_of.pk, fresh=True):
            problem = "you may not name that team"
        if problem:
            raise ValidationError({"levels": f"level {number}: {problem}"})
        cleaned.append(
            {
                "delay_minutes": delay,
                "repeat": repeat,
                "users": users,
                "owners_of": owners_of,
                "role": role,
                "channels": channels,
            }
        )
    return cleaned


def _write_levels(policy: EscalationPolicy, levels: Iterable[dict]) -> None:
    policy.levels.all().delete()
    for position, spec in enumerate(levels):
        level = EscalationLevel.objects.create(
            policy=policy,
            position=position,
            delay_minutes=spec["delay_minutes"],
            repeat=spec["repeat"],
            owners_of=spec["owners_of"],
            role=spec["role"],
        )
        level.users.set(spec["users"])
        level.channels.set(spec["channels"])


def do_create_escalation_policy(
    *, team: Team, name: str, levels: Sequence[dict], actor, description: str = ""
) -> EscalationPolicy:
    """Create a policy with its ordered levels. Raises ValidationError naming the bad level."""
    with transaction.atomic():
        ensure_can(actor, MANAGE, team.pk)
        if not name.strip():
            raise ValidationError({"name": "a policy needs a name"})
        if EscalationPolicy.objects.filter(team=team, name=name.strip()).exists():
            raise ValidationError({"name": f"{team} already has a policy named {name.strip()!r}"})
        cleaned = _clean_levels(team.pk, levels, actor)
        policy = EscalationPolicy.objects.create(
            team=team, name=name.strip(), description=description, created_by=actor
        )
        _write_levels(policy, cleaned)
        record_audit_event(actor=actor, action="escalation_policy.create", obj=policy, after=snapshot(policy))
    return policy


def do_update_escalation_policy(
    *,
    policy: EscalationPolicy,
    actor,
    name: str | None = None,
    description: str | None = None,
    levels: Sequence[dict] | None = None,
) -> EscalationPolicy:
    """Rename, re-describe or replace the levels of a policy. Open alerts continue at their step."""
    with transaction.atomic():
        policy = EscalationPolicy.objects.select_for_update().get(pk=policy.pk)
        ensure_can(actor, MANAGE, policy.team_id)
        before = snapshot(policy)
        if name is not None:
            if not name.strip():
                raise ValidationError({"name": "a policy needs a name"})
            taken = EscalationPolicy.objects.filter(team_id=policy.team_id, name=name.strip()).exclude(
                pk=policy.pk
            )
            if taken.exists():
                raise ValidationError({"name": f"{policy.team} already has a policy named {name.strip()!r}"})
            policy.name = name.strip()
        if description is not None:
            policy.description = description
        if levels is not None:
            _write_levels(policy, _clean_levels(policy.team_id, levels, actor))
        policy.updated_at = timezone.now()
        policy.save()
        record_audit_event(
            actor=actor, action="escalation_policy.update", obj=policy, before=before, after=snapshot(policy)
        )
    return policy


def do_delete_escalation_policy(*, policy: EscalationPolicy, actor) -> None:
    """Delete a policy no monitor uses. Raises ValidationError naming the monitors that do."""
    with transaction.atomic():
        policy = EscalationPolicy.objects.select_for_update().get(pk=policy.pk)
        ensure_can(actor, MANAGE, policy.team_id)
        users = list(Monitor.objects.filter(escalation_policy=policy).values_list("name", flat=True))
        if users:
            raise ValidationError(
                {"detail": f"monitors {', '.join(users)} use this policy; change them first"}
            )
        record_audit_event(
            actor=actor, action="escalation_policy.delete", obj=policy, before=snapshot(policy)
        )
        policy.delete()

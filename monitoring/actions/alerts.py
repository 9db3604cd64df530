"""Alerts: raised and cleared by checks (Healthchecks' ``Flip``), handled by people.

A breach opens, adds to or re-opens the alert of its dedup key in the check's transaction; clean
checks count towards auto-resolving it. Its owner (or whoever may change the team's objects)
acknowledges (escalation stops), snoozes or resolves it. Every change writes an ``AlertEvent`` and
an audit event in the same transaction.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from governance.audit import record_audit_event, snapshot
from monitoring.actions.escalations import do_escalate_alert
from monitoring.actions.history import add_alert_event
from monitoring.engine import count_tested
from monitoring.models import UNRESOLVED, Alert, AlertEventKind, AlertState, DriftCheck, Monitor
from monitoring.permissions import may_handle_alert

if TYPE_CHECKING:
    from django.contrib.auth.models import User

MAX_SNOOZE = datetime.timedelta(days=30)


def _dedup_key(check: DriftCheck) -> str:
    return f"monitor:{check.monitor_id}" if check.monitor_id else f"model_version:{check.model_version_id}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


# The features an alert names for a drifted multivariate test: those that drive it most.
MULTIVARIATE_FEATURES_NAMED = 3
MULTIVARIATE_STATISTICS = {"domain_classifier": "ROC AUC", "pca": "reconstruction error"}


def _drivers(test: dict) -> list[str]:
    return [item["feature"] for item in test.get("top_features") or []][:MULTIVARIATE_FEATURES_NAMED]


def _multivariate_line(test: dict) -> str:
    """One drifted multivariate test in words: its statistic against its bound, what drives it."""
    statistic = MULTIVARIATE_STATISTICS.get(test["test"], "statistic")
    if test.get("lower_bound") is not None:
        bound = f"outside {_fmt(test['lower_bound'])} to {_fmt(test.get('threshold'))}"
    else:
        bound = f"threshold {_fmt(test.get('threshold'))}"
    p_value = f", p = {_fmt(test['p_value'])}" if test.get("p_value") is not None else ""
    drivers = ", ".join(_drivers(test)) or "no single feature"
    return (
        f"{test['test']}: {statistic} = {_fmt(test.get('statistic'))} ({bound}{p_value}); driven by {drivers}"
    )


def _evidence(check: DriftCheck) -> dict[str, Any]:
    """What the alert shows and sends: drifted columns vs thresholds, windows, links."""
    base = settings.STEWARD_BASE_URL.rstrip("/")
    monitor = check.monitor
    performance = check.performance or {}
    prediction = check.prediction or {}
    keys = ("column", "kind", "method", "score", "threshold", "status", "message")
    return {
        "check_id": check.pk,
        "check_url": f"{base}{check.get_absolute_url()}",
        "report_url": f"{base}{reverse('drift_check_report', args=[check.pk])}" if check.has_report else "",
        "runbook_url": monitor.runbook_url if monitor else "",
        "monitor": monitor.name if monitor else "",
        "reference": {
            "dataset_version": str(check.reference_dataset_version),
            "where": check.reference_where,
        },
        "window": {"dataset_versions": check.window.get("labels", []), "rows": check.window.get("rows")},
        "drift_share": check.drift_share,
        "is_dataset_drift": check.is_dataset_drift,
        "columns_tested": count_tested(check.results),
        "drifted_columns": [{key: column.get(key) for key in keys} for column in check.drifted_columns],
        "prediction": ({key: prediction.get(key) for key in keys} if prediction.get("is_drifted") else None),
        "performance": {
            name: values for name, values in performance.get("metrics", {}).items() if values["is_degraded"]
        },
        "multivariate": [
            {
                key: test.get(key)
                for key in (
                    "test",
                    "statistic",
                    "threshold",
                    "lower_bound",
                    "p_value",
                    "top_features",
                    "reference_rows",
                    "current_rows",
                    "message",
                )
            }
            for test in check.drifted_multivariate
        ],
    }


def _headline(check: DriftCheck) -> tuple[str, str]:
    """The alert's title, naming what breached (data, prediction, performance, multivariate drift,
    in the check's own words; a multivariate test with the features driving it), and its
    one-line-per-finding summary."""
    lines = [
        f"{c['column']}: {c['method']} = {_fmt(c['score'])} (threshold {_fmt(c['threshold'])})"
        for c in check.drifted_columns
    ]
    breached = [verdict for verdict in check.verdicts if verdict.status in ("drift", "warning")]
    prediction = check.prediction or {}
    if prediction.get("is_drifted"):
        lines.append(
            f"prediction: {prediction['method']} = {_fmt(prediction['score'])} "
            f"(threshold {_fmt(prediction['threshold'])})"
        )
    degraded = []
    for name, values in (check.performance or {}).get("metrics", {}).items():
        if values["is_degraded"]:
            change = values["change"]
            worse = f" ({change:+.0%})" if change is not None else ""
            degraded.append(f"{name} {_fmt(values['current'])}{worse}")
            lines.append(
                f"{name}: {_fmt(values['current'])} against baseline {_fmt(values['baseline'])}{worse}"
            )
    tests = check.drifted_multivariate
    lines.extend(_multivariate_line(test) for test in tests)
    joint = ", ".join(
        f"{test['test']} ({', '.join(_drivers(test)) or 'no single feature'})" for test in tests
    )
    # The performance verdict names the metrics; the title gives their values too. A multivariate
    # verdict names its tests; the title names the features driving each.
    details = {"performance": ", ".join(degraded), "multivariate": joint}
    breached = [v._replace(detail=details[v.kind]) if v.kind in details else v for v in breached]
    first, *rest = breached
    title = f"{first.name} on {check.model_version}" + (f": {first.detail}" if first.detail else "")
    title += "".join(f"; {v.name.lower()}" + (f": {v.detail}" if v.detail else "") for v in rest)
    return title[:300], "\n".join(lines)


def record_breach(check: DriftCheck, now: datetime.datetime) -> Alert:
    """Open, add to, or re-open the alert for ``check``'s dedup key (caller's transaction).

    A repeat only updates the unresolved alert; an alert opened or re-opened (resolved less than
    the monitor's ``reopen_within_hours`` ago) starts a new escalation round, whose first step
    (level 1: the owner, without a policy) is sent once committed.
    """
    key = _dedup_key(check)
    alert = Alert.objects.select_for_update().filter(dedup_key=key, state__in=UNRESOLVED).first()
    if alert is not None:
        return _repeat_alert(alert, check, now)
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
    if recent is not None and monitor is not None:
        before = snapshot(recent)
        alert = _reopen_alert(recent, monitor, check, now)
        kind, action = AlertEventKind.REOPEN, "alert.reopen"
    else:
        alert = _open_alert(check, key, now)
        before, kind, action = None, AlertEventKind.OPEN, "alert.open"
    add_alert_event(alert, kind, at=now, check=check, note=alert.title)
    record_audit_event(
        actor=None,
        on_behalf_of=check.created_by,
        action=action,
        obj=alert,
        before=before,
        after=snapshot(alert),
    )
    alert_id = alert.pk
    transaction.on_commit(lambda: do_escalate_alert(alert_id, now=now))
    return alert


def _repeat_alert(alert: Alert, check: DriftCheck, now: datetime.datetime) -> Alert:
    """One more breach of an unresolved alert: counted, its evidence replaced; escalation goes on."""
    title, summary = _headline(check)
    before = snapshot(alert)
    alert.occurrences += 1
    alert.last_seen_at = now
    alert.drift_check = check
    alert.title, alert.summary, alert.evidence = title, summary, _evidence(check)
    alert.clean_checks = 0
    alert.severity = check.breach_severity
    alert.save()
    add_alert_event(alert, AlertEventKind.REPEAT, at=now, check=check, note=title)
    record_audit_event(
        actor=None,
        on_behalf_of=check.created_by,
        action="alert.repeat",
        obj=alert,
        before=before,
        after=snapshot(alert),
    )
    return alert


def _reopen_alert(alert: Alert, monitor: Monitor, check: DriftCheck, now: datetime.datetime) -> Alert:
    """A recently resolved alert open again, as new: handling cleared, a new escalation round."""
    alert.title, alert.summary = _headline(check)
    alert.state = AlertState.OPEN
    alert.reopened_at = alert.last_seen_at = now
    alert.occurrences += 1
    alert.drift_check = check
    alert.evidence = _evidence(check)
    alert.severity = check.breach_severity
    alert.clean_checks = 0
    alert.acknowledged_by = alert.acknowledged_at = alert.resolved_by = alert.resolved_at = None
    alert.snoozed_until = alert.snoozed_by = None
    alert.escalation_policy = monitor.escalation_policy
    alert.escalation_round += 1
    alert.escalation_step, alert.escalation_level, alert.next_escalation_at = 0, None, now
    alert.retrain_job_id = None
    alert.save()
    return alert


def _open_alert(check: DriftCheck, key: str, now: datetime.datetime) -> Alert:
    """A new alert for ``key``, owned by the model's owner, due for its first escalation step now."""
    monitor = check.monitor
    title, summary = _headline(check)
    return Alert.objects.create(
        team_id=check.team_id,
        model_version=check.model_version,
        monitor=monitor,
        dedup_key=key,
        drift_check=check,
        owner=check.model_version.model.owner,
        severity=check.breach_severity,
        title=title,
        summary=summary,
        evidence=_evidence(check),
        runbook_url=monitor.runbook_url if monitor else "",
        escalation_policy=monitor.escalation_policy if monitor else None,
        created_at=now,
        last_seen_at=now,
        next_escalation_at=now,
    )


def record_clean_check(check: DriftCheck, now: datetime.datetime) -> Alert | None:
    """Count a clean check against the monitor's unresolved alert; resolve it after N in a row."""
    alert = (
        Alert.objects.select_for_update().filter(dedup_key=_dedup_key(check), state__in=UNRESOLVED).first()
    )
    if alert is None:
        return None
    before = snapshot(alert)
    alert.clean_checks += 1
    needed = check.monitor.auto_resolve_after if check.monitor is not None else 0
    is_resolved = bool(needed) and alert.clean_checks >= needed
    if is_resolved:
        alert.state = AlertState.RESOLVED
        alert.resolved_at, alert.resolved_by = now, None
        alert.next_escalation_at = alert.snoozed_until = None
    alert.save()
    note = f"{alert.clean_checks} clean check(s) in a row"
    add_alert_event(
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


def _ensure_may_handle(actor: User, alert: Alert) -> None:
    if not may_handle_alert(actor, alert, fresh=True):
        raise PermissionDenied(
            "only the model's owner or the team's model owners and data scientists may do this"
        )


def do_acknowledge_alert(*, alert: Alert, actor: User, now: datetime.datetime | None = None) -> Alert:
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
        add_alert_event(alert, AlertEventKind.ACKNOWLEDGE, at=now, actor=actor)
        record_audit_event(
            actor=actor, action="alert.acknowledge", obj=alert, before=before, after=snapshot(alert)
        )
    return alert


def do_snooze_alert(
    *, alert: Alert, until: datetime.datetime, actor: User, now: datetime.datetime | None = None
) -> Alert:
    """Hold an unresolved alert's escalation until ``until`` (at most 30 days ahead).

    Breaches keep appending meanwhile. Raises ValidationError if the alert is resolved or
    ``until`` is not in the future.
    """
    now = now or timezone.now()
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        # Who may first, then what: someone who may not snooze hears that, whatever they asked for.
        _ensure_may_handle(actor, alert)
        if until <= now:
            raise ValidationError({"until": "must be in the future"})
        if until > now + MAX_SNOOZE:
            raise ValidationError({"until": "must be at most 30 days ahead"})
        if alert.state == AlertState.RESOLVED:
            raise ValidationError({"state": f"alert #{alert.pk} is resolved; nothing to snooze"})
        before = snapshot(alert)
        alert.snoozed_until, alert.snoozed_by = until, actor
        alert.save()
        add_alert_event(alert, AlertEventKind.SNOOZE, at=now, actor=actor, note=f"until {until.isoformat()}")
        record_audit_event(
            actor=actor, action="alert.snooze", obj=alert, before=before, after=snapshot(alert)
        )
    return alert


def do_resolve_alert(*, alert: Alert, actor: User, now: datetime.datetime | None = None) -> Alert:
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
        add_alert_event(alert, AlertEventKind.RESOLVE, at=now, actor=actor)
        record_audit_event(
            actor=actor, action="alert.resolve", obj=alert, before=before, after=snapshot(alert)
        )
    return alert

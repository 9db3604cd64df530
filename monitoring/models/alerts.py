"""Alerts (one unresolved per dedup key), their own timeline, and each delivery of an escalation step.

The tables follow Healthchecks' alerting design (``hc/api/models.py``): a breach changes an
``Alert`` row and writes an ``AlertEvent`` in the same transaction; the escalation task claims due
alerts with a conditional UPDATE and writes one ``Notification`` row per delivery, which records
its own result.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from governance.models import ModelVersion, Team
from governance.permissions import RestrictedQuerySet
from monitoring.models.checks import DriftCheck
from monitoring.models.monitors import Monitor
from monitoring.models.routing import Channel, ChannelKind, EscalationPolicy
from monitoring.models.rules import Severity, in_choices


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


UNRESOLVED = (AlertState.OPEN, AlertState.ACKNOWLEDGED)


class AlertQuerySet(RestrictedQuerySet):
    def unresolved(self) -> AlertQuerySet:
        """Open or acknowledged alerts. Reached from governance through the reverse accessors
        (``model_version.alerts.unresolved()``), which may not import monitoring (layers)."""
        return self.filter(state__in=UNRESOLVED)


class AlertKind(models.TextChoices):
    DRIFT = "drift", "Drift"
    # A team's month-to-date job cost passed its budget (issue 16): no model version, no check.
    BUDGET = "budget", "Budget"


class Alert(models.Model):
    """An incident: one unresolved alert per dedup key (``monitor:<id>``, or ``model_version:<id>``
    for checks requested without a monitor, ``budget:<team id>:<YYYY-MM>`` for a team past its
    budget); repeat breaches append to it. A drift alert has its model version and check; a
    budget alert has neither."""

    kind = models.CharField(max_length=16, choices=AlertKind.choices, default=AlertKind.DRIFT)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="alerts")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="alerts"
    )
    monitor = models.ForeignKey(
        Monitor, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    dedup_key = models.CharField(max_length=64, db_index=True)
    drift_check = models.ForeignKey(
        DriftCheck, null=True, blank=True, on_delete=models.PROTECT, related_name="alerts"
    )
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="alerts")
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.OPEN)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    title = models.CharField(max_length=300)
    summary = models.TextField()
    evidence = models.JSONField(default=dict, blank=True)
    runbook_url = models.URLField(max_length=500, blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    clean_checks = models.PositiveIntegerField(default=0, help_text="Clean checks in a row since the breach.")
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    reopened_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    snoozed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    escalation_policy = models.ForeignKey(
        EscalationPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    escalation_round = models.PositiveSmallIntegerField(
        default=0, help_text="Incremented when the alert re-opens: escalation starts over in a new round."
    )
    escalation_step = models.PositiveIntegerField(default=0, help_text="Steps of this round sent so far.")
    escalation_level = models.PositiveSmallIntegerField(null=True, blank=True)
    next_escalation_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # A real key (issue 8): ``retrain_job_id`` is its column; a deleted job leaves NULL.
    retrain_job = models.ForeignKey(
        "runners.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = AlertQuerySet.as_manager()
    team_scope = "team"
    audit_fields = (
        "kind",
        "model_version_id",
        "monitor_id",
        "drift_check_id",
        "owner_id",
        "state",
        "severity",
        "occurrences",
        "clean_checks",
        "snoozed_until",
        "escalation_round",
        "escalation_step",
        "escalation_level",
        "next_escalation_at",
    )

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dedup_key"],
                condition=Q(state__in=["open", "acknowledged"]),
                name="one_unresolved_alert_per_dedup_key",
            ),
            models.CheckConstraint(condition=Q(occurrences__gte=1), name="alert_occurs_at_least_once"),
            models.CheckConstraint(
                condition=~Q(state=AlertState.ACKNOWLEDGED) | Q(acknowledged_at__isnull=False),
                name="alert_acknowledged_has_acknowledged_at",
            ),
            # A resolved alert says when, and nothing of it is pending: no next step, no snooze.
            models.CheckConstraint(
                condition=~Q(state=AlertState.RESOLVED)
                | Q(resolved_at__isnull=False, next_escalation_at__isnull=True, snoozed_until__isnull=True),
                name="alert_resolved_is_settled",
            ),
            models.CheckConstraint(
                condition=~Q(kind=AlertKind.DRIFT)
                | Q(model_version__isnull=False, drift_check__isnull=False),
                name="alert_drift_has_model_version_and_check",
            ),
            in_choices("kind", AlertKind, "alert_kind_valid"),
            in_choices("state", AlertState, "alert_state_valid"),
            in_choices("severity", Severity, "alert_severity_valid"),
        ]

    def __str__(self) -> str:
        return f"Alert #{self.pk}: {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("alert_detail", args=[self.pk])

    def clean(self) -> None:
        """The rules one alert row must satisfy by itself (its check constraints). Raises ValidationError."""
        errors: dict[str, str] = {}
        if self.kind == AlertKind.DRIFT and (self.model_version_id is None or self.drift_check_id is None):
            errors["drift_check"] = "a drift alert needs its model version and drift check"
        if self.occurrences < 1:
            errors["occurrences"] = "an alert occurs at least once"
        if self.state == AlertState.ACKNOWLEDGED and self.acknowledged_at is None:
            errors["acknowledged_at"] = "an acknowledged alert needs its acknowledgement time"
        if self.state == AlertState.RESOLVED:
            if self.resolved_at is None:
                errors["resolved_at"] = "a resolved alert needs its resolution time"
            if self.next_escalation_at is not None:
                errors["next_escalation_at"] = "a resolved alert escalates no further"
            if self.snoozed_until is not None:
                errors["snoozed_until"] = "a resolved alert cannot be snoozed"
        if errors:
            raise ValidationError(errors)

    def is_snoozed(self, now=None) -> bool:
        return self.snoozed_until is not None and self.snoozed_until > (now or timezone.now())


class AlertEventKind(models.TextChoices):
    OPEN = "open", "Opened"
    REPEAT = "repeat", "Breached again"
    REOPEN = "reopen", "Re-opened"
    CLEAN = "clean", "Clean check"
    ACKNOWLEDGE = "acknowledge", "Acknowledged"
    SNOOZE = "snooze", "Snoozed"
    RESOLVE = "resolve", "Resolved"
    AUTO_RESOLVE = "auto_resolve", "Resolved automatically"
    ESCALATE = "escalate", "Escalated"
    RETRAIN = "retrain", "Retraining submitted"


class AlertEvent(models.Model):
    """The alert's own timeline (Healthchecks' ``Flip``): written with each change of the alert."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=AlertEventKind.choices)
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    drift_check = models.ForeignKey(
        DriftCheck, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    level = models.PositiveSmallIntegerField(null=True, blank=True)
    repeat = models.PositiveSmallIntegerField(null=True, blank=True)
    note = models.TextField(blank=True)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "alert__team"

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} alert #{self.alert_id} at {self.at:%Y-%m-%d %H:%M}"


class NotificationState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    RETRYING = "retrying", "Retrying"
    FAILED = "failed", "Failed"


class Notification(models.Model):
    """One delivery of one escalation step through one channel (or by email straight to the targets).

    Unique per (alert, round, level, repeat, channel): a step's deliveries are written once, however
    many workers race for it, and each keeps its attempts, error and result here. ``round`` counts
    re-openings, so a re-opened alert escalates afresh without colliding with its first round.
    """

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    channel = models.ForeignKey(
        Channel, null=True, blank=True, on_delete=models.PROTECT, related_name="notifications"
    )
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    round = models.PositiveSmallIntegerField(default=0)
    level = models.PositiveSmallIntegerField()
    repeat = models.PositiveSmallIntegerField()
    recipients = models.JSONField(default=list, blank=True, help_text="Email addresses, or target usernames.")
    state = models.CharField(
        max_length=16, choices=NotificationState.choices, default=NotificationState.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "alert__team"

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "round", "level", "repeat", "channel"],
                name="one_notification_per_step_and_channel",
            ),
            models.UniqueConstraint(
                fields=["alert", "round", "level", "repeat"],
                condition=Q(channel__isnull=True),
                name="one_direct_email_per_step",
            ),
        ]

    def __str__(self) -> str:
        route = self.channel.name if self.channel is not None else "email to targets"
        return f"Notification #{self.pk} of alert #{self.alert_id} via {route}"

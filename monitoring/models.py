"""Drift checks of a model version's data and the alerts they raise for its owner."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from governance.models import DatasetVersion, ModelVersion, Team
from governance.permissions import RestrictedQuerySet


class CheckState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class DriftCheck(models.Model):
    """One comparison of a current dataset version against the model version's training data."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="drift_checks")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="drift_checks")
    reference_dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="+")
    current_dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="+")
    columns = models.JSONField(default=list)
    drift_share = models.FloatField(
        default=0.5, help_text="Share of drifted columns that means dataset drift."
    )
    state = models.CharField(max_length=16, choices=CheckState.choices, default=CheckState.QUEUED)
    is_dataset_drift = models.BooleanField(null=True)
    drifted_count = models.PositiveIntegerField(null=True)
    drifted_fraction = models.FloatField(null=True)
    results = models.JSONField(default=list, help_text="Per column: method, score, threshold, is_drifted.")
    sampled_rows = models.PositiveIntegerField(null=True)
    report = models.CharField(
        max_length=500, blank=True, help_text="Evidently HTML, relative to artifact root."
    )
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    celery_task_id = models.CharField(max_length=255, blank=True)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = (
        "model_version_id",
        "reference_dataset_version_id",
        "current_dataset_version_id",
        "columns",
        "drift_share",
        "state",
        "is_dataset_drift",
        "drifted_count",
        "error",
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Drift check #{self.pk} of {self.model_version}"

    def get_absolute_url(self) -> str:
        return reverse("drift_check_detail", args=[self.pk])

    @property
    def drifted_columns(self) -> list[dict]:
        return [result for result in self.results if result["is_drifted"]]


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class Severity(models.TextChoices):
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class Alert(models.Model):
    """An incident for a model version's owner; one unresolved alert per model version."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="alerts")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="alerts")
    drift_check = models.ForeignKey(DriftCheck, on_delete=models.PROTECT, related_name="alerts")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="alerts")
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.OPEN)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    title = models.CharField(max_length=300)
    summary = models.TextField()
    occurrences = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("model_version_id", "drift_check_id", "owner_id", "state", "severity", "occurrences")

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model_version"],
                condition=Q(state__in=["open", "acknowledged"]),
                name="one_unresolved_alert_per_model_version",
            )
        ]

    def __str__(self) -> str:
        return f"Alert #{self.pk}: {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("alert_detail", args=[self.pk])

"""Monitors of model versions, their drift checks, and the alerts, escalations and deliveries they cause.

The tables follow Healthchecks' alerting design (``hc/api/models.py``): a breach changes an
``Alert`` row and writes an ``AlertEvent`` in the same transaction; the escalation task claims due
alerts with a conditional UPDATE and writes one ``Notification`` row per delivery, which records
its own result. ``ReferenceProfile`` caches the drift engine's summary of a reference.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from governance.models import Dataset, DatasetVersion, ModelVersion, Team, TeamRole
from governance.permissions import RestrictedQuerySet
from monitoring import escalation

# Single-row rules (issue 8): each is checked by the model's ``clean()`` and by a CheckConstraint,
# defined once here; the actions validate with them before writing.

# (field, lowest, highest, unit) of a monitor's integer settings. The upper bounds keep every value
# inside what timedelta and beat's schedules can represent: a 10**18-minute schedule or reopen
# window raised OverflowError in beat and in every check.
MONITOR_BOUNDS = (
    ("window_versions", 1, 1000, "dataset versions"),
    ("schedule_minutes", 1, 366 * 24 * 60, "minutes"),
    ("reopen_within_hours", 0, 366 * 24, "hours"),
    ("auto_resolve_after", 0, 10_000, "clean checks"),
    ("min_sample_size", 1, 1_000_000_000, "rows"),
)
MAX_DELAY_MINUTES = 30 * 24 * 60
MAX_REPEAT = 100


def _in_choices(field: str, choices: type[models.TextChoices], name: str) -> models.CheckConstraint:
    return models.CheckConstraint(condition=Q(**{f"{field}__in": choices.values}), name=name)


def _drift_share_valid(share: float) -> bool:
    """The engine's rule (``CheckConfig``): a share of drifted columns in (0, 1]."""
    return 0 < share <= 1


DRIFT_SHARE_IN_RANGE = Q(drift_share__gt=0, drift_share__lte=1)


class CheckState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Severity(models.TextChoices):
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class ProfileState(models.TextChoices):
    PENDING = "pending", "Pending"
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class ReferenceProfile(models.Model):
    """The drift engine's profile (``monitoring.engine.DatasetProfile.to_dict``) of a reference.

    The reference is a dataset version's rows with a row filter (``where``) applied, or, when
    ``predictions_of`` is set, that model version's predictions on those rows (one column,
    ``prediction``, plus the baseline metrics on them). Built once, on demand or by the first check
    that needs it, and reused by every later check. A derived cache, so not audited.
    """

    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="+")
    where = models.JSONField(default=dict, blank=True, help_text="Row filter applied before profiling.")
    predictions_of = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    key = models.CharField(
        max_length=64, unique=True, help_text="SHA-256 of (dataset version, where, model)."
    )
    state = models.CharField(max_length=16, choices=ProfileState.choices, default=ProfileState.PENDING)
    profile = models.JSONField(null=True, blank=True)
    baseline_metrics = models.JSONField(
        default=dict, blank=True, help_text="Metrics of the predictions on the reference rows."
    )
    rows = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True, help_text="When the current build began.")
    built_at = models.DateTimeField(null=True, blank=True)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "dataset_version__dataset__team"

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        subject = f"predictions of {self.predictions_of} on " if self.predictions_of_id else ""
        return f"Profile of {subject}{self.dataset_version}"


class CurrentSource(models.TextChoices):
    PREDICTIONS = "predictions", "The model version's inference outputs"
    DATASET = "dataset", "Uploaded batches of a dataset"


class Monitor(models.Model):
    """What to check for one model version, where the data comes from, how often, and whom to tell."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="monitors")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="monitors")
    name = models.CharField(max_length=100)
    reference_dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="+")
    reference_where = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=16, choices=CurrentSource.choices, default=CurrentSource.PREDICTIONS)
    current_dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    window_versions = models.PositiveSmallIntegerField(
        default=1, help_text="How many of the source's newest dataset versions one check reads."
    )
    columns = models.JSONField(default=list, blank=True)
    methods = models.JSONField(default=dict, blank=True, help_text="Column -> engine method.")
    thresholds = models.JSONField(default=dict, blank=True, help_text="Column -> threshold.")
    drift_share = models.FloatField(default=0.5)
    min_sample_size = models.PositiveIntegerField(default=2000)
    check_predictions = models.BooleanField(default=True)
    check_performance = models.BooleanField(default=True)
    performance_tolerance = models.FloatField(
        default=0.1, help_text="Relative worsening of a metric against its baseline that counts as drift."
    )
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    runbook_url = models.URLField(max_length=500, blank=True)
    escalation_policy = models.ForeignKey(
        "EscalationPolicy", null=True, blank=True, on_delete=models.PROTECT, related_name="monitors"
    )
    schedule_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Run every this many minutes; empty runs only on request."
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_active = models.BooleanField(default=True)
    auto_resolve_after = models.PositiveSmallIntegerField(
        default=3, help_text="Resolve the open alert after this many clean checks in a row (0: never)."
    )
    reopen_within_hours = models.PositiveIntegerField(
        default=24, help_text="A breach this soon after resolution re-opens the alert instead of a new one."
    )
    retrain_on_drift = models.BooleanField(default=False)
    retrain_where = models.JSONField(default=dict, blank=True, help_text="Row filter of the retraining job.")
    last_checked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = (
        "name",
        "model_version_id",
        "reference_dataset_version_id",
        "reference_where",
        "source",
        "current_dataset_id",
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
        "escalation_policy_id",
        "schedule_minutes",
        "is_active",
        "auto_resolve_after",
        "reopen_within_hours",
        "retrain_on_drift",
        "retrain_where",
    )

    class Meta:
        ordering = ["model_version_id", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["model_version", "name"], name="unique_monitor_name_per_version"),
            *(
                models.CheckConstraint(
                    condition=Q(**{f"{name}__gte": low, f"{name}__lte": high})
                    | Q(**{f"{name}__isnull": True}),
                    name=f"monitor_{name}_in_range",
                )
                for name, low, high, _unit in MONITOR_BOUNDS
            ),
            models.CheckConstraint(condition=DRIFT_SHARE_IN_RANGE, name="monitor_drift_share_in_range"),
            models.CheckConstraint(
                condition=Q(performance_tolerance__gte=0, performance_tolerance__lt=1),
                name="monitor_performance_tolerance_in_range",
            ),
            # Uploaded batches need their dataset; predictions come from lineage and name none.
            models.CheckConstraint(
                condition=Q(source=CurrentSource.DATASET, current_dataset__isnull=False)
                | Q(source=CurrentSource.PREDICTIONS, current_dataset__isnull=True),
                name="monitor_source_matches_current_dataset",
            ),
            _in_choices("severity", Severity, "monitor_severity_valid"),
        ]

    def __str__(self) -> str:
        return f"Monitor {self.name} of {self.model_version}"

    def get_absolute_url(self) -> str:
        return reverse("monitor_detail", args=[self.pk])

    def clean(self) -> None:
        """The rules one monitor row must satisfy by itself (the same as its check constraints).

        Raises ValidationError naming each bad field. Rules that read other rows (the reference's
        columns, the policy's team, the actor's rights) are the actions'.
        """
        errors: dict[str, str] = {}
        for name, low, high, unit in MONITOR_BOUNDS:
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                errors[name] = f"must be from {low} to {high} {unit}"
        if not _drift_share_valid(self.drift_share):
            errors["drift_share"] = f"must be in (0, 1], got {self.drift_share}"
        if not 0 <= self.performance_tolerance < 1:
            errors["performance_tolerance"] = "must be in [0, 1)"
        if self.source == CurrentSource.DATASET and self.current_dataset_id is None:
            errors["current_dataset"] = "choose the dataset whose uploaded versions are checked"
        elif self.source == CurrentSource.PREDICTIONS and self.current_dataset_id is not None:
            errors["current_dataset"] = "a monitor of the model's predictions reads no dataset"
        if errors:
            raise ValidationError(errors)

    @property
    def dedup_key(self) -> str:
        return f"monitor:{self.pk}"


class DriftCheck(models.Model):
    """One comparison of current data with a reference: per-column verdicts, prediction and performance."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="drift_checks")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="drift_checks")
    monitor = models.ForeignKey(
        Monitor, null=True, blank=True, on_delete=models.SET_NULL, related_name="checks"
    )
    reference_dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="+")
    reference_where = models.JSONField(default=dict, blank=True)
    reference_profile = models.ForeignKey(
        ReferenceProfile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    current_dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="+", help_text="The window's newest version."
    )
    window = models.JSONField(
        default=dict, blank=True, help_text='{"dataset_versions": [ids], "labels": [...], "rows": n}'
    )
    columns = models.JSONField(default=list)
    config = models.JSONField(default=dict, blank=True, help_text="The engine's CheckConfig.")
    drift_share = models.FloatField(
        default=0.5, help_text="Share of drifted columns that means dataset drift."
    )
    state = models.CharField(max_length=16, choices=CheckState.choices, default=CheckState.QUEUED)
    progress = models.FloatField(default=0.0, help_text="Fraction done, 0 to 1.")
    stage = models.CharField(max_length=200, blank=True)
    is_dataset_drift = models.BooleanField(null=True)
    drifted_count = models.PositiveIntegerField(null=True)
    drifted_fraction = models.FloatField(null=True)
    results = models.JSONField(
        default=list, help_text="Per column (engine ColumnResult): method, score, threshold, status, ..."
    )
    prediction = models.JSONField(null=True, blank=True, help_text="The prediction column's result.")
    performance = models.JSONField(null=True, blank=True, help_text="Metrics against the baseline.")
    is_performance_drift = models.BooleanField(null=True)
    evidently_results = models.JSONField(
        default=list, blank=True, help_text="Evidently's verdicts, for people."
    )
    sampled_rows = models.PositiveIntegerField(null=True, help_text="Rows per side in the evidently report.")
    report = models.CharField(
        max_length=500, blank=True, help_text="Evidently HTML, relative to artifact root."
    )
    report_error = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # A real key (issue 8): ``retrain_job_id`` is its column; a deleted job leaves NULL.
    retrain_job = models.ForeignKey(
        "runners.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
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
        "monitor_id",
        "reference_dataset_version_id",
        "current_dataset_version_id",
        "columns",
        "drift_share",
        "state",
        "is_dataset_drift",
        "drifted_count",
        "is_performance_drift",
        "error",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=DRIFT_SHARE_IN_RANGE, name="drift_check_drift_share_in_range"),
            models.CheckConstraint(
                condition=Q(progress__gte=0, progress__lte=1), name="drift_check_progress_in_range"
            ),
            models.CheckConstraint(
                condition=Q(drifted_fraction__isnull=True)
                | Q(drifted_fraction__gte=0, drifted_fraction__lte=1),
                name="drift_check_drifted_fraction_in_range",
            ),
            models.CheckConstraint(
                condition=Q(started_at__isnull=True)
                | Q(finished_at__isnull=True)
                | Q(finished_at__gte=F("started_at")),
                name="drift_check_finishes_after_it_starts",
            ),
            # A finished check says when (the redelivery guard and the metrics read it).
            models.CheckConstraint(
                condition=Q(state__in=[CheckState.QUEUED, CheckState.RUNNING]) | Q(finished_at__isnull=False),
                name="drift_check_finished_has_finished_at",
            ),
            _in_choices("state", CheckState, "drift_check_state_valid"),
        ]

    def __str__(self) -> str:
        return f"Drift check #{self.pk} of {self.model_version}"

    def get_absolute_url(self) -> str:
        return reverse("drift_check_detail", args=[self.pk])

    def clean(self) -> None:
        """The rules one check row must satisfy by itself (its check constraints). Raises ValidationError."""
        errors: dict[str, str] = {}
        if not _drift_share_valid(self.drift_share):
            errors["drift_share"] = f"must be in (0, 1], got {self.drift_share}"
        if not 0 <= self.progress <= 1:
            errors["progress"] = f"must be in [0, 1], got {self.progress}"
        if self.drifted_fraction is not None and not 0 <= self.drifted_fraction <= 1:
            errors["drifted_fraction"] = f"must be in [0, 1], got {self.drifted_fraction}"
        if self.started_at and self.finished_at and self.finished_at < self.started_at:
            errors["finished_at"] = "a check cannot finish before it starts"
        if self.is_finished and self.finished_at is None:
            errors["finished_at"] = f"a {self.state} check needs its finishing time"
        if errors:
            raise ValidationError(errors)

    @property
    def is_finished(self) -> bool:
        return self.state in (CheckState.SUCCEEDED, CheckState.FAILED)

    @property
    def drifted_columns(self) -> list[dict]:
        return [result for result in self.results if result.get("is_drifted")]

    @property
    def is_breach(self) -> bool:
        """Whether this finished check raises an alert: a drifted column, prediction or metric."""
        return bool(
            self.drifted_count or (self.prediction or {}).get("is_drifted") or self.is_performance_drift
        )


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook (JSON, HMAC-SHA256 signed)"
    SLACK = "slack", "Slack incoming webhook"


class Channel(models.Model):
    """A delivery route of a team: an email address, a signed JSON webhook, or a Slack webhook.

    An email channel without an address mails the escalation level's target people. A channel
    that fails permanently is disabled (``is_active`` False, ``disabled_reason``) and its owner told.
    """

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="channels")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", help_text="Told when it fails."
    )
    email_address = models.EmailField(blank=True)
    url = models.URLField(max_length=500, blank=True)
    secret = models.CharField(max_length=128, blank=True, help_text="HMAC key of a webhook channel.")
    is_active = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    # Never the secret: audit events are readable by compliance officers.
    audit_fields = ("name", "kind", "owner_id", "email_address", "url", "is_active", "disabled_reason")

    class Meta:
        ordering = ["team__name", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="unique_channel_name_per_team"),
            # An email channel has no URL; a webhook or Slack channel posts to an http(s) URL, not an address.
            models.CheckConstraint(
                condition=Q(kind=ChannelKind.EMAIL, url="")
                | (
                    Q(kind__in=[ChannelKind.WEBHOOK, ChannelKind.SLACK], email_address="")
                    & (Q(url__startswith="https://") | Q(url__startswith="http://"))
                ),
                name="channel_kind_matches_address",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display().split(' ')[0].lower()})"

    def get_absolute_url(self) -> str:
        return reverse("channel_detail", args=[self.pk])

    def clean(self) -> None:
        """The rule one channel row must satisfy by itself (its check constraint). Raises ValidationError."""
        if self.kind == ChannelKind.EMAIL:
            if self.url:
                raise ValidationError({"url": "an email channel has no URL"})
        elif self.kind in (ChannelKind.WEBHOOK, ChannelKind.SLACK):
            if self.email_address:
                raise ValidationError({"email_address": "a webhook channel has no email address"})
            if not self.url.startswith(("https://", "http://")):
                raise ValidationError({"url": "a webhook needs an http(s) URL"})
        else:
            raise ValidationError({"kind": f"unknown kind {self.kind!r}; one of email, webhook, slack"})


class EscalationPolicy(models.Model):
    """Ordered levels; an open, unacknowledged alert moves through them as their delays pass."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="escalation_policies")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("name", "description", "level_specs")

    class Meta:
        ordering = ["team__name", "name", "id"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="unique_policy_name_per_team")]
        verbose_name_plural = "escalation policies"

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("escalation_policy_detail", args=[self.pk])

    @property
    def level_specs(self) -> list[dict]:
        """The levels as JSON-able dicts (what the audit log records)."""
        return [level.spec() for level in self.levels.all()]


class EscalationLevel(models.Model):
    """One rung: notify the targets through the channels, ``1 + repeat`` times, ``delay_minutes`` apart,
    then move to the next level after another ``delay_minutes`` without an acknowledgement."""

    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="levels")
    position = models.PositiveSmallIntegerField()
    delay_minutes = models.PositiveIntegerField(default=15)
    repeat = models.PositiveSmallIntegerField(default=0)
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    owners_of = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="A team's owners."
    )
    role = models.CharField(
        max_length=32, choices=TeamRole.choices, blank=True, help_text="Everyone with this role in the team."
    )
    channels = models.ManyToManyField(Channel, blank=True, related_name="levels")

    class Meta:
        ordering = ["policy_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "position"], name="unique_level_position_per_policy"),
            models.CheckConstraint(
                condition=Q(delay_minutes__gte=1, delay_minutes__lte=MAX_DELAY_MINUTES),
                name="escalation_level_delay_in_range",
            ),
            models.CheckConstraint(
                condition=Q(repeat__lte=MAX_REPEAT), name="escalation_level_repeat_in_range"
            ),
            models.CheckConstraint(
                condition=Q(role="") | Q(role__in=TeamRole.values), name="escalation_level_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Level {self.position + 1} of {self.policy}"

    def spec(self) -> dict:
        """The level as a JSON-able dict (what the audit log records; user and channel ids sorted)."""
        return {
            "delay_minutes": self.delay_minutes,
            "repeat": self.repeat,
            "users": sorted(user.pk for user in self.users.all()),
            "owners_of": self.owners_of_id,
            "role": self.role,
            "channels": sorted(channel.pk for channel in self.channels.all()),
        }

    def clean(self) -> None:
        """The rules one level row must satisfy by itself (its check constraints). Raises ValidationError."""
        errors: dict[str, str] = {}
        if not 1 <= self.delay_minutes <= MAX_DELAY_MINUTES:
            errors["delay_minutes"] = f"must be a whole number of minutes from 1 to {MAX_DELAY_MINUTES}"
        if not 0 <= self.repeat <= MAX_REPEAT:
            errors["repeat"] = f"must be a whole number from 0 to {MAX_REPEAT}"
        if self.role and self.role not in TeamRole.values:
            errors["role"] = f"unknown role {self.role!r}"
        if errors:
            raise ValidationError(errors)

    def plan(self) -> escalation.Level:
        """The level as ``monitoring.escalation``'s step arithmetic sees it (delay and repeats)."""
        return escalation.Level(datetime.timedelta(minutes=self.delay_minutes), self.repeat)


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


UNRESOLVED = (AlertState.OPEN, AlertState.ACKNOWLEDGED)


class Alert(models.Model):
    """An incident: one unresolved alert per dedup key (``monitor:<id>``, or ``model_version:<id>``
    for checks requested without a monitor); repeat breaches append to it."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="alerts")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="alerts")
    monitor = models.ForeignKey(
        Monitor, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    dedup_key = models.CharField(max_length=64, db_index=True)
    drift_check = models.ForeignKey(DriftCheck, on_delete=models.PROTECT, related_name="alerts")
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

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = (
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
            _in_choices("state", AlertState, "alert_state_valid"),
            _in_choices("severity", Severity, "alert_severity_valid"),
        ]

    def __str__(self) -> str:
        return f"Alert #{self.pk}: {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("alert_detail", args=[self.pk])

    def clean(self) -> None:
        """The rules one alert row must satisfy by itself (its check constraints). Raises ValidationError."""
        errors: dict[str, str] = {}
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

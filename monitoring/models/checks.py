"""Drift checks and the cached reference profiles they compare against."""

from __future__ import annotations

from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from governance.models import DatasetVersion, ModelVersion, Team
from governance.permissions import RestrictedQuerySet
from monitoring.engine import count_tested
from monitoring.models.monitors import Monitor
from monitoring.models.rules import DRIFT_SHARE_IN_RANGE, Severity, drift_share_valid, in_choices
from runners.models import Delivered


class Verdict(NamedTuple):
    """One of a check's verdicts: ``kind`` (data, prediction, performance), ``status`` (drift,
    warning, no-drift, not-measured: the badge's CSS suffix), and its words: ``name`` and a
    ``detail`` that says how much."""

    kind: str
    status: str
    name: str
    detail: str = ""

    @property
    def label(self) -> str:
        return f"{self.name}: {self.detail}" if self.detail else self.name


class CheckState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ReportState(models.TextChoices):
    """The evidently report of a check: built by its own task after the verdict (issue 11)."""

    NOT_REQUESTED = "not_requested", "Not requested"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


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


class DriftCheck(Delivered):
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
    multivariate = models.JSONField(
        default=list,
        blank=True,
        help_text="Multivariate drift results (monitoring.engine.multivariate), one per test asked.",
    )
    evidently_results = models.JSONField(
        default=list, blank=True, help_text="Evidently's verdicts, for people."
    )
    groups = models.JSONField(
        default=dict,
        blank=True,
        help_text="Verdicts per time window and segment (monitoring.engine.windows.GroupsResult); "
        "empty when the check asked for none.",
    )
    sampled_rows = models.PositiveIntegerField(null=True, help_text="Rows per side in the evidently report.")
    report = models.CharField(
        max_length=500, blank=True, help_text="Evidently HTML, relative to artifact root."
    )
    report_state = models.CharField(
        max_length=16, choices=ReportState.choices, default=ReportState.NOT_REQUESTED
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
            in_choices("state", CheckState, "drift_check_state_valid"),
        ]

    def __str__(self) -> str:
        return f"Drift check #{self.pk} of {self.model_version}"

    def get_absolute_url(self) -> str:
        return reverse("drift_check_detail", args=[self.pk])

    def clean(self) -> None:
        """The rules one check row must satisfy by itself (its check constraints). Raises ValidationError."""
        errors: dict[str, str] = {}
        if not drift_share_valid(self.drift_share):
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
    def has_report(self) -> bool:
        """An evidently report exists or is being built (its own task, after the verdict)."""
        return bool(self.report) or self.report_state in (ReportState.QUEUED, ReportState.RUNNING)

    @property
    def drifted_columns(self) -> list[dict]:
        return [result for result in self.results if result.get("is_drifted")]

    @property
    def verdicts(self) -> list[Verdict]:
        """The check's three verdicts (a fourth with multivariate tests), each on its own (issue 14,
        one verdict language): data drift (the columns; "dataset drift" once the drifted share
        reaches ``drift_share``), prediction drift and performance drift. A kind the check did not
        measure (for data, no column got a verdict) says so; none while running.
        """
        if self.state != CheckState.SUCCEEDED:
            return []
        tested = count_tested(self.results)
        drifted = self.drifted_count or 0
        if self.is_dataset_drift:
            data = Verdict("data", "drift", "Dataset drift", f"{drifted} of {tested} columns")
        elif drifted:
            data = Verdict("data", "warning", "Data drift", f"{drifted} of {tested} columns")
        elif not tested:
            # Every column too short, empty or failed: no column said "no drift" either.
            data = Verdict("data", "not-measured", "Data drift not measured", "no column tested")
        else:
            data = Verdict("data", "no-drift", "No data drift")
        prediction = self.prediction or {}
        if not prediction or prediction.get("is_drifted") is None:
            predicted = Verdict("prediction", "not-measured", "Prediction drift not measured")
        elif prediction["is_drifted"]:
            predicted = Verdict("prediction", "drift", "Prediction drift")
        else:
            predicted = Verdict("prediction", "no-drift", "No prediction drift")
        if self.is_performance_drift is None:
            performance = Verdict("performance", "not-measured", "Performance not measured")
        elif self.is_performance_drift:
            worse = [
                name
                for name, values in (self.performance or {}).get("metrics", {}).items()
                if values["is_degraded"]
            ]
            performance = Verdict("performance", "drift", "Performance drift", ", ".join(worse))
        else:
            performance = Verdict("performance", "no-drift", "No performance drift")
        verdicts = [data, predicted, performance]
        if self.multivariate:
            verdicts.append(self.multivariate_verdict)
        if self.groups:
            verdicts.append(self.groups_verdict)
        return verdicts

    @property
    def drifted_multivariate(self) -> list[dict]:
        """The multivariate tests (``MultivariateResult.to_dict``) that found drift."""
        return [test for test in self.multivariate or [] if test.get("status") == "drift"]

    @property
    def multivariate_verdict(self) -> Verdict:
        """The multivariate tests' verdict, its own badge (issue 11): drift when any test asked
        found drift. A drift raises the alert (``is_breach``) but does not count toward the column
        share or the dataset verdict: the tests see the rows as a whole, not a column."""
        tests = self.multivariate or []
        drifted = [test["test"] for test in self.drifted_multivariate]
        if drifted:
            return Verdict("multivariate", "drift", "Multivariate drift", ", ".join(drifted))
        if any(test.get("status") == "ok" for test in tests):
            return Verdict("multivariate", "no-drift", "No multivariate drift")
        return Verdict("multivariate", "not-measured", "Multivariate drift not measured")

    @property
    def drifted_groups(self) -> list[dict]:
        """The windows and segments whose own dataset verdict is drift (``GroupResult.to_dict``)."""
        groups = self.groups or {}
        listed = [
            *((groups.get("windows") or {}).get("windows") or []),
            *((groups.get("segments") or {}).get("segments") or []),
        ]
        return [group for group in listed if group.get("status") == "drift"]

    @property
    def groups_verdict(self) -> Verdict:
        """The windows' and segments' verdict (issue 11), its own badge: "drift" when a group
        drifted and the check raises its alert on groups (``alert_on_groups``), else a warning
        that is shown and kept in history without an alert. The dataset verdict stays the whole
        window's."""
        drifted = self.drifted_groups
        if drifted:
            names = ", ".join(group["label"] for group in drifted[:5])
            more = f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""
            status = "drift" if self.groups.get("alert_on_groups") else "warning"
            return Verdict("groups", status, "Drift in windows or segments", f"{names}{more}")
        return Verdict("groups", "no-drift", "No drift in windows or segments")

    @property
    def breach_severity(self) -> str:
        """The severity of the alert this check raises when it breaches (``is_breach``): the
        monitor's severity, so monitor, check and alert agree (issue 14); a check run by hand, with
        no monitor, is critical when the dataset or its performance drifted, otherwise (drifted
        columns short of the share, prediction or multivariate drift) a warning."""
        if self.monitor is not None:
            return self.monitor.severity
        if self.is_dataset_drift or self.is_performance_drift:
            return Severity.CRITICAL
        return Severity.WARNING

    @property
    def breach_severity_label(self) -> str:
        """``breach_severity`` as its alert's badge says it ("Critical"), not its stored value."""
        return str(Severity(self.breach_severity).label)

    @property
    def is_breach(self) -> bool:
        """Whether this finished check raises an alert: a drifted column, prediction or metric, or
        a multivariate test that found drift, or a drifted window or segment when the check asked
        for that (``alert_on_groups``) (issue 11)."""
        return bool(
            self.drifted_count
            or (self.prediction or {}).get("is_drifted")
            or self.is_performance_drift
            or self.drifted_multivariate
            or ((self.groups or {}).get("alert_on_groups") and self.drifted_groups)
        )

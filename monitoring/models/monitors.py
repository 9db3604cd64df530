"""Monitors: what to check for one model version, where the data comes from, how often, whom to tell."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from governance.models import Dataset, DatasetVersion, ModelVersion, Team
from governance.permissions import RestrictedQuerySet
from monitoring.models.rules import DRIFT_SHARE_IN_RANGE, Severity, drift_share_valid, in_choices

# (field, lowest, highest, unit) of a monitor's integer settings. The upper bounds keep every value
# inside what timedelta and beat's schedules can represent: a 10**18-minute schedule or reopen
# window raised OverflowError in beat and in every check.
# A monitor's settable fields, the one list (issue 8): the actions accept exactly these, the API
# serializer exposes them.
MONITOR_FIELDS = (
    "name",
    "reference_dataset_version",
    "reference_where",
    "source",
    "current_dataset",
    "window_versions",
    "served_hours",
    "columns",
    "methods",
    "thresholds",
    "drift_share",
    "min_sample_size",
    "column_kinds",
    "weights",
    "multiple_testing",
    "top_k",
    "multivariate",
    "time_window",
    "segment_by",
    "alert_on_groups",
    "make_report",
    "check_predictions",
    "check_performance",
    "performance_tolerance",
    "performance_test",
    "performance_alpha",
    "performance_min_effect",
    "label_key",
    "severity",
    "runbook_url",
    "escalation_policy",
    "schedule_minutes",
    "auto_resolve_after",
    "reopen_within_hours",
    "retrain_on_drift",
    "retrain_where",
)

# The settable fields that are relations (audited as ids).
MONITOR_RELATIONS = frozenset({"reference_dataset_version", "current_dataset", "escalation_policy"})

MONITOR_BOUNDS = (
    ("window_versions", 1, 1000, "dataset versions"),
    ("served_hours", 1, 366 * 24, "hours"),
    ("schedule_minutes", 1, 366 * 24 * 60, "minutes"),
    ("reopen_within_hours", 0, 366 * 24, "hours"),
    ("auto_resolve_after", 0, 10_000, "clean checks"),
    ("min_sample_size", 1, 1_000_000_000, "rows"),
    ("top_k", 1, 1000, "values"),
)


PERFORMANCE_TESTS = ("bootstrap", "tolerance")


def performance_test_errors(monitor: Monitor) -> dict[str, str]:
    """The performance test's settings that are out of range, field -> message."""
    errors = {}
    if monitor.performance_test not in PERFORMANCE_TESTS:
        errors["performance_test"] = f"must be one of {', '.join(PERFORMANCE_TESTS)}"
    if not 0 < monitor.performance_alpha < 0.5:
        errors["performance_alpha"] = "must be in (0, 0.5)"
    if not 0 <= monitor.performance_min_effect < 1:
        errors["performance_min_effect"] = "must be in [0, 1)"
    return errors


class CurrentSource(models.TextChoices):
    PREDICTIONS = "predictions", "The model version's inference outputs"
    DATASET = "dataset", "Uploaded batches of a dataset"
    # Issue 17: the rows online prediction logged (runners.Prediction) in the last served_hours.
    SERVED = "served", "Online predictions logged in the last hours"


# Sources that read no dataset of their own: the model version's outputs.
MODEL_OUTPUT_SOURCES = (CurrentSource.PREDICTIONS, CurrentSource.SERVED)


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
    served_hours = models.PositiveIntegerField(
        default=24, help_text="Source served: a check reads the predictions logged this many hours back."
    )
    columns = models.JSONField(default=list, blank=True)
    methods = models.JSONField(default=dict, blank=True, help_text="Column -> engine method.")
    thresholds = models.JSONField(default=dict, blank=True, help_text="Column -> threshold.")
    drift_share = models.FloatField(default=0.5)
    min_sample_size = models.PositiveIntegerField(default=2000)
    # Column rules (issue 11, monitoring.engine.check): kinds and weights per column, multiple-testing
    # control, and how many values of a high-cardinality column are compared.
    column_kinds = models.JSONField(
        default=dict, blank=True, help_text='Column -> "categorical" or "numeric" (overrides the rule).'
    )
    weights = models.JSONField(default=dict, blank=True, help_text="Column -> weight in the dataset share.")
    multiple_testing = models.CharField(
        max_length=8, default="none", help_text='"bh": Benjamini-Hochberg on the p-value tests.'
    )
    top_k = models.PositiveSmallIntegerField(
        default=50, help_text="Values a high-cardinality column is compared on, plus one 'other'."
    )
    multivariate = models.JSONField(
        default=list,
        blank=True,
        help_text='Multivariate drift tests to run beside the columns: "domain_classifier", "pca".',
    )
    # Windows and segments (issue 11, monitoring.engine.windows): verdicts per group beside the
    # whole window's; {} asks for none.
    time_window = models.JSONField(
        default=dict,
        blank=True,
        help_text='Windows of a timestamp column, e.g. {"column": "dteday", "every": "month"} '
        '(every: hour, day, week, month; "rolling": n buckets; "max_windows").',
    )
    segment_by = models.JSONField(
        default=dict,
        blank=True,
        help_text='Segments of a categorical column, e.g. {"column": "season", "top": 10}.',
    )
    alert_on_groups = models.BooleanField(
        default=False, help_text="A drifted window or segment raises the alert (default: shown only)."
    )
    make_report = models.BooleanField(
        default=True, help_text="Build the evidently report after each check (a separate task)."
    )
    check_predictions = models.BooleanField(default=True)
    check_performance = models.BooleanField(default=True)
    performance_tolerance = models.FloatField(
        default=0.1, help_text="Relative worsening of a metric against its baseline that counts as drift."
    )
    # Issue 11: performance drift by a bootstrap confidence interval of the metric change (the
    # default of new monitors; monitors made before keep "tolerance", the flat relative worsening).
    performance_test = models.CharField(
        max_length=16,
        default="bootstrap",
        help_text='"bootstrap": drift when the metric change\'s confidence interval excludes zero on the bad '
        'side; "tolerance": when worse than performance_tolerance.',
    )
    performance_alpha = models.FloatField(
        default=0.05, help_text="Bootstrap: the one-sided level of the test (a 1 - 2 alpha interval)."
    )
    performance_min_effect = models.FloatField(
        default=0.0, help_text="Bootstrap: the smallest relative worsening that counts, besides significance."
    )
    label_key = models.CharField(
        max_length=255,
        blank=True,
        help_text="Late labels of batch outputs: the column whose value a label names (served rows: "
        "the prediction id).",
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
    # What an audit event records of a monitor: its settings (relations by id), where it runs, and
    # whether it is active; derived from MONITOR_FIELDS so the two lists cannot drift apart.
    audit_fields = (
        "model_version_id",
        *(f"{name}_id" if name in MONITOR_RELATIONS else name for name in MONITOR_FIELDS),
        "is_active",
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
                | Q(source__in=MODEL_OUTPUT_SOURCES, current_dataset__isnull=True),
                name="monitor_source_matches_current_dataset",
            ),
            in_choices("severity", Severity, "monitor_severity_valid"),
            models.CheckConstraint(
                condition=Q(performance_test__in=PERFORMANCE_TESTS), name="monitor_performance_test_valid"
            ),
            models.CheckConstraint(
                condition=Q(performance_alpha__gt=0, performance_alpha__lt=0.5)
                & Q(performance_min_effect__gte=0, performance_min_effect__lt=1),
                name="monitor_performance_alpha_and_effect_in_range",
            ),
            models.CheckConstraint(
                condition=Q(multiple_testing__in=("none", "bh")), name="monitor_multiple_testing_valid"
            ),
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
        if not drift_share_valid(self.drift_share):
            errors["drift_share"] = f"must be in (0, 1], got {self.drift_share}"
        if not 0 <= self.performance_tolerance < 1:
            errors["performance_tolerance"] = "must be in [0, 1)"
        errors.update(performance_test_errors(self))
        if self.source == CurrentSource.DATASET and self.current_dataset_id is None:
            errors["current_dataset"] = "choose the dataset whose uploaded versions are checked"
        elif self.source in MODEL_OUTPUT_SOURCES and self.current_dataset_id is not None:
            errors["current_dataset"] = "a monitor of the model's predictions reads no dataset"
        if errors:
            raise ValidationError(errors)

    @property
    def dedup_key(self) -> str:
        return f"monitor:{self.pk}"

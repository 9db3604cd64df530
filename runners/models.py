"""Jobs: the database row is the source of truth for a unit of work on a worker."""

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from governance.models import DatasetVersion, ModelVersion, RegisteredModel, Team
from governance.permissions import RestrictedQuerySet


class JobKind(models.TextChoices):
    TRAIN = "train", "Training"
    INFER = "infer", "Inference"


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class Delivered(models.Model):
    """The delivery and liveness fields of a row ``runners.lifecycle.Lifecycle`` runs (a Job, a
    DriftCheck), defined once: the row is the truth, Celery only delivers (issue 16). Telemetry,
    not audited changes."""

    heartbeat_at = models.DateTimeField(null=True, blank=True)
    dispatch_count = models.PositiveIntegerField(default=0, help_text="Times its task reached the broker.")
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="Last time its task reached the broker."
    )
    dispatch_error = models.TextField(blank=True, help_text="Why the last send to the broker failed.")
    attempt = models.PositiveIntegerField(default=0, help_text="Claims so far; fences a run's success.")

    class Meta:
        abstract = True


class Job(Delivered):
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="jobs")
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    spec = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0, help_text="Fraction done, 0 to 1.")
    log_tail = models.TextField(blank=True)
    metrics = models.JSONField(default=dict)
    history = models.JSONField(default=list, help_text="Per-epoch training/validation loss and metrics.")
    error = models.TextField(blank=True)
    device = models.CharField(max_length=32, blank=True)
    is_cancel_requested = models.BooleanField(default=False)
    # Inputs.
    dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="input_of_jobs"
    )
    registered_model = models.ForeignKey(
        RegisteredModel, null=True, blank=True, on_delete=models.PROTECT, related_name="training_jobs"
    )
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="inference_jobs"
    )
    # Outputs.
    output_model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    output_dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    celery_task_id = models.CharField(max_length=255, blank=True)
    # Limits and accounting (issue 16): telemetry written by the worker, summed over attempts
    # (peaks: the largest). Null until measured; GPU figures stay null without a GPU.
    limits = models.JSONField(default=dict, help_text="The limits the last attempt ran under.")
    wall_time_s = models.FloatField(null=True, blank=True, help_text="Seconds the compute ran.")
    cpu_time_s = models.FloatField(null=True, blank=True, help_text="User + system CPU seconds.")
    peak_rss_mb = models.FloatField(null=True, blank=True, help_text="Peak resident memory, MB.")
    rows_read = models.BigIntegerField(null=True, blank=True)
    bytes_read = models.BigIntegerField(null=True, blank=True)
    gpu_time_s = models.FloatField(null=True, blank=True)
    peak_gpu_mem_mb = models.FloatField(null=True, blank=True)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = (
        "kind",
        "state",
        "spec",
        "dataset_version_id",
        "registered_model_id",
        "model_version_id",
        "output_model_version_id",
        "output_dataset_version_id",
        "error",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        # What one row must satisfy, whoever writes it (issue 8); do_submit_job gives the readable errors.
        constraints = [
            models.CheckConstraint(condition=models.Q(state__in=JobState.values), name="job_state_valid"),
            models.CheckConstraint(condition=models.Q(kind__in=JobKind.values), name="job_kind_valid"),
            models.CheckConstraint(
                condition=models.Q(progress__gte=0.0, progress__lte=1.0), name="job_progress_fraction"
            ),
            models.CheckConstraint(
                condition=models.Q(kind=JobKind.INFER) | models.Q(registered_model__isnull=False),
                name="job_train_has_registered_model",
            ),
            models.CheckConstraint(
                condition=models.Q(kind=JobKind.TRAIN) | models.Q(model_version__isnull=False),
                name="job_infer_has_model_version",
            ),
            models.CheckConstraint(
                condition=models.Q(finished_at__isnull=True)
                | models.Q(state__in=[JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]),
                name="job_finished_only_when_terminal",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} job #{self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("job_detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

"""Jobs: the database row is the source of truth for a unit of work on a worker."""

import datetime
import zoneinfo

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from governance.models import DatasetVersion, ModelVersion, RegisteredModel, Team
from governance.permissions import RestrictedQuerySet


class JobKind(models.TextChoices):
    TRAIN = "train", "Training"
    INFER = "infer", "Inference"
    # A run an MLflow client logs to Steward (issue 9): it runs elsewhere, Steward records it.
    TRACKED = "tracked", "Tracked run"
    # A user's own code version run by a worker in a sandbox (issue 17): it logs through the
    # MLflow API with a token scoped to the job; training, data preparation, evaluation alike.
    CODE = "code", "Code run"
    # A model version scored on a dataset version (issue 15): the evaluation engine in the
    # worker, the model's predictions in the child; champion/challenger when an alias is held.
    EVALUATE = "evaluate", "Evaluation"


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    # Waiting for a person (issue 16): its team passed its budget; an owner releases it to queued.
    HELD = "held", "Held"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class JobBackend(models.TextChoices):
    """Where a job's compute runs (issue 16); the job row, logs, cancel and accounting stay Steward's."""

    LOCAL = "local", "Local worker"  # a child process of the Celery worker (runners.launcher)
    RAY = "ray", "Ray cluster"  # handed to a Ray cluster through the Ray Jobs API
    KUBERNETES = "kubernetes", "Kubernetes"  # a Job / PyTorchJob manifest (documented, not run here)


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
    # Inputs (a tracked run's inputs are its RunInput rows, so it may have no dataset version).
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="input_of_jobs"
    )
    registered_model = models.ForeignKey(
        RegisteredModel, null=True, blank=True, on_delete=models.PROTECT, related_name="training_jobs"
    )
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="inference_jobs"
    )
    # A code run's code (issue 17): its version and the MLproject entry point it runs; its
    # dataset versions (inputs and, for data preparation, outputs) are JobDataset rows.
    code_version = models.ForeignKey(
        "CodeVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    entry_point = models.CharField(max_length=100, blank=True)
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
    # A tracked run's MLflow identity and data (issue 9); empty for Steward's own jobs.
    experiment = models.ForeignKey(
        "Experiment", null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    run_name = models.CharField(max_length=250, blank=True)
    params = models.JSONField(default=dict, help_text="MLflow parameters: key -> value, set once.")
    tags = models.JSONField(default=dict, help_text="MLflow run tags: key -> value.")
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="MLflow's deleted lifecycle stage.")
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
    # Resources and scheduling (issue 16): the class picks the queue (and so the workers), the
    # price and the backend; see STEWARD_RESOURCE_CLASSES.
    resource_class = models.CharField(max_length=32, default="cpu")
    gpus = models.PositiveSmallIntegerField(default=0, help_text="GPUs the job asked for.")
    backend = models.CharField(max_length=16, choices=JobBackend.choices, default=JobBackend.LOCAL)
    backend_job_id = models.CharField(
        max_length=255, blank=True, help_text="The backend's id of the run (a Ray submission id)."
    )
    not_before = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="Not sent to a worker before this time (a window)."
    )
    schedule = models.ForeignKey(
        "JobSchedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    cost = models.FloatField(
        null=True, blank=True, help_text="Price of the resources used, STEWARD_CURRENCY."
    )
    hold_reason = models.TextField(blank=True, help_text="Why the job is held; empty unless held.")

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
        "experiment_id",
        "run_name",
        "deleted_at",
        "resource_class",
        "gpus",
        "backend",
        "not_before",
        "schedule_id",
        "hold_reason",
        "code_version_id",
        "entry_point",
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
                condition=~models.Q(kind=JobKind.TRAIN) | models.Q(registered_model__isnull=False),
                name="job_train_has_registered_model",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind=JobKind.INFER) | models.Q(model_version__isnull=False),
                name="job_infer_has_model_version",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind=JobKind.EVALUATE) | models.Q(model_version__isnull=False),
                name="job_evaluate_has_model_version",
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=[JobKind.TRACKED, JobKind.CODE])
                | models.Q(dataset_version__isnull=False),
                name="job_train_infer_has_dataset_version",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind=JobKind.CODE) | models.Q(code_version__isnull=False),
                name="job_code_has_code_version",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind=JobKind.TRACKED) | models.Q(experiment__isnull=False),
                name="job_tracked_has_experiment",
            ),
            models.CheckConstraint(
                condition=models.Q(finished_at__isnull=True)
                | models.Q(state__in=[JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]),
                name="job_finished_only_when_terminal",
            ),
            models.CheckConstraint(
                condition=models.Q(backend__in=JobBackend.values), name="job_backend_valid"
            ),
            models.CheckConstraint(
                condition=~models.Q(state=JobState.HELD) | ~models.Q(hold_reason=""),
                name="job_held_has_reason",
            ),
        ]

    # lineage.nodes.visible_nodes labels hundreds of nodes from these columns, without instances.
    lineage_label_columns = ("kind", "run_name", "pk")
    lineage_url_name = "job_detail"

    def __str__(self) -> str:
        return self.lineage_label(self.kind, self.run_name, self.pk)

    def get_absolute_url(self) -> str:
        return reverse(self.lineage_url_name, args=[self.pk])

    @staticmethod
    def lineage_label(kind: str, run_name: str, pk: int) -> str:
        if kind == JobKind.TRACKED:
            # A tracked run's MLflow run id is its job id (``mlflow_run_id``).
            return f"Tracked run {run_name or pk} (#{pk})"
        return f"{JobKind(kind).label} job #{pk}"

    @property
    def mlflow_run_id(self) -> str:
        """A tracked run's MLflow run id: its job id, so the registry's ``run_id`` (the version's
        ``source_job_id``) and the tracking API name the same run."""
        return str(self.pk)

    @property
    def is_finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def waits_for_window_until(self) -> datetime.datetime | None:
        """When a queued job's start window opens, in the window's timezone; None once it may start."""
        if self.state != JobState.QUEUED or self.not_before is None or self.not_before <= timezone.now():
            return None
        zone = (self.spec.get("start_window") or {}).get("timezone", "UTC")
        try:
            return self.not_before.astimezone(zoneinfo.ZoneInfo(zone))
        except zoneinfo.ZoneInfoNotFoundError:  # a zone the system's tz database has since lost
            return self.not_before

    @property
    def state_detail(self) -> str:
        """A line saying why a held or queued job is not running yet, for its page, the API and
        the message after submitting; else empty."""
        if self.state == JobState.HELD:
            return self.hold_reason  # "held: <why>"
        if self.state != JobState.QUEUED or self.kind == JobKind.TRACKED:
            return ""
        until = self.waits_for_window_until
        if until is not None:
            return f"waits for its window until {until.isoformat()}"
        queue = settings.STEWARD_RESOURCE_CLASSES.get(self.resource_class, {}).get("queue", "?")
        # A class whose workers are not started leaves its jobs queued: say which queue to serve.
        return (
            f"waits for a worker of resource class {self.resource_class!r} "
            f"(Celery queue {queue!r}: celery -A config worker -Q {queue})"
        )

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class LifecycleStage(models.TextChoices):
    ACTIVE = "active", "Active"
    DELETED = "deleted", "Deleted"


class Experiment(models.Model):
    """An MLflow experiment: a team's named group of tracked runs (issue 9)."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="experiments")
    name = models.CharField(max_length=500)
    # governance.names.name_key(name): unique per team, like datasets and models.
    name_key = models.CharField(max_length=500)
    artifact_location = models.CharField(max_length=1000, blank=True)
    tags = models.JSONField(default=dict)
    lifecycle_stage = models.CharField(
        max_length=16, choices=LifecycleStage.choices, default=LifecycleStage.ACTIVE
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="experiments"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("team_id", "name", "artifact_location", "tags", "lifecycle_stage")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name_key"], name="unique_experiment_name_per_team"),
            models.CheckConstraint(
                condition=models.Q(lifecycle_stage__in=LifecycleStage.values),
                name="experiment_lifecycle_stage_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class RunMetric(models.Model):
    """One point of a tracked run's metric history (MLflow's ``Metric``). ``value`` NULL is NaN
    (SQLite cannot store NaN; MLflow allows it); ``Job.metrics`` keeps each key's latest value.
    ``dataset_name``/``dataset_digest``: the dataset MLflow 3 logged the point against
    (``mlflow.log_metric(..., dataset=...)``, every metric of ``mlflow.evaluate``), blank when
    none; they make a self-reported evaluation's metrics (issue 15)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="metric_history")
    key = models.CharField(max_length=250)
    value = models.FloatField(null=True)
    timestamp_ms = models.BigIntegerField()
    step = models.BigIntegerField(default=0)
    dataset_name = models.CharField(max_length=500, blank=True, default="")
    dataset_digest = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["step", "timestamp_ms", "id"]
        indexes = [models.Index(fields=["job", "key", "step", "timestamp_ms"], name="run_metric_history_idx")]

    def __str__(self) -> str:
        return f"{self.key}={self.value} @ step {self.step}"


class ExternalDataset(models.Model):
    """A dataset a tracked run read that matches no Steward dataset version (by digest): known
    only by what the MLflow client said about it. A lineage node (``external_dataset``)."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="external_datasets")
    name = models.CharField(max_length=500)
    digest = models.CharField(max_length=64)
    source_type = models.CharField(max_length=64, blank=True)
    source = models.TextField(blank=True)
    schema = models.TextField(blank=True)
    first_run = models.ForeignKey(Job, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name", "digest"], name="unique_external_dataset"),
        ]

    # lineage.nodes.visible_nodes labels hundreds of nodes from these columns, without instances.
    lineage_label_columns = ("name", "digest")
    # No page of its own: the run that first read it says where it came from.
    lineage_url_name, lineage_url_column = "job_detail", "first_run_id"

    def __str__(self) -> str:
        return self.lineage_label(self.name, self.digest)

    def get_absolute_url(self) -> str:
        return reverse(self.lineage_url_name, args=[self.first_run_id])

    @staticmethod
    def lineage_label(name: str, digest: str) -> str:
        return f"{name} ({digest}, external)"


class RunInput(models.Model):
    """A dataset a tracked run logged as input (``mlflow.log_input``), linked to the Steward
    dataset version with that digest (sha256) when one is visible to the run's team, else to an
    external dataset."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="run_inputs")
    name = models.CharField(max_length=500)
    digest = models.CharField(max_length=64)
    source_type = models.CharField(max_length=64, blank=True)
    source = models.TextField(blank=True)
    schema = models.TextField(blank=True)
    profile = models.TextField(blank=True)
    context = models.CharField(max_length=250, blank=True)
    tags = models.JSONField(default=dict)
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    external_dataset = models.ForeignKey(
        ExternalDataset, null=True, blank=True, on_delete=models.PROTECT, related_name="inputs"
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "name", "digest", "context"], name="unique_run_input"),
            models.CheckConstraint(
                condition=models.Q(dataset_version__isnull=True) ^ models.Q(external_dataset__isnull=True),
                name="run_input_links_one_dataset",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.digest})"


class LoggedModelStatus(models.TextChoices):
    # MLflow's LoggedModelStatus names (mlflow/protos/service.proto).
    PENDING = "LOGGED_MODEL_PENDING", "Pending"
    READY = "LOGGED_MODEL_READY", "Ready"
    UPLOAD_FAILED = "LOGGED_MODEL_UPLOAD_FAILED", "Upload failed"


class LoggedModel(models.Model):
    """An MLflow 3 logged model (``mlflow.<flavor>.log_model``): artifacts a run produced, under
    ``artifact_location``, before (and apart from) any registered model version."""

    id = models.CharField(primary_key=True, max_length=40)  # "m-" + 32 hex digits
    experiment = models.ForeignKey(Experiment, on_delete=models.PROTECT, related_name="logged_models")
    source_run = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.PROTECT, related_name="logged_models"
    )
    name = models.CharField(max_length=500)
    model_type = models.CharField(max_length=500, blank=True)
    status = models.CharField(
        max_length=32, choices=LoggedModelStatus.choices, default=LoggedModelStatus.PENDING
    )
    status_message = models.TextField(blank=True)
    artifact_location = models.CharField(max_length=1000)
    params = models.JSONField(default=dict)
    tags = models.JSONField(default=dict)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "experiment__team"
    audit_fields = ("experiment_id", "source_run_id", "name", "model_type", "status", "artifact_location")

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=LoggedModelStatus.values), name="logged_model_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class RunArtifact(models.Model):
    """One file of a tracked run's or a logged model's artifacts (issue 9), by its MLflow path
    (``experiments/<id>/<run id>/artifacts/<file>``, ``experiments/<id>/models/<m-...>/
    artifacts/<file>``), and the stored object that holds its bytes (issue 12: content-addressed
    through ``governance.storage``, so encrypted and in object storage when those are set).
    Directories are the paths' prefixes, as in an object store. ``runners.run_artifacts``."""

    path = models.CharField(max_length=1000, unique=True)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    key = models.CharField(max_length=500, help_text="The stored object's key (runs/<team>/ab/<sha256>).")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    uploaded_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"

    class Meta:
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path


class JobSchedule(models.Model):
    """A recurring job (issue 16): retraining, batch scoring or evaluation (issue 15) on a cron
    schedule. Each firing submits a job through the same action as a person would (RBAC, limits,
    budget, audit), on the dataset's latest version at that time (an evaluation: its newest
    labelled version); ``periodic_task`` is its django-celery-beat entry. An evaluation names a
    model version, or a model and ``model_alias`` resolved at each firing (whoever holds
    ``production`` then)."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="job_schedules")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    dataset = models.ForeignKey("governance.Dataset", on_delete=models.PROTECT, related_name="job_schedules")
    registered_model = models.ForeignKey(
        RegisteredModel, null=True, blank=True, on_delete=models.PROTECT, related_name="job_schedules"
    )
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="job_schedules"
    )
    # Evaluation only: the alias of ``registered_model`` whose holder each firing evaluates.
    model_alias = models.CharField(max_length=255, blank=True, default="")
    spec = models.JSONField(default=dict)
    cron = models.CharField(max_length=100, help_text="Five cron fields: minute hour day month weekday.")
    cron_timezone = models.CharField(max_length=64, default="UTC")
    is_enabled = models.BooleanField(default=True)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The last firing and what came of it (a job submitted, or why none was): telemetry for its
    # page; each firing's audit event is the record.
    last_fired_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = (
        "name",
        "kind",
        "dataset_id",
        "registered_model_id",
        "model_version_id",
        "model_alias",
        "spec",
        "cron",
        "cron_timezone",
        "is_enabled",
    )

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="unique_job_schedule_name_per_team"),
            models.CheckConstraint(
                condition=models.Q(kind__in=[JobKind.TRAIN, JobKind.INFER, JobKind.EVALUATE]),
                name="job_schedule_kind_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(model_alias="") | models.Q(kind=JobKind.EVALUATE),
                name="job_schedule_alias_only_for_evaluation",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("job_schedule_detail", args=[self.pk])


class Budget(models.Model):
    """A team's monthly spend limit on jobs (issue 16), in STEWARD_CURRENCY. Passing it alerts the
    team's owners through the escalation policy and, when ``holds_jobs``, holds new jobs until an
    owner releases them. ``breached_month``: the first day of the month it was last passed in
    (so the alert is raised once a month)."""

    team = models.OneToOneField(Team, on_delete=models.PROTECT, related_name="budget")
    monthly_limit = models.DecimalField(max_digits=14, decimal_places=2)
    holds_jobs = models.BooleanField(default=True)
    breached_month = models.DateField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("team_id", "monthly_limit", "holds_jobs")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(monthly_limit__gte=0), name="budget_limit_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"Budget of {self.team}"


class CodeProject(models.Model):
    """A team's named, versioned body of code (issue 17): its versions are what code runs run.
    Like a dataset to its versions; MLflow Projects' ``MLproject`` file declares entry points."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="code_projects")
    name = models.CharField(max_length=200)
    # governance.names.name_key(name): unique per team, like datasets and models.
    name_key = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("team_id", "name", "description")

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name_key"], name="unique_code_project_name_per_team"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("code_project_detail", args=[self.pk])


class CodeSource(models.TextChoices):
    UPLOAD = "upload", "Uploaded archive"
    DIRECTORY = "directory", "Directory under an allowed root"
    TEMPLATE = "template", "Steward template"


class CodeVersion(models.Model):
    """An immutable snapshot of a code project (issue 17): a canonical archive of its files in
    the artifact store (``file``, content-addressed by ``sha256``), the file manifest, and the
    entry points and declared parameters read from its ``MLproject`` file. A lineage node
    (``code_version``): code version + dataset versions -> job -> model version."""

    project = models.ForeignKey(CodeProject, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    file = models.CharField(max_length=500, help_text="The archive, relative to the artifact root.")
    size_bytes = models.BigIntegerField()
    source = models.CharField(max_length=16, choices=CodeSource.choices, default=CodeSource.UPLOAD)
    source_path = models.CharField(max_length=1000, blank=True, help_text="The directory it was read from.")
    # [{"path", "size", "sha256"}] sorted by path.
    files = models.JSONField(default=list)
    # {name: {"command": str, "parameters": {name: {"type", "default"}}}} from MLproject.
    entry_points = models.JSONField(default=dict)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "project__team"
    audit_fields = ("project_id", "version", "sha256", "source", "source_path", "entry_points")

    class Meta:
        ordering = ["project__name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="unique_code_version_number"),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="code_version_number_positive"),
            models.CheckConstraint(
                condition=models.Q(source__in=CodeSource.values), name="code_version_source_valid"
            ),
        ]

    # lineage.nodes.visible_nodes labels hundreds of nodes from these columns, without instances.
    lineage_label_columns = ("project__name", "version")
    lineage_url_name = "code_version_detail"

    def __str__(self) -> str:
        return self.lineage_label(self.project.name, self.version)

    def get_absolute_url(self) -> str:
        return reverse(self.lineage_url_name, args=[self.pk])

    @staticmethod
    def lineage_label(project_name: str, version: int) -> str:
        return f"{project_name} v{version}"

    @property
    def path(self):
        """A local, readable path of the archive (``governance.storage.local_path``)."""
        from governance import storage

        return storage.local_path(self.file)


class JobDatasetRole(models.TextChoices):
    INPUT = "input", "Input"
    OUTPUT = "output", "Output"


class JobDataset(models.Model):
    """A dataset version a code run reads (given to it as a local file under ``name``) or, for
    data preparation, one it produced (registered when it succeeds) (issue 17)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="datasets")
    role = models.CharField(max_length=8, choices=JobDatasetRole.choices)
    name = models.CharField(max_length=100, help_text="The input's or output's name in the run.")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["role", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "role", "name"], name="unique_job_dataset_name"),
            models.CheckConstraint(
                condition=models.Q(role__in=JobDatasetRole.values), name="job_dataset_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.name}: {self.dataset_version}"


class JobLogChunk(models.Model):
    """A piece of a job's output, in order (issue 17): the whole log, not a tail, bounded by
    ``STEWARD_JOB_LOG_MAX_BYTES``; the job page follows it by ``seq``. Telemetry, not audited."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="log_chunks")
    seq = models.PositiveIntegerField(help_text="Order within the job, from 1.")
    attempt = models.PositiveIntegerField(default=0)
    stream = models.CharField(max_length=8, default="stdout", help_text="stdout, stderr or steward.")
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="unique_job_log_chunk_seq")]

    def __str__(self) -> str:
        return f"log of job #{self.job_id} [{self.seq}]"


class ServingPolicy(models.Model):
    """How predict requests to ``registered_model@alias`` are served (issue 17): the alias's
    version answers; ``canary_version`` answers ``canary_percent`` % of requests instead;
    ``shadow_version`` scores every request too, logged and never returned. Changed through an
    audited action."""

    registered_model = models.ForeignKey(
        RegisteredModel, on_delete=models.PROTECT, related_name="serving_policies"
    )
    alias = models.CharField(max_length=255)
    canary_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    canary_percent = models.PositiveSmallIntegerField(default=0)
    shadow_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "registered_model__team"
    audit_fields = (
        "registered_model_id",
        "alias",
        "canary_version_id",
        "canary_percent",
        "shadow_version_id",
    )

    class Meta:
        ordering = ["registered_model", "alias"]
        constraints = [
            models.UniqueConstraint(
                fields=["registered_model", "alias"], name="one_serving_policy_per_alias"
            ),
            models.CheckConstraint(
                condition=models.Q(canary_percent__lte=100), name="serving_canary_percent_at_most_100"
            ),
            models.CheckConstraint(
                condition=models.Q(canary_percent=0) | models.Q(canary_version__isnull=False),
                name="serving_canary_percent_needs_version",
            ),
        ]

    def __str__(self) -> str:
        return f"serving of {self.registered_model}@{self.alias}"


class PredictionRole(models.TextChoices):
    SERVED = "served", "Served (returned)"
    SHADOW = "shadow", "Shadow (logged only)"


class Prediction(models.Model):
    """One row scored by online prediction (issue 17), logged when sampled
    (``STEWARD_PREDICTION_LOG_SAMPLE``): monitors read them as current data, and late labels join
    on ``prediction_id``. A shadow version's score of the same row has the same id, role shadow."""

    prediction_id = models.UUIDField(db_index=True)
    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="+")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    alias = models.CharField(max_length=255, blank=True, help_text="Empty when asked by version.")
    role = models.CharField(max_length=8, choices=PredictionRole.choices, default=PredictionRole.SERVED)
    is_canary = models.BooleanField(default=False)
    features = models.JSONField(help_text="The row as sent: column -> value.")
    output = models.JSONField(help_text="The prediction.")
    confidence = models.FloatField(
        null=True, blank=True, help_text="A classifier's probability of the predicted class (issue 11)."
    )
    latency_ms = models.FloatField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "registered_model__team"

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["model_version", "created_at"], name="prediction_version_time_idx")]
        constraints = [
            models.UniqueConstraint(fields=["prediction_id", "role"], name="unique_prediction_id_role"),
            models.CheckConstraint(
                condition=models.Q(role__in=PredictionRole.values), name="prediction_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"prediction {self.prediction_id} by {self.model_version}"


# External OpenLineage jobs, runs and datasets (issue 10), in their own module; imported here so
# the runners app registers them.
from runners.openlineage.models import (  # noqa: E402, F401
    OpenLineageDataset,
    OpenLineageDatasetUse,
    OpenLineageEvent,
    OpenLineageJob,
    OpenLineageRun,
)

"""External OpenLineage jobs, runs and datasets, and the raw events they were built from.

Imported by ``runners.models`` so Django registers them in the runners app. Each of the three
node kinds is a lineage node (``lineage.nodes.NODE_MODELS``): ``openlineage_job``,
``openlineage_run``, ``openlineage_dataset``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from governance.models import DatasetVersion, Team
from governance.permissions import RestrictedQuerySet


class RunState(models.TextChoices):
    """OpenLineage's eventType vocabulary; "" until an event with a state-bearing type arrives."""

    NONE = "", "No state yet"
    START = "START", "Started"
    RUNNING = "RUNNING", "Running"
    COMPLETE = "COMPLETE", "Completed"
    ABORT = "ABORT", "Aborted"
    FAIL = "FAIL", "Failed"


TERMINAL_RUN_STATES = frozenset({RunState.COMPLETE, RunState.ABORT, RunState.FAIL})


class OpenLineageJob(models.Model):
    """A job another system runs (an Airflow task, a Spark app, a dbt model), by namespace + name."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="openlineage_jobs")
    namespace = models.CharField(max_length=1000)
    name = models.CharField(max_length=1000)
    facets = models.JSONField(default=dict, help_text="Latest facet of each name, as sent.")
    facet_times = models.JSONField(default=dict, help_text="Event time of each held facet (ISO, UTC).")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("team_id", "namespace", "name")

    class Meta:
        ordering = ["namespace", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "namespace", "name"], name="unique_openlineage_job"),
        ]

    # lineage.nodes.visible_nodes labels hundreds of nodes from these columns, without instances.
    lineage_label_columns = ("namespace", "name")
    lineage_url_name = "openlineage_job_detail"

    def __str__(self) -> str:
        return self.lineage_label(self.namespace, self.name)

    def get_absolute_url(self) -> str:
        return reverse(self.lineage_url_name, args=[self.pk])

    @staticmethod
    def lineage_label(namespace: str, name: str) -> str:
        return f"{namespace}/{name}"


class OpenLineageRun(models.Model):
    """One run of an external job, accumulated from its events (issue 10's run semantics)."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="openlineage_runs")
    job = models.ForeignKey(OpenLineageJob, on_delete=models.PROTECT, related_name="runs")
    run_id = models.UUIDField()
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.NONE, blank=True)
    state_at = models.DateTimeField(
        null=True, blank=True, help_text="Event time of the event that set the state."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    facets = models.JSONField(default=dict)
    facet_times = models.JSONField(default=dict)
    reused_by = models.JSONField(
        default=list,
        blank=True,
        help_text="Other jobs that sent this runId ([{namespace, name, eventTime}]): flagged, not merged.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("team_id", "job_id", "run_id", "state", "state_at", "started_at", "ended_at")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "run_id"], name="unique_openlineage_run"),
            models.CheckConstraint(
                condition=models.Q(state__in=RunState.values), name="openlineage_run_state_valid"
            ),
        ]

    # lineage.nodes.visible_nodes labels hundreds of nodes from these columns, without instances.
    lineage_label_columns = ("run_id",)
    lineage_url_name = "openlineage_run_detail"

    def __str__(self) -> str:
        return self.lineage_label(self.run_id)

    def get_absolute_url(self) -> str:
        return reverse(self.lineage_url_name, args=[self.pk])

    @staticmethod
    def lineage_label(run_id) -> str:
        # No job name: lineage lists describe many runs at once, one query per node type.
        return f"run {str(run_id)[:8]}"


class OpenLineageDataset(models.Model):
    """A dataset named in events that matches no Steward dataset version (else the edge goes to
    that version): the external dataset node, with its latest facets (schema, columnLineage...)."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="openlineage_datasets")
    namespace = models.CharField(max_length=1000)
    name = models.CharField(max_length=1000)
    facets = models.JSONField(default=dict)
    facet_times = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"
    audit_fields = ("team_id", "namespace", "name")

    class Meta:
        ordering = ["namespace", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "namespace", "name"], name="unique_openlineage_dataset"),
        ]

    # lineage.nodes.visible_nodes labels hundreds of nodes from these columns, without instances.
    lineage_label_columns = ("namespace", "name")
    lineage_url_name = "openlineage_dataset_detail"

    def __str__(self) -> str:
        return self.lineage_label(self.namespace, self.name)

    def get_absolute_url(self) -> str:
        return reverse(self.lineage_url_name, args=[self.pk])

    @staticmethod
    def lineage_label(namespace: str, name: str) -> str:
        return f"{namespace}/{name}"

    @property
    def column_lineage(self) -> dict:
        return self.facets.get("columnLineage") or {}


class DatasetRole(models.TextChoices):
    INPUT = "input", "Input"
    OUTPUT = "output", "Output"


class OpenLineageDatasetUse(models.Model):
    """A dataset a run (or, for static lineage, a job) read or wrote: the external dataset or the
    Steward dataset version it matched, with the facets the event sent for it there (the
    column-lineage facet of an output is per run)."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    run = models.ForeignKey(OpenLineageRun, null=True, on_delete=models.CASCADE, related_name="datasets")
    job = models.ForeignKey(
        OpenLineageJob, null=True, on_delete=models.CASCADE, related_name="static_datasets"
    )
    role = models.CharField(max_length=8, choices=DatasetRole.choices)
    namespace = models.CharField(max_length=1000)
    name = models.CharField(max_length=1000)
    dataset = models.ForeignKey(OpenLineageDataset, null=True, on_delete=models.PROTECT, related_name="uses")
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, on_delete=models.PROTECT, related_name="openlineage_uses"
    )
    facets = models.JSONField(default=dict, help_text="Dataset facets plus input/output facets, as sent.")

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"

    class Meta:
        ordering = ["role", "namespace", "name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(run__isnull=False, job__isnull=True)
                | models.Q(run__isnull=True, job__isnull=False),
                name="openlineage_use_of_run_or_job",
            ),
            models.UniqueConstraint(
                # Not partial: ON CONFLICT needs a plain unique index; NULL run ids never clash.
                fields=["run", "role", "namespace", "name"],
                name="unique_openlineage_run_dataset",
            ),
            models.UniqueConstraint(
                fields=["job", "role", "namespace", "name"],
                name="unique_openlineage_job_dataset",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.namespace}/{self.name}"

    @property
    def column_lineage(self) -> dict:
        return self.facets.get("columnLineage") or {}


class OpenLineageEvent(models.Model):
    """Every accepted event as received (the log to replay from); the same body twice is one row,
    which is how a duplicate changes nothing."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="openlineage_events")
    received_at = models.DateTimeField(default=timezone.now)
    event_time = models.DateTimeField()
    kind = models.CharField(max_length=16)
    event_type = models.CharField(max_length=16, blank=True)
    run_id = models.UUIDField(null=True, blank=True)
    job_namespace = models.CharField(max_length=1000, blank=True)
    job_name = models.CharField(max_length=1000, blank=True)
    producer = models.TextField(blank=True)
    body = models.JSONField()
    body_sha256 = models.CharField(max_length=64)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="openlineage_events"
    )

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"

    class Meta:
        ordering = ["-event_time", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "body_sha256"], name="unique_openlineage_event_body"),
        ]
        indexes = [models.Index(fields=["team", "run_id"], name="openlineage_event_run_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.event_type or ''} {self.job_namespace}/{self.job_name} @ {self.event_time}"

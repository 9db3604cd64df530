"""Typed, directed edges between versioned things: data flows from ``source`` to ``target``."""

from django.db import models
from django.utils import timezone


class Relation(models.TextChoices):
    # OpenLineage's vocabulary: a run reads inputs and writes outputs.
    INPUT = "input", "Input of"
    OUTPUT = "output", "Output of"
    # A dataset version made from another without a run: a protected copy under a team's PII
    # policy (issue 12) is derived from the version it protects.
    DERIVED = "derived", "Derived into"


class LineageEdge(models.Model):
    source_type = models.CharField(max_length=32)
    source_id = models.PositiveBigIntegerField()
    target_type = models.CharField(max_length=32)
    target_id = models.PositiveBigIntegerField()
    relation = models.CharField(max_length=16, choices=Relation.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source_type", "source_id", "target_type", "target_id", "relation"],
                name="unique_lineage_edge",
            )
        ]
        indexes = [
            models.Index(fields=["source_type", "source_id"], name="lineage_source_idx"),
            models.Index(fields=["target_type", "target_id"], name="lineage_target_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.source_type}:{self.source_id} -[{self.relation}]-> {self.target_type}:{self.target_id}"


class OpenLineageEmitFailure(models.Model):
    """An OpenLineage event of Steward's own runs that could not be delivered after its retries
    (issue 10): kept with the reason, for a look and a resend; counted on ``/metrics``
    (``steward_openlineage_emit_failures_total``). Telemetry, not a governed object."""

    run_id = models.UUIDField(db_index=True)
    event_type = models.CharField(max_length=16)
    job_name = models.CharField(max_length=500)
    payload = models.JSONField(help_text="The RunTransition as sent to the task (emit.RunTransition).")
    error = models.TextField()
    failed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.event_type} of {self.job_name} ({self.run_id}) not delivered"

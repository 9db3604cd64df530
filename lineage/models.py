"""Typed, directed edges between versioned things: data flows from ``source`` to ``target``."""

from django.db import models
from django.utils import timezone


class Relation(models.TextChoices):
    # OpenLineage's vocabulary: a run reads inputs and writes outputs.
    INPUT = "input", "Input of"
    OUTPUT = "output", "Output of"


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

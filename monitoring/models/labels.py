"""Late labels (issue 11): the true outcome of a prediction, delivered after it was made.

A label names its prediction by the ``prediction_id`` online prediction answered
(``runners.models.Prediction``), or by the value of a key column a monitor declares
(``Monitor.label_key``) in batch inference outputs. Labels belong to the registered model: the
same row's label holds for every version that scored it. One row per (model, kind, key): a label
delivered again is a no-op, a corrected one replaces the value (``monitoring.actions.labels``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from governance.models import RegisteredModel, Team
from governance.permissions import RestrictedQuerySet


class LabelKind(models.TextChoices):
    PREDICTION_ID = "prediction_id", "Prediction id (online prediction)"
    KEY = "key", "Key column value (batch outputs)"


class PredictionLabel(models.Model):
    """The true outcome of one prediction (by its id) or one row (by its key value)."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=LabelKind.choices)
    key = models.CharField(max_length=255, help_text="The prediction id, or the key column's value as text.")
    label = models.JSONField(help_text="The true outcome: a number, a class name or a boolean.")
    received_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    received_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RestrictedQuerySet.as_manager()
    team_scope = "team"

    class Meta:
        ordering = ["registered_model_id", "kind", "key"]
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "kind", "key"], name="unique_label_per_key"),
            models.CheckConstraint(condition=models.Q(kind__in=LabelKind.values), name="label_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"label of {self.kind} {self.key}"

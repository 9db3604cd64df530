"""Pieces several monitoring models share: severity, the drift-share rule, choice constraints.

Single-row rules (issue 8) are checked by each model's ``clean()`` and by a CheckConstraint, both
built from the definitions here and beside each model; the actions validate with them before writing.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Severity(models.TextChoices):
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


def in_choices(field: str, choices: type[models.TextChoices], name: str) -> models.CheckConstraint:
    """A constraint keeping ``field`` among ``choices``' values (TextChoices alone check only forms)."""
    return models.CheckConstraint(condition=Q(**{f"{field}__in": choices.values}), name=name)


def drift_share_valid(share: float) -> bool:
    """The engine's rule (``CheckConfig``): a share of drifted columns in (0, 1]."""
    return 0 < share <= 1


DRIFT_SHARE_IN_RANGE = Q(drift_share__gt=0, drift_share__lte=1)

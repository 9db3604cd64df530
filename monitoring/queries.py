"""Read helpers for monitoring: where a monitor's current data comes from, and what is due."""

from __future__ import annotations

import datetime

from django.db.models import Q, QuerySet

from governance.models import DatasetVersion, ModelVersion
from lineage.models import LineageEdge, Relation
from monitoring.models import Alert, AlertState, CurrentSource, Monitor


def predictions_of(model_version: ModelVersion) -> QuerySet[DatasetVersion]:
    """Dataset versions written by inference jobs of ``model_version``, newest first.

    Read from lineage (model version -[input]-> job -[output]-> dataset version), so monitoring
    needs nothing from ``runners``. Two queries' worth: the jobs are a subquery.
    """
    jobs = LineageEdge.objects.filter(
        source_type="model_version", source_id=model_version.pk, target_type="job", relation=Relation.INPUT
    ).values("target_id")
    outputs = LineageEdge.objects.filter(
        source_type="job", source_id__in=jobs, target_type="dataset_version", relation=Relation.OUTPUT
    ).values("target_id")
    return (
        DatasetVersion.objects.filter(pk__in=outputs).select_related("dataset").order_by("-created_at", "-id")
    )


def window_of(monitor: Monitor) -> list[DatasetVersion]:
    """The newest ``monitor.window_versions`` dataset versions of the monitor's current source,
    oldest first (the order their rows are read in); empty when there is no data yet."""
    if monitor.source == CurrentSource.PREDICTIONS:
        versions = predictions_of(monitor.model_version)
    else:
        versions = (
            DatasetVersion.objects.filter(dataset_id=monitor.current_dataset_id)
            .select_related("dataset")
            .order_by("-version")
        )
    return list(reversed(versions[: monitor.window_versions]))


def due_alert_ids(now: datetime.datetime) -> list[int]:
    """Open alerts whose next escalation step is due and which are not snoozed, oldest due first."""
    return list(
        Alert.objects.filter(state=AlertState.OPEN, next_escalation_at__lte=now)
        .filter(Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now))
        .order_by("next_escalation_at", "id")
        .values_list("pk", flat=True)
    )

"""Read helpers for monitoring: where a monitor's current data comes from, and what is due."""

from __future__ import annotations

import datetime

from django.db.models import Q, QuerySet

from governance.models import DatasetVersion, ModelVersion
from lineage.nodes import NodeRef
from lineage.queries import outputs_of_runs_reading
from monitoring.models import Alert, AlertState, CurrentSource, Monitor


def predictions_of(model_version: ModelVersion) -> QuerySet[DatasetVersion]:
    """Dataset versions written by inference jobs of ``model_version``, newest first.

    Read from lineage (model version -[input]-> job -[output]-> dataset version) through lineage's
    public reads, so monitoring needs nothing from ``runners``. One query: the edges are subqueries.
    """
    outputs = outputs_of_runs_reading(
        NodeRef("model_version", model_version.pk), run_type="job", output_type="dataset_version"
    )
    return (
        DatasetVersion.objects.filter(pk__in=outputs).select_related("dataset").order_by("-created_at", "-id")
    )


def window_of(monitor: Monitor) -> list[DatasetVersion]:
    """The newest ``monitor.window_versions`` dataset versions of the monitor's current source,
    oldest first (the order their rows are read in); empty when there is no data yet."""
    if monitor.source == CurrentSource.PREDICTIONS:
        versions = predictions_of(monitor.model_version)
    elif monitor.current_dataset_id is None:  # excluded by monitor_source_matches_current_dataset
        return []
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

"""Prometheus metrics of the audit log's sequencer, read from the database when scraped (issue 13).

``monitoring.metrics.registry`` registers ``AuditCollector`` beside the other collectors. Two
indexed reads per scrape, whatever the size of the log.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from governance.audit.trail import unsequenced_backlog
from governance.models import AuditCheckpoint

PREFIX = "steward"


class AuditCollector(Collector):
    """``steward_audit_unsequenced_events``: ``audit.trail.unsequenced_backlog`` (the count the
    compliance officer's dashboard shows);
    ``steward_audit_checkpoint_age_seconds``: seconds since the newest signed checkpoint (absent
    before the first). Together they tell a stalled sequencer (beat or its worker gone: the
    backlog grows while the checkpoint ages) from an idle one (no backlog)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog = GaugeMetricFamily(
            f"{PREFIX}_audit_unsequenced_events",
            "Audit events waiting for the sequencer (above the newest sequenced one).",
        )
        backlog.add_metric([], float(unsequenced_backlog()))
        yield backlog
        newest = AuditCheckpoint.objects.order_by("-tree_size").values_list("timestamp", flat=True).first()
        age = GaugeMetricFamily(
            f"{PREFIX}_audit_checkpoint_age_seconds", "Seconds since the newest signed audit checkpoint."
        )
        if newest is not None:
            age.add_metric([], (timezone.now() - newest).total_seconds())
        yield age

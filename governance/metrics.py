"""Prometheus metrics of the audit log's sequencer (issue 13) and of the artifact store (issue 12),
read from the database when scraped.

``monitoring.metrics.registry`` registers ``AuditCollector`` and ``StorageCollector`` beside the
other collectors. Two indexed reads per scrape for the audit log, one aggregate for the store.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Q, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from governance.audit.trail import unsequenced_backlog
from governance.models import AuditCheckpoint, StoredObject, Team
from governance.queries import storage_by_team

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


class StorageCollector(Collector):
    """``steward_artifact_integrity_failures_total``: reads of a stored artifact that failed
    authentication or its sha256, by any process (counted on the artifact's record, so a
    worker's failure shows in the web tier's scrape); ``steward_artifact_objects`` and
    ``steward_artifact_bytes`` by state (encrypted, plain, shredded). Managed mode only: direct
    mode keeps no records. Per team (issue 12, retention): ``steward_artifact_team_bytes`` and
    ``steward_artifact_team_objects`` by tier (``storage_by_team``)."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        totals = StoredObject.objects.aggregate(
            failures=Sum("integrity_failures"),
            shredded=Count("pk", filter=Q(shredded_at__isnull=False)),
            encrypted=Count("pk", filter=Q(shredded_at__isnull=True, wrapped_key__isnull=False)),
            plain=Count("pk", filter=Q(shredded_at__isnull=True, wrapped_key__isnull=True)),
            encrypted_bytes=Sum("size_bytes", filter=Q(shredded_at__isnull=True, wrapped_key__isnull=False)),
            plain_bytes=Sum("size_bytes", filter=Q(shredded_at__isnull=True, wrapped_key__isnull=True)),
        )
        failures = CounterMetricFamily(
            f"{PREFIX}_artifact_integrity_failures",
            "Reads of a stored artifact that failed authentication or its sha256 "
            "(tampered, swapped or truncated).",
        )
        failures.add_metric([], float(totals["failures"] or 0))
        yield failures
        objects = GaugeMetricFamily(
            f"{PREFIX}_artifact_objects", "Objects in the artifact store, by state.", labels=["state"]
        )
        size = GaugeMetricFamily(
            f"{PREFIX}_artifact_bytes", "Plaintext bytes in the artifact store, by state.", labels=["state"]
        )
        for state in ("encrypted", "plain", "shredded"):
            objects.add_metric([state], float(totals[state] or 0))
        for state in ("encrypted", "plain"):
            size.add_metric([state], float(totals[f"{state}_bytes"] or 0))
        yield objects
        yield size
        team_bytes = GaugeMetricFamily(
            f"{PREFIX}_artifact_team_bytes",
            "Bytes a team's live dataset and model versions take in the artifact store, by tier "
            "(hot: as stored; cold: compressed). Bytes two teams share count for each.",
            labels=["team", "tier"],
        )
        team_objects = GaugeMetricFamily(
            f"{PREFIX}_artifact_team_objects",
            "Stored objects a team's live dataset and model versions hold, by tier.",
            labels=["team", "tier"],
        )
        names = dict(Team.objects.values_list("pk", "name"))
        by_name = sorted(
            (names[team_id], tier, totals) for (team_id, tier), totals in storage_by_team().items()
        )
        for team, tier, (count, size) in by_name:
            team_objects.add_metric([team, tier], float(count))
            team_bytes.add_metric([team, tier], float(size))
        yield team_objects
        yield team_bytes

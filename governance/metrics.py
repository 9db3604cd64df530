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
from governance.models import AuditCheckpoint, DatasetVersion, ModelVersion, StoredObject, Tier

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
        for (team, tier), (count, size) in sorted(storage_by_team().items()):
            team_objects.add_metric([team, tier], float(count))
            team_bytes.add_metric([team, tier], float(size))
        yield team_objects
        yield team_bytes


def storage_by_team() -> dict[tuple[str, str], tuple[int, int]]:
    """``{(team name, tier): (objects, bytes)}`` of the artifacts the team's live (not erased,
    not deleted) dataset and model versions hold, each stored object once per team; bytes are
    the stored size when hot (the record's, or the row's in direct mode) and the compressed size
    when cold. Three queries: the teams' keys, the records of those keys."""
    keys: dict[str, set[str]] = {}
    sizes: dict[str, int] = {}
    dataset_files = DatasetVersion.objects.filter(erased_at__isnull=True).values_list(
        "dataset__team__name", "file", "size_bytes"
    )
    model_files = ModelVersion.objects.exclude(status=ModelVersion.Status.DELETED).values_list(
        "model__team__name", "artifact", "size_bytes"
    )
    for rows in (dataset_files, model_files):
        for team, key, size in rows.iterator():
            keys.setdefault(team, set()).add(key)
            sizes[key] = size
    records = {
        key: (tier, size, cold_size)
        for key, tier, size, cold_size in StoredObject.objects.filter(shredded_at__isnull=True).values_list(
            "key", "tier", "size_bytes", "cold_size_bytes"
        )
    }
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for team, team_keys in keys.items():
        for key in team_keys:
            tier, size, cold_size = records.get(key, (Tier.HOT, sizes[key], None))
            stored = cold_size if tier == Tier.COLD and cold_size is not None else size
            count, total = totals.get((team, str(tier)), (0, 0))
            totals[(team, str(tier))] = (count + 1, total + stored)
    return totals

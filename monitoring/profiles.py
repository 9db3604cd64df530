"""Reference profiles: built once per (dataset version, row filter[, model]) and reused by every check.

``profile_row`` finds or creates the cache row; ``ensure_profile`` returns its ``DatasetProfile``,
building it if needed. Building is claimed with a conditional UPDATE (pending/failed, or a build
that stalled for ``STALE_BUILD``, -> building), so one worker stores it; a worker that finds another
mid-build computes its own copy for its check instead of waiting, and stores nothing.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from collections.abc import Callable

from django.db.models import Q
from django.utils import timezone

from governance.models import DatasetVersion, ModelVersion
from monitoring.engine import DatasetProfile
from monitoring.models import ProfileState, ReferenceProfile

logger = logging.getLogger(__name__)

STALE_BUILD = datetime.timedelta(minutes=15)
# What a builder returns: the profile, and metrics of the predictions on the rows (or {}).
Built = tuple[DatasetProfile, dict]


def profile_key(dataset_version_id: int, where: dict, predictions_of_id: int | None = None) -> str:
    """Hex SHA-256 of the canonical JSON of what the profile summarises."""
    identity = {
        "dataset_version": dataset_version_id,
        "where": where or {},
        "predictions_of": predictions_of_id,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def profile_row(
    dataset_version: DatasetVersion, where: dict | None, predictions_of: ModelVersion | None = None
) -> ReferenceProfile:
    """The cache row for this reference, created (pending) on first use."""
    where = where or {}
    row, _ = ReferenceProfile.objects.get_or_create(
        key=profile_key(dataset_version.pk, where, predictions_of.pk if predictions_of else None),
        defaults={"dataset_version": dataset_version, "where": where, "predictions_of": predictions_of},
    )
    return row


def ensure_profile(row: ReferenceProfile, build: Callable[[], Built]) -> tuple[DatasetProfile, dict]:
    """The row's profile and baseline metrics, from the cache or by calling ``build()`` once.

    An exception from ``build`` marks a claimed row failed with the message (a later check
    retries) and propagates.
    """
    row.refresh_from_db()
    if row.state == ProfileState.READY:
        return DatasetProfile.from_dict(row.profile), row.baseline_metrics
    now = timezone.now()
    claimable = Q(state__in=[ProfileState.PENDING, ProfileState.FAILED]) | Q(
        state=ProfileState.BUILDING, started_at__lt=now - STALE_BUILD
    )
    claimed = ReferenceProfile.objects.filter(claimable, pk=row.pk).update(
        state=ProfileState.BUILDING, started_at=now, error=""
    )
    try:
        profile, baseline = build()
    except Exception as exc:
        if claimed:
            ReferenceProfile.objects.filter(pk=row.pk).update(
                state=ProfileState.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000]
            )
        raise
    if claimed:
        ReferenceProfile.objects.filter(pk=row.pk).update(
            state=ProfileState.READY,
            profile=profile.to_dict(),
            baseline_metrics=baseline,
            rows=profile.rows,
            built_at=timezone.now(),
        )
    else:
        logger.info("reference profile %s is being built elsewhere; used a private copy", row.pk)
    return profile, baseline

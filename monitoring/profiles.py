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
from collections.abc import Callable, Iterable

from django.db.models import Q
from django.utils import timezone

from governance import datafiles
from governance.models import DatasetVersion, ModelVersion
from monitoring.engine import DatasetProfile, build_profile
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
    claimed = claim_build(row)
    try:
        profile, baseline = build()
    except Exception as exc:
        if claimed:
            fail_build(row.pk, exc)
        raise
    if claimed:
        store_build(row.pk, profile, baseline)
    else:
        logger.info("reference profile %s is being built elsewhere; used a private copy", row.pk)
    return profile, baseline


def claim_build(row: ReferenceProfile) -> bool:
    """Claim the row's build (pending/failed, or building but stalled -> building); True if this
    caller now builds it (conditional UPDATE: one claimer wins)."""
    now = timezone.now()
    claimable = Q(state__in=[ProfileState.PENDING, ProfileState.FAILED]) | Q(
        state=ProfileState.BUILDING, started_at__lt=now - STALE_BUILD
    )
    return bool(
        ReferenceProfile.objects.filter(claimable, pk=row.pk).update(
            state=ProfileState.BUILDING, started_at=now, error=""
        )
    )


def store_build(row_id: int, profile: DatasetProfile, baseline: dict) -> None:
    """Store a claimed build's profile: the row is ready."""
    ReferenceProfile.objects.filter(pk=row_id).update(
        state=ProfileState.READY,
        profile=profile.to_dict(),
        baseline_metrics=baseline,
        rows=profile.rows,
        built_at=timezone.now(),
    )


def fail_build(row_id: int, exc: BaseException) -> None:
    """Mark a claimed build failed with the reason (a later check or monitor retries)."""
    ReferenceProfile.objects.filter(pk=row_id).update(
        state=ProfileState.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000]
    )


# Profiles in parts (issue 11): a large Parquet reference is profiled one part (a run of row groups)
# per Celery task and the parts are merged in file order (``DatasetProfile.merge``) by a chord.


def profile_parts(version: DatasetVersion, fanout_rows: int) -> list[list[int]]:
    """The version's Parquet row groups in runs of about ``fanout_rows`` rows, one per part; []
    when it is not split: ``fanout_rows`` 0, a CSV file (its rows have no cheap boundaries), at
    most ``fanout_rows`` rows, or a single part."""
    if fanout_rows <= 0 or version.format != "parquet" or version.row_count <= fanout_rows:
        return []
    parts: list[list[int]] = [[]]
    rows = 0
    for index, count in enumerate(datafiles.row_group_rows(version.path, version.original_filename or None)):
        if parts[-1] and rows + count > fanout_rows:
            parts.append([])
            rows = 0
        parts[-1].append(index)
        rows += count
    return parts if len(parts) > 1 else []


def build_profile_part(version: DatasetVersion, where: dict | None, row_groups: list[int]) -> dict:
    """The profile (``to_dict``) of the rows of ``row_groups`` that pass ``where``, streamed."""
    return build_profile(version.iter_frames(where, row_groups=row_groups)).to_dict()


def merged_profile(parts: Iterable[dict]) -> DatasetProfile:
    """Profiles of consecutive parts of one dataset (``to_dict``s, in file order), merged."""
    merged: DatasetProfile | None = None
    for part in parts:
        profile = DatasetProfile.from_dict(part)
        if merged is None:
            merged = profile
        else:
            merged.merge(profile)
    if merged is None:
        raise ValueError("no parts to merge")
    return merged

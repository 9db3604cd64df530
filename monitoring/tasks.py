"""Celery tasks for monitoring: each takes ids and calls one plain function (``monitoring.execute``,
``monitoring.actions``), which is tested without Celery."""

from __future__ import annotations

import logging
from typing import Any

from celery import chord, shared_task
from django.conf import settings
from django.core.exceptions import ValidationError

from governance.models import DatasetVersion
from monitoring import profiles
from monitoring.actions.budgets import do_check_budgets
from monitoring.actions.checks import (
    do_recover_stale_drift_checks,
    do_redispatch_queued_drift_checks,
    do_run_monitor,
)
from monitoring.actions.retraining import submit_retraining
from monitoring.execute import (
    embed_with_model,
    execute_drift_check,
    predict_with_model,
    prepare_reference_profiles,
    run_escalations,
)
from monitoring.models import Monitor, ReferenceProfile
from monitoring.reports import execute_drift_report

logger = logging.getLogger(__name__)


@shared_task(name="monitoring.tasks.run_drift_check")
def run_drift_check(check_id: int) -> str:
    return execute_drift_check(
        check_id, predictor=predict_with_model, retrainer=submit_retraining, embedder=embed_with_model
    )


@shared_task(name="monitoring.tasks.build_drift_report")
def build_drift_report(check_id: int) -> str:
    """The evidently report of a finished check (issue 11): never changes its verdict or state."""
    return execute_drift_report(check_id)


@shared_task(name="monitoring.tasks.redispatch_queued_drift_checks")
def redispatch_queued_drift_checks() -> list[int]:
    return do_redispatch_queued_drift_checks(
        settings.STEWARD_JOB_REDISPATCH_AFTER_S, settings.STEWARD_JOB_MAX_DISPATCHES
    )


@shared_task(name="monitoring.tasks.recover_stale_drift_checks")
def recover_stale_drift_checks() -> list[int]:
    return do_recover_stale_drift_checks(settings.STEWARD_JOB_HEARTBEAT_TIMEOUT_S)


@shared_task(name="monitoring.tasks.run_monitor")
def run_monitor(monitor_id: int) -> int | None:
    """Beat's scheduled run of a monitor: queue a check of its window (None when paused or empty)."""
    monitor = Monitor.objects.filter(pk=monitor_id, is_active=True).first()
    if monitor is None:
        return None
    try:
        return do_run_monitor(monitor=monitor, actor=None).pk
    except ValidationError as exc:
        logger.info("monitor %s: nothing to check (%s)", monitor_id, " ".join(exc.messages))
        return None


@shared_task(name="monitoring.tasks.build_reference_profiles")
def build_reference_profiles(monitor_id: int) -> list[str]:
    """Profile a new monitor's references ahead of its first check; nothing if it is gone."""
    if not Monitor.objects.filter(pk=monitor_id).exists():
        return []
    return prepare_reference_profiles(monitor_id, predictor=predict_with_model, fan_out=fan_out_profile)


def fan_out_profile(row: ReferenceProfile, parts: list[list[int]]) -> None:
    """Profile each part of a claimed reference on any worker, then merge and store them (a chord)."""
    # A part that fails never calls the merge: its errback marks the row failed with the reason,
    # so the row does not say "building" until it goes stale (and a later check claims it again).
    chord(profile_reference_part.s(row.dataset_version_id, row.where, row_groups) for row_groups in parts)(
        store_reference_profile.s(row.pk).on_error(reference_profile_failed.s(row.pk))
    )


@shared_task(name="monitoring.tasks.profile_reference_part")
def profile_reference_part(dataset_version_id: int, where: dict, row_groups: list[int]) -> dict:
    """The profile (a JSON dict) of some row groups of a reference (``profiles.build_profile_part``)."""
    version = DatasetVersion.objects.get(pk=dataset_version_id)
    return profiles.build_profile_part(version, where, row_groups)


@shared_task(name="monitoring.tasks.store_reference_profile")
def store_reference_profile(parts: list[dict], row_id: int) -> str:
    """The chord's callback: merge the parts in file order and store the profile; returns its state."""
    try:
        merged = profiles.merged_profile(parts)
    except Exception as exc:
        profiles.fail_build(row_id, exc)
        raise
    profiles.store_build(row_id, merged, {})
    return ReferenceProfile.objects.values_list("state", flat=True).get(pk=row_id)


@shared_task(name="monitoring.tasks.reference_profile_failed")
def reference_profile_failed(request: Any, exc: BaseException, traceback: Any, row_id: int) -> None:
    """The chord's errback (a part or the merge failed): the row is failed, with the reason."""
    profiles.fail_build(row_id, exc)


@shared_task(name="monitoring.tasks.escalate_alerts")
def escalate_alerts() -> dict:
    result = run_escalations()
    return {"escalated": result["escalated"], "notifications": len(result["notifications"])}


@shared_task(name="monitoring.tasks.check_budgets")
def check_budgets() -> list[int]:
    """Beat, every minute: alert the teams that passed their budget this month (once a month)."""
    return do_check_budgets()

"""Celery tasks for monitoring: thin wrappers over plain functions.

This is the one monitoring module that reaches into ``runners`` (DESIGN.md: nothing below the task
and UI layers imports it): the drift check gets the model runtime to predict on its reference rows
(``predict_with_model``) and, for monitors that retrain on drift, a way to submit the training job
(``submit_retraining``). Both are passed to ``execute_drift_check`` as plain callables, so the
engine, models and actions stay free of ``runners``.
"""

from __future__ import annotations

import hashlib
import logging

import pandas as pd
from celery import shared_task
from django.core.exceptions import ValidationError

from governance.models import DatasetVersion, ModelVersion
from monitoring.actions import do_run_monitor
from monitoring.execute import execute_drift_check, prepare_reference_profiles
from monitoring.models import DriftCheck, Monitor
from monitoring.notify import run_escalations

logger = logging.getLogger(__name__)


def predict_with_model(model_version: ModelVersion, rows: pd.DataFrame) -> pd.Series:
    """The model version's predictions on ``rows`` (its artifact's sha256 checked first)."""
    from runners import inference

    artifact = model_version.path.read_bytes()
    if hashlib.sha256(artifact).hexdigest() != model_version.sha256:
        raise inference.ArtifactError(f"artifact of {model_version} does not match its recorded sha256")
    return inference.predict(rows, inference.load_model(artifact))


def submit_retraining(monitor: Monitor, check: DriftCheck) -> int:
    """Submit a training job of the monitored model on the newest labelled data; returns its id.

    The data is the newest version of the reference's dataset that holds the model's target and
    features; the spec is the version's training spec with the monitor's ``retrain_where``. The job
    is submitted as the monitor's creator (their rights are re-checked); the version it registers
    waits for approval like any other. Raises ValidationError when there is nothing to train on.
    """
    from runners.actions import do_submit_job

    model_version = monitor.model_version
    needed = {model_version.signature.get("target"), *model_version.signature.get("features", [])} - {None}
    newest = next(
        (
            version
            for version in DatasetVersion.objects.filter(
                dataset_id=monitor.reference_dataset_version.dataset_id
            ).order_by("-version")
            if needed <= set(version.column_names)
        ),
        None,
    )
    if newest is None:
        raise ValidationError(f"no version of {monitor.reference_dataset_version.dataset} holds the labels")
    if monitor.created_by is None:
        raise ValidationError("the monitor's creator no longer exists; nobody to submit the job as")
    spec = dict(model_version.training_spec, where=monitor.retrain_where or {})
    job = do_submit_job(
        kind="train",
        dataset_version=newest,
        registered_model=model_version.model,
        spec=spec,
        actor=monitor.created_by,
    )
    return job.pk


@shared_task(name="monitoring.tasks.run_drift_check")
def run_drift_check(check_id: int) -> str:
    return execute_drift_check(check_id, predictor=predict_with_model, retrainer=submit_retraining)


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
    return prepare_reference_profiles(monitor_id, predictor=predict_with_model)


@shared_task(name="monitoring.tasks.escalate_alerts")
def escalate_alerts() -> dict:
    result = run_escalations()
    return {"escalated": result["escalated"], "notifications": len(result["notifications"])}

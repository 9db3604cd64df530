"""Celery tasks for monitoring: thin wrappers over plain functions."""

from celery import shared_task

from monitoring.execute import execute_drift_check


@shared_task(name="monitoring.tasks.run_drift_check")
def run_drift_check(check_id: int) -> str:
    return execute_drift_check(check_id)

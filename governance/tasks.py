"""Celery tasks of governance: thin wrappers around plain, separately tested functions."""

from celery import shared_task

from governance.actions import pii, promotions, retention
from governance.audit import sequencer


@shared_task(name="governance.tasks.sequence_audit_events", ignore_result=True)
def sequence_audit_events() -> int:
    """Beat runs this every ``STEWARD_AUDIT_SEQUENCE_INTERVAL_S``: give new audit events their
    leaves and sign a checkpoint (``audit.sequencer.sequence_audit_events``). Idempotent; returns
    the number of events sequenced."""
    return sequencer.sequence_audit_events().sequenced


@shared_task(name="governance.tasks.notify_approvers", ignore_result=True)
def notify_approvers() -> int:
    """Email approvers the promotion requests awaiting them (``actions.promotions.notify_approvers``);
    each new request enqueues it, and beat runs it every minute for any whose enqueue failed."""
    return promotions.notify_approvers()


@shared_task(name="governance.tasks.scan_dataset_version_pii", ignore_result=True)
def scan_dataset_version_pii(scan_id: int) -> str | None:
    """Scan a dataset version for personal data (``actions.pii.run_pii_scan``); sent once the
    version's registration commits. Idempotent; returns the scan's final status."""
    return pii.run_pii_scan(scan_id)


@shared_task(name="governance.tasks.apply_retention", ignore_result=True)
def apply_retention() -> dict[str, int]:
    """Beat runs this daily: apply every team's retention policy
    (``actions.retention.apply_retention``). Idempotent; returns the run's counts."""
    return retention.apply_retention()

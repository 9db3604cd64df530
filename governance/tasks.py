"""Celery tasks of governance: thin wrappers around plain, separately tested functions."""

from celery import shared_task

from governance.audit import sequencer


@shared_task(name="governance.tasks.sequence_audit_events", ignore_result=True)
def sequence_audit_events() -> int:
    """Beat runs this every ``STEWARD_AUDIT_SEQUENCE_INTERVAL_S``: give new audit events their
    leaves and sign a checkpoint (``audit.sequencer.sequence_audit_events``). Idempotent; returns
    the number of events sequenced."""
    return sequencer.sequence_audit_events().sequenced

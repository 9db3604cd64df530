"""Drift reports under teams' retention policies (issue 12): the ``reports`` kind of
``governance.actions.retention``, registered by ``monitoring.apps``."""

from __future__ import annotations

import datetime

from django.db import transaction
from django.db.models import QuerySet

from governance import storage
from governance.actions.retention import RetentionSubject
from governance.audit import record_audit_event
from monitoring.models import DriftCheck


def live_report_keys(team_id: int) -> QuerySet:
    """The storage keys of team ``team_id``'s drift reports (one column, for an IN subquery)."""
    return DriftCheck.objects.filter(team_id=team_id).exclude(report="").values("report")


def do_expire_drift_reports(
    team_id: int, registered_before: datetime.datetime, reason: str
) -> dict[str, int]:
    """Delete the evidently reports of team ``team_id``'s drift checks made before
    ``registered_before``, as the system: the check keeps its verdict and results and says why
    its report is gone (``report_error``); the stored object is shredded once no other check's
    report is the same bytes (reports are content-addressed). One ``drift_report.delete`` event
    each. Returns ``{"deleted", "held", "skipped"}`` (reports have no legal hold: held is 0)."""
    deleted = 0
    due = DriftCheck.objects.filter(team_id=team_id, created_at__lte=registered_before).exclude(report="")
    for check_id in due.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            check = DriftCheck.objects.select_for_update().get(pk=check_id)
            if not check.report:  # another run deleted it meanwhile
                continue
            key = check.report
            check.report, check.report_error = "", f"deleted: {reason}"
            check.save(update_fields=["report", "report_error"])
            if not DriftCheck.objects.filter(report=key).exists():
                storage.shred(key)
            record_audit_event(
                actor=None,
                action="drift_report.delete",
                obj=check,
                before={"report": key},
                after={"report": "", "reason": reason},
            )
            deleted += 1
    return {"deleted": deleted, "held": 0, "skipped": 0}


REPORTS = RetentionSubject(live_keys=live_report_keys, expire=do_expire_drift_reports)

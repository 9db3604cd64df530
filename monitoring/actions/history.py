"""An alert's history: one ``AlertEvent`` per change, written in the changing action's transaction."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from monitoring.models import Alert, AlertEvent, DriftCheck

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def add_alert_event(
    alert: Alert,
    kind: str,
    *,
    at: datetime.datetime,
    actor: User | None = None,
    check: DriftCheck | None = None,
    note: str = "",
    **step: Any,
) -> AlertEvent:
    """Append ``kind`` to the alert's history (``step``: the escalation's ``level`` and ``repeat``)."""
    return AlertEvent.objects.create(
        alert=alert,
        kind=kind,
        at=at,
        actor=actor,
        drift_check_id=check.pk if check else None,
        note=note,
        **step,
    )

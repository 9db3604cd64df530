"""Budget alerts (issue 16): a team whose month-to-date job cost passed its budget gets one alert
a month, escalated to its model owners like any other (``monitoring.actions.escalations``).

The cost is runners' (``runners.accounting``); the check lives here because runners does not know
monitoring. Beat runs it every minute (``monitoring.tasks.check_budgets``), so an alert follows
the job whose cost passed the limit within a minute.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from governance.audit import record_audit_event, snapshot
from monitoring.actions.escalations import do_escalate_alert
from monitoring.actions.history import add_alert_event
from monitoring.models import UNRESOLVED, Alert, AlertEventKind, AlertKind, Severity
from runners.accounting import budget_lines, month_start
from runners.budgets import claim_budget_breach
from runners.models import Budget


def budget_dedup_key(team_id: int, first_day: datetime.date) -> str:
    """The dedup key of a team's budget alert for the month starting ``first_day``."""
    return f"budget:{team_id}:{first_day:%Y-%m}"


def do_check_budgets(now: datetime.datetime | None = None) -> list[int]:
    """Open an alert for each team whose month-to-date cost has reached its budget for the first
    time this month (``Budget.breached_month``); returns the ids of the alerts opened.

    One aggregate query finds the budgets passed; each is claimed with a conditional UPDATE in
    the transaction that opens its alert, so two checks racing open one alert. Its first
    escalation step (the team's model owners, without a policy) is sent once committed.
    """
    now = now or timezone.now()
    first_day = month_start(now)
    opened = []
    for line in budget_lines(None, now):
        budget = line["budget"]
        if line["is_over"] and budget.breached_month != first_day:
            alert = _open_budget_alert(budget, line["spent"], first_day, now)
            if alert is not None:
                opened.append(alert.pk)
    return opened


def _evidence(budget: Budget, spent: float, first_day: datetime.date) -> dict[str, Any]:
    base = settings.STEWARD_BASE_URL.rstrip("/")
    return {
        "team": budget.team.slug,
        "month": f"{first_day:%Y-%m}",
        "spent": round(spent, 4),
        "monthly_limit": str(budget.monthly_limit),
        "currency": settings.STEWARD_CURRENCY,
        "holds_jobs": budget.holds_jobs,
        "usage_url": f"{base}{reverse('usage')}?month={first_day:%Y-%m}&team={budget.team.slug}",
    }


def _open_budget_alert(
    budget: Budget, spent: float, first_day: datetime.date, now: datetime.datetime
) -> Alert | None:
    """Claim the month's breach and open (or, after a budget was re-created, add to) its alert."""
    currency = settings.STEWARD_CURRENCY
    month = f"{first_day:%Y-%m}"
    title = (
        f"Team {budget.team.slug} passed its {month} budget: {spent:.2f} of {budget.monthly_limit} {currency}"
    )
    held = "new jobs are held until a model owner releases them" if budget.holds_jobs else "jobs still run"
    summary = f"Job cost this month {spent:.2f} {currency}, budget {budget.monthly_limit} {currency}; {held}."
    key = budget_dedup_key(budget.team_id, first_day)
    with transaction.atomic():
        if not claim_budget_breach(budget.pk, first_day):
            return None
        alert = Alert.objects.select_for_update().filter(dedup_key=key, state__in=UNRESOLVED).first()
        before = snapshot(alert)
        if alert is not None:  # the budget was removed and set again this month
            alert.occurrences += 1
            alert.last_seen_at = now
            alert.title, alert.summary = title[:300], summary
            alert.evidence = _evidence(budget, spent, first_day)
            alert.save()
            kind, action = AlertEventKind.REPEAT, "alert.repeat"
        else:
            alert = Alert.objects.create(
                kind=AlertKind.BUDGET,
                team_id=budget.team_id,
                dedup_key=key,
                owner_id=budget.created_by_id,
                severity=Severity.CRITICAL if budget.holds_jobs else Severity.WARNING,
                title=title[:300],
                summary=summary,
                evidence=_evidence(budget, spent, first_day),
                created_at=now,
                last_seen_at=now,
                next_escalation_at=now,
            )
            kind, action = AlertEventKind.OPEN, "alert.open"
        add_alert_event(alert, kind, at=now, note=title)
        record_audit_event(actor=None, action=action, obj=alert, before=before, after=snapshot(alert))
        if kind == AlertEventKind.OPEN:
            alert_id = alert.pk
            transaction.on_commit(lambda: do_escalate_alert(alert_id, now=now))
    return alert

"""Team budgets (issue 16): the one audited way to set, change and remove a team's monthly spend
limit, and the hold a submission meets once the limit is reached.

Only the team's model owners (``manage``) and platform admins change a budget or release a held
job. Raising the limit does not release held jobs: each is released by a person, so nothing
starts unseen after a limit is passed (docs/operations.md).
"""

from __future__ import annotations

import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance.actions.checks import ensure_can
from governance.audit import record_audit_event, snapshot
from governance.models import Team
from governance.permissions import MANAGE
from runners.accounting import is_over_budget, month_start, month_to_date_cost
from runners.models import Budget

if TYPE_CHECKING:
    from django.contrib.auth.models import User

MAX_LIMIT = Decimal("999999999999.99")  # max_digits=14, decimal_places=2


def _clean_limit(value: Any) -> Decimal:
    """``value`` as a limit of at most two decimals, 0 or more. Raises ValidationError naming it."""
    try:
        limit = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError({"monthly_limit": f"a number, not {value!r}"}) from None
    if not limit.is_finite() or limit < 0 or limit > MAX_LIMIT:
        raise ValidationError({"monthly_limit": f"a number from 0 to {MAX_LIMIT}"})
    if limit != limit.quantize(Decimal("0.01")):
        raise ValidationError({"monthly_limit": "at most two decimals"})
    # copy_abs: "-0" is zero, and the audit trail must record what the row holds (0.00).
    return limit.quantize(Decimal("0.01")).copy_abs()


def do_create_budget(*, team: Team, monthly_limit: Any, actor: User, holds_jobs: bool = True) -> Budget:
    """Give ``team`` its monthly budget in ``STEWARD_CURRENCY``. Raises ValidationError if it has
    one or the limit is not a number >= 0; PermissionDenied unless ``actor`` manages the team."""
    limit = _clean_limit(monthly_limit)
    with transaction.atomic():
        ensure_can(actor, MANAGE, team.pk)
        if Budget.objects.select_for_update().filter(team=team).exists():
            raise ValidationError({"team": f"{team} already has a budget; change it instead"})
        budget = Budget.objects.create(
            team=team, monthly_limit=limit, holds_jobs=holds_jobs, created_by=actor, updated_at=timezone.now()
        )
        record_audit_event(actor=actor, action="budget.create", obj=budget, after=snapshot(budget))
    return budget


def do_update_budget(
    *, budget: Budget, actor: User, monthly_limit: Any = None, holds_jobs: bool | None = None
) -> Budget:
    """Change a budget's limit and/or whether it holds jobs. Held jobs stay held (see the module)."""
    limit = None if monthly_limit is None else _clean_limit(monthly_limit)
    with transaction.atomic():
        budget = Budget.objects.select_for_update().get(pk=budget.pk)
        ensure_can(actor, MANAGE, budget.team_id)
        before = snapshot(budget)
        if limit is not None:
            budget.monthly_limit = limit
        if holds_jobs is not None:
            budget.holds_jobs = holds_jobs
        if snapshot(budget) == before:
            return budget  # nothing changed: nothing to record
        budget.updated_at = timezone.now()
        budget.save()
        record_audit_event(
            actor=actor, action="budget.update", obj=budget, before=before, after=snapshot(budget)
        )
    return budget


def do_set_budget(*, team: Team, monthly_limit: Any, holds_jobs: bool, actor: User) -> Budget:
    """Create ``team``'s budget, or change it if it has one (the usage page's one form)."""
    existing = Budget.objects.filter(team=team).first()
    if existing is None:
        return do_create_budget(team=team, monthly_limit=monthly_limit, holds_jobs=holds_jobs, actor=actor)
    return do_update_budget(budget=existing, monthly_limit=monthly_limit, holds_jobs=holds_jobs, actor=actor)


def do_delete_budget(*, budget: Budget, actor: User) -> None:
    """Remove a team's budget: its jobs are no longer held (those held stay held until released)."""
    with transaction.atomic():
        budget = Budget.objects.select_for_update().get(pk=budget.pk)
        ensure_can(actor, MANAGE, budget.team_id)
        record_audit_event(actor=actor, action="budget.delete", obj=budget, before=snapshot(budget))
        budget.delete()


def hold_reason(team: Team, now: datetime.datetime | None = None) -> str:
    """Why a job of ``team`` submitted ``now`` must wait: its budget holds jobs and this month's
    spend has reached the limit; empty when it may run. Read in the submission's transaction."""
    budget = Budget.objects.filter(team=team, holds_jobs=True).first()
    if budget is None:
        return ""
    spent = month_to_date_cost(team.pk, now)
    if not is_over_budget(spent, budget):
        return ""
    currency = settings.STEWARD_CURRENCY
    return (
        f"held: team {team.slug} has spent {spent:.4f} {currency} of its {budget.monthly_limit} "
        f"{currency} budget for {month_start(now):%Y-%m}; a model owner of {team.slug} or a platform "
        "admin can release it"
    )


def claim_budget_breach(budget_id: int, first_day: datetime.date) -> bool:
    """Mark the budget passed in the month starting ``first_day``; True only the first time that
    month (a conditional UPDATE: of several checks racing, one raises the alert). Telemetry of the
    alert it leads to, which is audited; call it in that alert's transaction."""
    claimed = (
        Budget.objects.filter(pk=budget_id).exclude(breached_month=first_day).update(breached_month=first_day)
    )
    return bool(claimed)

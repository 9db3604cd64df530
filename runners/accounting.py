"""Accounting (issue 16): what a job's compute costs, and the rollups of cost per team, model and
month that the API, the usage page, ``/metrics`` and the budgets read; and what each team's
stored artifacts cost a month (issue 12, ``storage_rows``).

A job counts in the month it was submitted (``created_at``, in ``TIME_ZONE``): its cost grows with
each attempt, but it stays in one month's rollup. Tracked MLflow runs ran elsewhere and are left
out: their cost stays null.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Count, F, FloatField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncMonth
from django.utils import timezone

from governance.models import Team
from governance.permissions import ALL_TEAMS, VIEW, team_scope
from governance.queries import storage_by_team
from runners.models import Budget, Job, JobKind

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

logger = logging.getLogger(__name__)

SECONDS_PER_HOUR = 3600.0
# What a usage row may be grouped by; a model's rows also name its team (names are per team).
DIMENSIONS = ("team", "model", "month")


def job_cost(wall_time_s: float, price_per_hour: float) -> float:
    """The cost of ``wall_time_s`` seconds of a resource class priced ``price_per_hour``.

    ``cost = wall_time_s / 3600 * price_per_hour``, in ``STEWARD_CURRENCY``: a GPU class's price
    already covers its GPUs (and the CPU and memory that go with them), so only wall time counts.
    Raises ValueError for a negative time or price.
    """
    if wall_time_s < 0 or price_per_hour < 0:
        raise ValueError(f"wall time ({wall_time_s} s) and price ({price_per_hour}/h) must not be negative")
    return wall_time_s / SECONDS_PER_HOUR * price_per_hour


def price_per_hour(resource_class: str) -> float:
    """The price of an hour of wall time of ``resource_class`` (``STEWARD_RESOURCE_CLASSES``).

    A class no longer in the settings is priced 0 and logged: the compute already ran, and the
    accounting must not fail the job for an operator's settings change.
    """
    found = settings.STEWARD_RESOURCE_CLASSES.get(resource_class)
    if found is None:
        logger.warning("resource class %r has no price in STEWARD_RESOURCE_CLASSES; priced 0", resource_class)
        return 0.0
    return float(found.get("price_per_hour", 0.0))


# Months a rollup may ask for: far enough from years 1 and 9999 that month_bounds cannot overflow.
FIRST_YEAR, LAST_YEAR = 1970, 8999


def parse_month(text: str) -> datetime.date:
    """``YYYY-MM`` (ASCII digits, year 1970 to 8999) as the first day of that month. Raises
    ValueError naming the expected form otherwise."""
    parts = text.split("-") if isinstance(text, str) else []
    if not (len(parts) == 2 and all(p.isascii() and p.isdigit() for p in parts) and len(parts[0]) == 4):
        raise ValueError(f"a month as YYYY-MM, e.g. 2026-12; got {text!r}")
    year, month = int(parts[0]), int(parts[1])
    if len(parts[1]) != 2 or not 1 <= month <= 12 or not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"a month as YYYY-MM between {FIRST_YEAR}-01 and {LAST_YEAR}-12; got {text!r}")
    return datetime.date(year, month, 1)


def month_start(moment: datetime.datetime | None = None) -> datetime.date:
    """The first day of ``moment``'s month (default: now) in ``TIME_ZONE``."""
    return timezone.localtime(moment or timezone.now()).date().replace(day=1)


def month_bounds(first_day: datetime.date) -> tuple[datetime.datetime, datetime.datetime]:
    """The aware start of ``first_day``'s month and of the next one, in ``TIME_ZONE``."""
    following = (first_day.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
    zone = timezone.get_current_timezone()
    return (
        datetime.datetime.combine(first_day, datetime.time.min, tzinfo=zone),
        datetime.datetime.combine(following, datetime.time.min, tzinfo=zone),
    )


def months_before(first_day: datetime.date, count: int) -> datetime.date:
    """The first day of the month ``count`` months before ``first_day``'s (``count`` >= 0)."""
    index = first_day.year * 12 + first_day.month - 1 - count
    return datetime.date(index // 12, index % 12 + 1, 1)


def month_labels(last: datetime.date, count: int) -> list[str]:
    """``count`` months up to ``last``'s, oldest first, as ``YYYY-MM`` (the x axis of a chart)."""
    return [f"{months_before(last, back):%Y-%m}" for back in range(count - 1, -1, -1)]


def accounted_jobs() -> QuerySet[Job]:
    """The jobs whose compute Steward paid for: all but tracked runs, unordered (for aggregates)."""
    return Job.objects.exclude(kind=JobKind.TRACKED).order_by()


def month_to_date_cost(team_id: int, now: datetime.datetime | None = None) -> float:
    """What team ``team_id``'s jobs submitted this month have cost so far, in ``STEWARD_CURRENCY``."""
    start, end = month_bounds(month_start(now))
    spent = accounted_jobs().filter(team_id=team_id, created_at__gte=start, created_at__lt=end)
    return float(spent.aggregate(cost=Sum("cost"))["cost"] or 0.0)


def is_over_budget(spent: float, budget: Budget) -> bool:
    """Whether ``spent`` has reached ``budget``'s monthly limit (a limit of 0 holds everything)."""
    return Decimal(str(spent)) >= budget.monthly_limit


def _summed(field: str) -> Coalesce:
    return Coalesce(Sum(field), Value(0.0), output_field=FloatField())


def usage_rows(
    user: User | AnonymousUser,
    *,
    group_by: Sequence[str] = ("team",),
    month: datetime.date | None = None,
    months: int = 1,
    team_slug: str | None = None,
) -> list[dict[str, Any]]:
    """Usage rolled up by ``group_by`` (a subset of ``DIMENSIONS``) over the jobs ``user`` may view.

    Each row: ``{team, model, month, jobs, wall_time_s, cpu_time_s, gpu_time_s, cost, currency}``;
    a dimension not grouped by is None (``model`` groups by team too), ``month`` reads
    ``YYYY-MM``, times are seconds, ``cost`` is in ``currency``. ``month`` (a first day; with
    ``months``, the last of that many months up to it) and ``team_slug`` narrow the jobs. One
    query. Raises ValueError for an unknown dimension.
    """
    unknown = sorted(set(group_by) - set(DIMENSIONS))
    if unknown or not group_by:
        raise ValueError(f"group_by: one or more of {', '.join(DIMENSIONS)}; not {', '.join(unknown)}")
    jobs = Job.objects.restrict(user).exclude(kind=JobKind.TRACKED).order_by()
    if month is not None:
        start = month_bounds(months_before(month, months - 1))[0]
        jobs = jobs.filter(created_at__gte=start, created_at__lt=month_bounds(month)[1])
    if team_slug:
        jobs = jobs.filter(team__slug=team_slug)
    keys: dict[str, Any] = {}
    if "team" in group_by or "model" in group_by:
        keys["team_key"] = F("team__slug")
    if "model" in group_by:
        keys["model_key"] = Coalesce(F("registered_model__name"), F("model_version__model__name"))
    if "month" in group_by:
        keys["month_key"] = TruncMonth("created_at")
    rows = (
        jobs.values(**keys)
        .annotate(
            jobs=Count("id"),
            wall_time_s=_summed("wall_time_s"),
            cpu_time_s=_summed("cpu_time_s"),
            gpu_time_s=_summed("gpu_time_s"),
            cost=_summed("cost"),
        )
        .order_by(*keys)
    )
    currency = settings.STEWARD_CURRENCY
    return [
        {
            "team": row.get("team_key"),
            "model": row.get("model_key"),
            "month": row["month_key"].strftime("%Y-%m") if row.get("month_key") else None,
            "jobs": row["jobs"],
            "wall_time_s": row["wall_time_s"],
            "cpu_time_s": row["cpu_time_s"],
            "gpu_time_s": row["gpu_time_s"],
            "cost": row["cost"],
            "currency": currency,
        }
        for row in rows
    ]


GIB = 1024**3


def storage_rows(user: User | AnonymousUser, *, team_slug: str | None = None) -> list[dict[str, Any]]:
    """What the artifacts of the teams ``user`` may view take and cost a month, per team and tier
    (``governance.queries.storage_by_team``: live dataset and model versions, each stored object
    once per team, cold ones at their compressed size).

    Each row: ``{team, tier, objects, bytes, price_per_gib_month, monthly_cost, currency}``,
    sorted by team slug then tier; the price is ``STEWARD_STORAGE_PRICE_PER_GIB_MONTH`` of the
    tier (a GiB is 2**30 bytes, as object stores bill). ``team_slug`` narrows to one team.
    """
    scope = team_scope(user, VIEW)
    teams = Team.objects.all() if scope is ALL_TEAMS else Team.objects.filter(pk__in=scope)
    if team_slug:
        teams = teams.filter(slug=team_slug)
    slugs = dict(teams.values_list("pk", "slug"))
    prices = settings.STEWARD_STORAGE_PRICE_PER_GIB_MONTH
    rows = []
    for (team_id, tier), (objects, size) in storage_by_team(list(slugs)).items():
        price = float(prices.get(tier, 0.0))
        rows.append(
            {
                "team": slugs[team_id],
                "tier": tier,
                "objects": objects,
                "bytes": size,
                "price_per_gib_month": price,
                "monthly_cost": round(size / GIB * price, 6),
                "currency": settings.STEWARD_CURRENCY,
            }
        )
    return sorted(rows, key=lambda row: (row["team"], row["tier"]))


def budget_lines(
    team_ids: Sequence[int] | None, now: datetime.datetime | None = None
) -> list[dict[str, Any]]:
    """Each budget of ``team_ids`` (None: every team) with its month-to-date spend, in one query:
    ``{budget, team, limit, spent, is_over, holds_jobs, month}`` sorted by team slug."""
    first_day = month_start(now)
    start, end = month_bounds(first_day)
    # Tracked runs' cost is null, so the sum leaves them out without a condition.
    this_month = Q(team__jobs__created_at__gte=start, team__jobs__created_at__lt=end)
    budgets = Budget.objects.select_related("team").annotate(
        spent=Coalesce(Sum("team__jobs__cost", filter=this_month), Value(0.0), output_field=FloatField())
    )
    if team_ids is not None:
        budgets = budgets.filter(team_id__in=team_ids)
    return [
        {
            "budget": budget,
            "team": budget.team,
            "limit": budget.monthly_limit,
            "spent": budget.spent,
            "is_over": is_over_budget(budget.spent, budget),
            "holds_jobs": budget.holds_jobs,
            "month": first_day.strftime("%Y-%m"),
        }
        for budget in budgets.order_by("team__slug")
    ]

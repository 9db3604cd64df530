"""Keeping a governed row's django-celery-beat ``PeriodicTask`` in step with it (monitors, job
schedules): one helper, so every scheduled kind creates, updates, disables and deletes its beat
entry the same way, inside the action's transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask


@dataclass(frozen=True)
class Cron:
    """Five cron fields (``minute hour day-of-month month day-of-week``) read in ``timezone``."""

    minute: str
    hour: str
    day_of_month: str
    month_of_year: str
    day_of_week: str
    timezone: str = "UTC"

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> Cron:
        """Split a five-field cron string; raises ValueError unless it has exactly five fields
        (the fields' values are checked by ``celery.schedules.crontab``, see ``check``)."""
        if not expression.isascii():
            # int() reads a full-width digit as its ASCII one: celery would accept what cron does not.
            raise ValueError(f"ASCII characters only: {expression!r}")
        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(
                f"five fields (minute hour day-of-month month day-of-week), got {len(fields)}: {expression!r}"
            )
        minute, hour, day_of_month, month_of_year, day_of_week = fields
        return cls(minute, hour, day_of_month, month_of_year, day_of_week, timezone)

    def check(self) -> None:
        """Raise ValueError when celery's crontab parser refuses a field (``61``, ``*/0``, ``mon-xyz``)."""
        from celery.schedules import crontab

        # django-celery-beat stores each field in a column of its own length (64 for the month
        # and the day of week): a longer field would fail at the database, not here.
        for name in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week"):
            most = CrontabSchedule._meta.get_field(name).max_length
            if most is not None and len(getattr(self, name)) > most:
                raise ValueError(f"the {name.replace('_', '-')} field is longer than {most} characters")
        crontab(
            minute=self.minute,
            hour=self.hour,
            day_of_month=self.day_of_month,
            month_of_year=self.month_of_year,
            day_of_week=self.day_of_week,
        )


def keep_periodic_task(
    task: PeriodicTask | None,
    *,
    name: str,
    task_name: str,
    args: list[Any],
    is_enabled: bool,
    description: str,
    every_minutes: int | None = None,
    cron: Cron | None = None,
) -> PeriodicTask | None:
    """Create or update ``task`` (a row's current beat entry, or None) to run ``task_name(*args)``
    every ``every_minutes`` or on ``cron``; with neither, delete it. Returns the entry now in
    force (None when deleted): the caller stores it on its row. Runs in the caller's transaction.
    """
    if every_minutes is None and cron is None:
        if task is not None:
            task.delete()
        return None
    if task is None:
        task = PeriodicTask(name=name)
    if cron is not None:
        task.crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=cron.minute,
            hour=cron.hour,
            day_of_month=cron.day_of_month,
            month_of_year=cron.month_of_year,
            day_of_week=cron.day_of_week,
            timezone=cron.timezone,
        )
        task.interval = None
    else:
        task.interval = IntervalSchedule.objects.filter(
            every=every_minutes, period=IntervalSchedule.MINUTES
        ).first() or IntervalSchedule.objects.create(every=every_minutes, period=IntervalSchedule.MINUTES)
        task.crontab = None
    task.task = task_name
    task.args = json.dumps(args)
    task.enabled = is_enabled
    task.description = description[:200]
    task.save()
    return task

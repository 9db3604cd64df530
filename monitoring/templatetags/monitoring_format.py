"""How monitoring pages write a row filter and a schedule, one way on every page (issue 14: a
new user found ``{'yr': 0}`` on one page and ``{"yr": 0}`` on the next, and "every 1440
minutes" where the demo said "daily")."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def where_text(where: Any) -> str:
    """A row filter (``{"yr": 0}``) as JSON, keys sorted; "" for none."""
    return json.dumps(where, sort_keys=True, ensure_ascii=False) if where else ""


@register.filter
def schedule_text(minutes: int | None) -> str:
    """A schedule in minutes as people say it: "daily", "hourly", "every 6 hours", "every 15
    minutes"; "on request only" for none."""
    if not minutes:
        return "on request only"
    if minutes % 1440 == 0:
        days = minutes // 1440
        return "daily" if days == 1 else f"every {days} days"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "hourly" if hours == 1 else f"every {hours} hours"
    return f"every {minutes} minutes"

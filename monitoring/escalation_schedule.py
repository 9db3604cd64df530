"""When each notification of an unacknowledged alert goes out, counted from the alert's opening.

No Django import. Derived step by step from ``monitoring.escalation.step_at`` and ``next_due``,
the functions ``do_escalate_alert`` sends with, so the escalation-policy page cannot disagree with
what is sent (issue 8: the page said nothing more was sent after the last level's delay had passed
once more, 30 minutes after the last notification in its example; the code sends nothing after the
last notification itself). Times are nominal: a beat that runs late shifts every later step.

    levels = [Level(delay=15 min, repeat=1), Level(delay=30 min, repeat=0)]
    schedule(levels) -> sends at 0 (level 0), 15 (level 0, repeat 1), 30 (level 1)
    level_starts(levels) -> [0, 30]; last_send_after(levels) -> 30
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from monitoring.escalation import Level, Step, next_due, step_at

# Any instant will do: next_due adds a delay to a datetime, and only the differences are kept.
_ANCHOR = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Send:
    """One notification step: which ``step`` it is and how long after the alert opened it goes out."""

    step: Step
    after: datetime.timedelta


def schedule(levels: Sequence[Level]) -> list[Send]:
    """Every step of the policy in order, with its time after opening (the first is at 0).

    ``sum(level.repeat + 1)`` entries; empty for a policy without levels.
    """
    sends: list[Send] = []
    step = step_at(levels, 0)
    at = _ANCHOR
    while step is not None:
        sends.append(Send(step, at - _ANCHOR))
        due = next_due(levels, step, at)
        if due is None:
            break
        at, step = due, step_at(levels, step.index + 1)
    return sends


def level_starts(levels: Sequence[Level]) -> list[datetime.timedelta]:
    """When each level's first notification goes out, after opening; one entry per level."""
    first: dict[int, datetime.timedelta] = {}
    for send in schedule(levels):
        first.setdefault(send.step.level, send.after)
    return [first[position] for position in range(len(levels))]


def last_send_after(levels: Sequence[Level]) -> datetime.timedelta | None:
    """When the last notification goes out, after opening (nothing is sent after it); None without levels."""
    sends = schedule(levels)
    return sends[-1].after if sends else None

"""The arithmetic of an escalation policy: which level and repeat a step is, and when the next is due.

No Django import. A policy is a list of levels; level ``i`` is notified ``1 + repeat`` times,
``delay`` apart, and after its last notification plus another ``delay`` without an acknowledgement
the alert moves to level ``i + 1``. Steps are numbered from 0 across the whole policy:

    levels = [Level(delay=15 min, repeat=1), Level(delay=30 min, repeat=0)]
    step 0 -> (level 0, repeat 0) at t0        step 1 -> (level 0, repeat 1) at t0 + 15 min
    step 2 -> (level 1, repeat 0) at t0 + 30   after step 2: nothing more (the policy is exhausted)
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    delay: datetime.timedelta
    repeat: int


@dataclass(frozen=True)
class Step:
    index: int
    level: int
    repeat: int


def step_at(levels: Sequence[Level], index: int) -> Step | None:
    """The ``index``-th step of the policy, or None once every level's repeats are used up."""
    if index < 0:
        raise ValueError(f"step index must be >= 0, got {index}")
    remaining = index
    for position, level in enumerate(levels):
        if remaining <= level.repeat:
            return Step(index, position, remaining)
        remaining -= level.repeat + 1
    return None


def next_due(levels: Sequence[Level], sent: Step, sent_at: datetime.datetime) -> datetime.datetime | None:
    """When the step after ``sent`` is due: ``sent_at`` plus the sent level's delay; None if none follows."""
    if step_at(levels, sent.index + 1) is None:
        return None
    return sent_at + levels[sent.level].delay


# When each notification goes out, counted from the alert's opening, derived step by step from
# step_at and next_due (what do_escalate_alert sends with), so the escalation-policy page cannot
# disagree with what is sent (issue 8: the page once promised a send 30 minutes after the last one).
# Times are nominal: a beat that runs late shifts every later step.
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

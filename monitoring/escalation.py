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

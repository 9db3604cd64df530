"""Start windows: when a job may first be sent to a worker (issue 16, scheduling for cost).

A spec may ask for an off-peak window, ``"start_window": {"start": "22:00", "end": "06:00",
"timezone": "Europe/Paris"}`` (local wall-clock times; ``end`` before ``start`` spans midnight;
the timezone an IANA name, default UTC), or for a fixed time, ``"not_before": "<ISO 8601 with an
offset>"``. ``start_time`` turns either into the instant the job may start: now when inside the
window, else the window's next opening. The window says when a job is *sent*; a job still waiting
for a free worker when the window closes runs anyway (a deadline is the wall-time limit's job).

No Django import: the API validates specs with it, and it is tested with plain datetimes.
"""

from __future__ import annotations

import datetime
import functools
import re
import zoneinfo
from typing import Any

from runners.specs import SUBMISSION_FIELDS, SpecError

WINDOW_KEYS = ("start", "end", "timezone")
MOST_PAST = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
MOST_FUTURE = datetime.datetime(9000, 1, 1, tzinfo=datetime.UTC)
CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_timezone(name: Any, field: str) -> zoneinfo.ZoneInfo:
    """The IANA timezone ``name`` (``"Europe/Paris"``, ``"UTC"``); raises SpecError naming
    ``field`` when it is not a string naming a zone of the system's tz database."""
    if not isinstance(name, str) or not name or len(name) > 64:
        raise SpecError(f"{field}: an IANA timezone name such as 'Europe/Paris', got {name!r}")
    # Only the tz database's own names: ZoneInfo also opens "localtime" (whatever zone the server
    # runs in), "posix/..." and "right/..." (leap-second clocks) files.
    if name not in _zone_names():
        raise SpecError(f"{field}: unknown timezone {name!r} (an IANA name such as 'Europe/Paris')")
    return zoneinfo.ZoneInfo(name)


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() - {"localtime", "Factory"})


def _clock(value: Any, field: str) -> datetime.time:
    match = CLOCK.match(value) if isinstance(value, str) else None
    if match is None:
        raise SpecError(f"{field}: a 24-hour time HH:MM such as '22:00', got {value!r}")
    return datetime.time(int(match[1]), int(match[2]))


def parse_start_window(raw: Any) -> dict[str, str]:
    """Validate a spec's ``start_window``; returns it with its timezone filled in (default UTC).

    Raises SpecError naming ``start_window.<key>`` for an unknown key, a time that is not HH:MM,
    an unknown timezone, or an empty window (``start`` equal to ``end``)."""
    if not isinstance(raw, dict):
        raise SpecError('start_window: a JSON object {"start": "HH:MM", "end": "HH:MM", "timezone": ...}')
    unknown = sorted(set(raw) - set(WINDOW_KEYS))
    if unknown:
        raise SpecError(
            f"start_window: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(WINDOW_KEYS)}"
        )
    start = _clock(raw.get("start"), "start_window.start")
    end = _clock(raw.get("end"), "start_window.end")
    if start == end:
        raise SpecError("start_window.end: must differ from start (an empty window never opens)")
    zone = raw.get("timezone", "UTC")
    parse_timezone(zone, "start_window.timezone")
    return {"start": raw["start"], "end": raw["end"], "timezone": zone}


def parse_not_before(raw: Any) -> datetime.datetime:
    """A spec's ``not_before``: an ISO 8601 date and time with its UTC offset
    (``2026-12-24T22:00:00+01:00``). Raises SpecError naming ``not_before`` otherwise: a time
    without an offset would be read in whatever zone the server runs in."""
    if not isinstance(raw, str):
        raise SpecError(
            f"not_before: an ISO 8601 time with its offset, e.g. 2026-12-24T22:00:00+01:00; got {raw!r}"
        )
    try:
        moment = datetime.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise SpecError(f"not_before: not an ISO 8601 time: {raw!r}") from exc
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise SpecError(f"not_before: give the UTC offset (e.g. +01:00 or Z): {raw!r}")
    if not MOST_PAST <= moment <= MOST_FUTURE:
        # Far enough from year 1 and 9999 that converting to UTC (and the database) cannot overflow.
        raise SpecError(f"not_before: between years 1970 and 9000, got {raw!r}")
    # In UTC: PostgreSQL takes offsets up to +-15:59 only (a +16:00 could not be stored).
    return moment.astimezone(datetime.UTC)


def window_opening(window: dict[str, str], now: datetime.datetime) -> datetime.datetime:
    """``now`` if it falls inside ``window`` (a parsed ``start_window``), else the next time the
    window opens, as an aware datetime in the window's zone.

    Inside means local ``start <= time < end`` (for a window over midnight: ``time >= start`` or
    ``time < end``). Local times are resolved by ``zoneinfo`` (PEP 495): a start inside a
    daylight-saving gap is read with the offset before the change, i.e. an hour later in UTC.
    """
    zone = zoneinfo.ZoneInfo(window.get("timezone", "UTC"))
    start, end = _clock(window["start"], "start_window.start"), _clock(window["end"], "start_window.end")
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    inside = start <= clock < end if start < end else (clock >= start or clock < end)
    if inside:
        return local
    opening = datetime.datetime.combine(local.date(), start, tzinfo=zone)
    if opening <= local:
        opening = datetime.datetime.combine(local.date() + datetime.timedelta(days=1), start, tzinfo=zone)
    # Round trip through UTC: a wall-clock time that does not exist (a DST gap) gets a real instant.
    return opening.astimezone(datetime.UTC).astimezone(zone)


def start_time(
    spec: dict[str, Any], now: datetime.datetime
) -> tuple[dict[str, Any], datetime.datetime | None]:
    """Validate the window fields of ``spec`` and say when the job may start.

    Returns ``(fields, not_before)``: the window fields to keep in the stored spec (normalised),
    and the instant the job may be sent (``now`` inside a window; None when the spec asks for
    neither). Raises SpecError naming the field; asking for both is refused (which would win?).
    """
    # The spec fields this module reads (they do not reach the training or inference engine).
    asked = SUBMISSION_FIELDS & set(spec)
    if not asked:
        return {}, None
    if len(asked) == 2:
        raise SpecError("not_before: give either start_window or not_before, not both")
    if "start_window" in asked:
        window = parse_start_window(spec["start_window"])
        return {"start_window": window}, window_opening(window, now)
    return {"not_before": spec["not_before"]}, parse_not_before(spec["not_before"])

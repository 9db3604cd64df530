"""Keyset ("seek") pagination: ``seek`` for any unique ordering (the API's cursor pages use it),
and pages by ``(timestamp, id)`` descending for the audit trail's UI.

A page is ``WHERE (timestamp, id) < cursor ORDER BY timestamp DESC, id DESC LIMIT n + 1``: an
index range scan whose cost does not grow with the page's depth, and no COUNT over the table,
so the first page and the ten-thousandth cost the same at a million events.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
# The largest id or count every supported database stores (PostgreSQL bigint, SQLite INTEGER).
# A larger one in a query is an OverflowError in SQLite's adapter, so input is bounded by it.
MAX_BIGINT = 2**63 - 1


class InvalidCursor(ValueError):
    """A ``before``/``after`` value that is not a cursor this module wrote."""


def cursor_of(row: Any) -> str:
    """``"<microseconds since the epoch>-<id>"`` of ``row``: exact, URL-safe, opaque enough."""
    micros = (row.timestamp - EPOCH) // datetime.timedelta(microseconds=1)
    return f"{micros}-{row.pk}"


def is_utc_representable(value: datetime.datetime) -> bool:
    """Whether ``value`` (aware) converts to UTC inside ``datetime``'s years 1..9999.

    ``0001-01-01T00:00+05:00`` and ``9999-12-31T23:59-05:00`` parse but do not convert: the
    database adapters convert to UTC and raise OverflowError, so such input must be refused first.
    """
    try:
        value.astimezone(datetime.UTC)
    except OverflowError:
        return False
    return True


def parse_cursor(value: str) -> tuple[datetime.datetime, int]:
    """The ``(timestamp, id)`` a cursor names. Raises InvalidCursor for anything else."""
    micros, separator, pk = value.rpartition("-")
    try:
        if not separator or not pk.isascii() or not pk.isdigit() or int(pk) > MAX_BIGINT:
            raise ValueError(value)
        return EPOCH + datetime.timedelta(microseconds=int(micros)), int(pk)
    except (ValueError, OverflowError) as exc:
        raise InvalidCursor(f"not a page cursor: {value!r}") from exc


def seek(queryset: QuerySet, ordering: Sequence[str], key: Sequence[Any]) -> QuerySet:
    """The rows of ``queryset`` strictly after ``key`` in ``ordering`` (lexicographic order).

    ``ordering`` is field names or lookup paths, ``-`` for descending, ending in a unique key (an
    id) so that "after" is exact; ``key`` holds the last row's values, one per field. The first
    field's ``>=`` (``<=`` descending) is the index range; the OR keeps the rows strictly after.
    Rows inserted meanwhile land before or after ``key``, never shift what follows it (no
    duplicates, no skips, unlike an offset).
    """
    after, equal = Q(), Q()
    for field, value in zip(ordering, key, strict=True):
        name = field.removeprefix("-")
        after |= equal & Q(**{f"{name}__{'lt' if field.startswith('-') else 'gt'}": value})
        equal &= Q(**{name: value})
    first = ordering[0].removeprefix("-")
    within = Q(**{f"{first}__{'lte' if ordering[0].startswith('-') else 'gte'}": key[0]})
    return queryset.filter(within & after)


def older_than(queryset: QuerySet, timestamp: datetime.datetime, pk: int) -> QuerySet:
    """The rows of ``queryset`` after ``(timestamp, pk)`` in ``-timestamp, -id`` order."""
    return seek(queryset, ("-timestamp", "-id"), (timestamp, pk))


@dataclass(frozen=True)
class KeysetPage:
    """One page, newest first, with the cursors of its neighbours (None at either end)."""

    rows: list[Any]
    newer: str | None
    older: str | None
    is_first: bool


def keyset_page(
    queryset: QuerySet, *, before: str | None = None, after: str | None = None, size: int = 50
) -> KeysetPage:
    """The ``size`` rows of ``queryset`` just older than ``before`` (or just newer than ``after``;
    the newest rows when neither is given), ordered by ``-timestamp, -id``.

    One query (``size + 1`` rows, the extra one tells whether more follow). Raises
    InvalidCursor for a malformed cursor.
    """
    if after:
        timestamp, pk = parse_cursor(after)
        newer_rows = seek(queryset, ("timestamp", "id"), (timestamp, pk))
        rows = list(newer_rows.order_by("timestamp", "id")[: size + 1])
        has_newer = len(rows) > size
        rows = rows[:size][::-1]
        return KeysetPage(
            rows=rows,
            newer=cursor_of(rows[0]) if has_newer else None,
            older=cursor_of(rows[-1]) if rows else None,
            is_first=not has_newer,
        )
    if before:
        queryset = older_than(queryset, *parse_cursor(before))
    rows = list(queryset.order_by("-timestamp", "-id")[: size + 1])
    has_older = len(rows) > size
    rows = rows[:size]
    return KeysetPage(
        rows=rows,
        newer=cursor_of(rows[0]) if before and rows else None,
        older=cursor_of(rows[-1]) if has_older else None,
        is_first=not before,
    )

"""Cursor (keyset) pagination for every list of Steward's API (issue 9).

DRF's ``CursorPagination`` keeps only the first ordering field's value in its cursor and skips
an offset of rows that share it: a row inserted among those ties while a client pages shifts
the offset, so a row is shown twice. Here the cursor holds the last row's whole key (every
ordering field, ending in the id) and the next page is ``governance.keyset.seek`` after it, so
pages are exact under concurrent inserts; DRF's link building is kept as is (with unique
positions its offset is always 0). Cursors are signed: a forged or edited one is a 400
"Invalid cursor" on ``cursor``, never a value the database cannot take.
"""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from collections.abc import Sequence
from typing import Any

from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F, QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import Cursor, CursorPagination, _reverse_ordering
from rest_framework.request import Request
from rest_framework.utils.urls import replace_query_param

from governance.keyset import seek

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
_SALT = "steward.api.cursor"
_UNIQUE = {"id", "pk"}


def _plain(value: Any) -> Any:
    """``value`` as JSON keeps it exactly (datetimes to the microsecond, unlike DjangoJSONEncoder)."""
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    return value


class KeysetCursorPagination(CursorPagination):
    """Pages of ``page_size`` rows (default 50, at most 1,000) with ``next``/``previous`` links.

    The order is the view's ``ordering`` (a tuple of field names or lookup paths), else the
    queryset's ``order_by``, else the model's ``Meta.ordering``; the id is appended when it is
    not there, so every row has a unique key. One query per page (``page_size + 1`` rows), no
    COUNT. A ``page_size`` that is not a whole number from 1 to 1,000 is a 400 naming the limit.
    """

    page_size = DEFAULT_PAGE_SIZE
    max_page_size = MAX_PAGE_SIZE
    page_size_query_param = "page_size"
    page_size_query_description = f"Rows per page, 1 to {MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE})."

    def query_params(self) -> set[str]:
        """The query parameters this pagination reads."""
        return {self.cursor_query_param, self.page_size_query_param}

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 7 and 1 <= int(raw) <= self.max_page_size):
            raise ValidationError(
                {
                    self.page_size_query_param: [
                        f"Enter a whole number from 1 to {self.max_page_size} (the most rows a page holds)."
                    ]
                }
            )
        return int(raw)

    def get_ordering(self, request: Request, queryset: QuerySet, view: Any = None) -> tuple[str, ...]:
        ordering = list(
            getattr(view, "ordering", None) or queryset.query.order_by or queryset.model._meta.ordering or ()
        )
        if not all(isinstance(field, str) and field and field != "?" for field in ordering):
            raise ImproperlyConfigured(f"{type(view).__name__}: cursor pages order by fields, not {ordering}")
        if not _UNIQUE & {field.removeprefix("-") for field in ordering}:
            descending = bool(ordering) and ordering[0].startswith("-")
            ordering.append("-pk" if descending else "pk")
        return tuple(ordering)

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: Any = None) -> list[Any]:
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.ordering = self.get_ordering(request, queryset, view)
        # Lookup paths (team__name) are read from an annotation: no query per row.
        self.key_attributes = [
            f"cursor_key_{index}" if "__" in field else field.removeprefix("-")
            for index, field in enumerate(self.ordering)
        ]
        paths = {
            attribute: F(field.removeprefix("-"))
            for attribute, field in zip(self.key_attributes, self.ordering, strict=True)
            if attribute.startswith("cursor_key_")
        }
        if paths:
            queryset = queryset.annotate(**paths)
        self.cursor = self.decode_cursor(request)
        reverse = bool(self.cursor and self.cursor.reverse)
        # DRF's stubs type the position as an int; here it is the key's JSON.
        position: Any = self.cursor.position if self.cursor else None
        ordering = _reverse_ordering(self.ordering) if reverse else self.ordering
        queryset = queryset.order_by(*ordering)
        if position is not None:
            queryset = seek(queryset, ordering, json.loads(position))
        rows = list(queryset[: self.page_size + 1])
        self.page = rows[: self.page_size]
        following: Any = None
        if len(rows) > self.page_size:  # the extra row: another page follows
            following = self._get_position_from_instance(rows[-1], self.ordering)
        if reverse:
            self.page.reverse()
            self.has_next, self.next_position = position is not None, position
            self.has_previous, self.previous_position = following is not None, following
        else:
            self.has_next, self.next_position = following is not None, following
            self.has_previous, self.previous_position = position is not None, position
        self.display_page_controls = (self.has_previous or self.has_next) and self.template is not None
        return self.page

    def _get_position_from_instance(self, instance: Any, ordering: Sequence[str]) -> str:
        """The row's whole key as canonical JSON (comparable as a string, exact when decoded)."""
        return json.dumps([_plain(getattr(instance, attribute)) for attribute in self.key_attributes])

    def encode_cursor(self, cursor: Cursor) -> str:
        payload = {"o": self.ordering, "p": cursor.position, "r": int(cursor.reverse)}
        token = signing.dumps(payload, salt=_SALT, compress=True)
        return replace_query_param(str(self.base_url), self.cursor_query_param, token)

    def decode_cursor(self, request: Request) -> Cursor | None:
        token = request.query_params.get(self.cursor_query_param)
        if token is None:
            return None
        try:
            payload = signing.loads(token, salt=_SALT)
            position, reverse = payload["p"], bool(payload["r"])
            if tuple(payload["o"]) != self.ordering:
                raise ValueError("a cursor of a list in another order")
        except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
            # A 400 naming the parameter: the request is wrong, the list exists.
            raise ValidationError({self.cursor_query_param: [str(self.invalid_cursor_message)]}) from exc
        return Cursor(offset=0, reverse=reverse, position=position)

"""THE audit leaf: which fields an event's Merkle leaf holds, how each is written, and the two
ways of encoding it that must agree byte for byte (issue 8: one definition of the leaf).

``LEAF_FIELD_KINDS`` and ``PERSONAL_FIELD_KINDS`` are the one field list. ``leaf_for`` builds
the leaf object from it and ``governance.merkle`` encodes it (``canonical_json``); the
verifier's fast path (``row_leaf_hash``) splices the same canonical text from per-field
encodings, with its format strings, the order of the database row it reads
(``ROW_COLUMNS``) and each value's encoder all generated from that list here.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from django.db import models, transaction
from django.db.models import TextField
from django.db.models.functions import Cast

from governance import merkle
from governance.models import AuditEvent

FieldKind = Literal["int", "int?", "str", "time", "json?"]

# The non-personal fields a leaf holds as they are (how each is written), and the personal
# ones it only commits to. The order is the database row's order (``ROW_COLUMNS``); the
# encoded leaf sorts its keys.
LEAF_FIELD_KINDS: dict[str, FieldKind] = {
    "id": "int",
    "timestamp": "time",
    "action": "str",
    "object_type": "str",
    "object_id": "str",
    "team_id": "int?",
    "actor_id": "int?",
    "on_behalf_of_id": "int?",
    "request_id": "str",
    "task_id": "str",
}
PERSONAL_FIELD_KINDS: dict[str, FieldKind] = {
    "actor_label": "str",
    "on_behalf_of_label": "str",
    "object_repr": "str",
    "before": "json?",
    "after": "json?",
}
LEAF_FIELDS = tuple(LEAF_FIELD_KINDS)
PERSONAL_FIELDS = tuple(PERSONAL_FIELD_KINDS)
EVENT_COLUMNS = LEAF_FIELDS + PERSONAL_FIELDS
# A verifier row: the event's leaf index and stored commitment, then the event's columns.
TREE_COLUMNS = ("leaf__leaf_index", "leaf__personal_commitment")
ROW_COLUMNS = (*TREE_COLUMNS, *EVENT_COLUMNS)
ROW_POSITION = {name: position for position, name in enumerate(ROW_COLUMNS)}
ERASED = "[erased]"


def iso_timestamp(value: datetime.datetime | str) -> str:
    """``value`` in UTC as ISO 8601 with microseconds, e.g. ``2026-03-01T12:00:00.000000+00:00``:
    the form leaves and checkpoint bodies hash, identical on every database backend. A string
    is taken as already in that form (``IsoTimestamp`` has PostgreSQL write it)."""
    if isinstance(value, str):
        return value
    return value.astimezone(datetime.UTC).isoformat(timespec="microseconds")


class IsoTimestamp(models.Func):
    """PostgreSQL: a timestamptz as ``iso_timestamp`` writes it, formatted by the server, which
    saves ``audit_verify`` parsing a million datetimes. Years 1000-9999 only (like the app)."""

    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    output_field = models.CharField()


# --- the leaf object (the general path) ---------------------------------------------------------


def leaf_for(
    event: AuditEvent | Mapping[str, Any], salt: bytes | None, *, commitment: str | None = None
) -> dict[str, Any]:
    """The JSON object an event's Merkle leaf hashes (``merkle.leaf_hash(canonical_json(...))``).

    ``{"id", "timestamp" (``iso_timestamp``), "action", "object_type", "object_id", "team_id",
    "actor_id", "on_behalf_of_id", "request_id", "task_id", "personal_commitment"}`` where the
    commitment is ``merkle.personal_commitment`` of ``{"actor_label", "on_behalf_of_label",
    "object_repr", "before", "after"}`` under ``salt`` (32 bytes). ``event`` is an AuditEvent or
    a mapping with those attribute names (a ``.values()`` row). When the details are erased
    (``salt`` None) the stored ``commitment`` (hex) stands in for them.

    Raises ValueError for an erased event without ``commitment``, a salt of the wrong size, or
    personal details canonical JSON cannot encode.
    """
    if not isinstance(event, Mapping):
        event = {name: getattr(event, name) for name in EVENT_COLUMNS}
    leaf = {name: event[name] for name in LEAF_FIELDS}
    leaf["timestamp"] = iso_timestamp(leaf["timestamp"])
    if salt is not None:
        commitment = merkle.personal_commitment({name: event[name] for name in PERSONAL_FIELDS}, salt)
    elif commitment is None:
        raise ValueError(f"event {leaf['id']} has no salt: its stored personal commitment is needed")
    leaf[merkle.PERSONAL_COMMITMENT_KEY] = commitment
    return leaf


def personal_details(event: AuditEvent) -> dict[str, Any]:
    """The fields ``leaf_for`` commits to instead of hashing them, by name."""
    return {name: getattr(event, name) for name in PERSONAL_FIELDS}


def hash_leaf(leaf: Mapping[str, Any]) -> bytes:
    """RFC 9162 leaf hash of a ``leaf_for`` object: ``SHA-256(0x00 || canonical JSON)``."""
    return merkle.leaf_hash(merkle.canonical_json(leaf))


# --- the spliced encoding (audit_verify's fast path), derived from the field kinds -----------

_encode_str = json.encoder.encode_basestring
# The database's own JSON output: one value without surrounding whitespace, which raw_decode
# reads at half the cost of json.loads (``_json_value`` still refuses anything after it).
_decode_json = json.JSONDecoder().raw_decode


def _json_value(text: str) -> Any:
    value, end = _decode_json(text)
    if end != len(text):
        raise ValueError(f"extra data after the JSON value at character {end}")
    return value


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"{value!r} is not an integer")
    return value


# How each kind is written as canonical JSON, as an expression of the value ``{0}`` (a row
# column). The "time" value's quotes are in the format: an ISO timestamp has nothing to escape.
# A value of another type raises TypeError, and the caller takes the general path.
_KIND_EXPRESSIONS: dict[FieldKind, str] = {
    "int": "_int({0})",
    "int?": '("null" if {0} is None else _int({0}))',
    "str": "_encode_str({0})",
    "time": "iso_timestamp({0})",
    "json?": '("null" if {0} is None else canonical_json_text(_json_value({0})))',
}


def _splice(kinds: Mapping[str, FieldKind], values: Mapping[str, str]) -> tuple[str, str]:
    """The ``%``-format of ``canonical_json`` of an object with these keys (code-point order, no
    whitespace) and the tuple expression of its values (``values`` overrides a key's)."""
    names = sorted(kinds)
    parts = [_encode_str(name) + (':"%s"' if kinds[name] == "time" else ":%s") for name in names]
    expressions = [values.get(name) or _KIND_EXPRESSIONS[kinds[name]].format(name) for name in names]
    return "{" + ",".join(parts) + "}", "(" + ", ".join(expressions) + ",)"


_PERSONAL_FORMAT, _PERSONAL_VALUES = _splice(PERSONAL_FIELD_KINDS, {})
# The leaf's keys include the commitment, which is computed, not read from the row.
_LEAF_FORMAT, _LEAF_VALUES = _splice(
    {**LEAF_FIELD_KINDS, merkle.PERSONAL_COMMITMENT_KEY: "str"},
    {merkle.PERSONAL_COMMITMENT_KEY: "_encode_str(commitment)"},
)
_SPLICED_SOURCE = f"""
def _spliced_leaf_hash(row, salt):
    ({", ".join(ROW_COLUMNS)},) = row
    if salt is not None:
        personal = _PERSONAL_FORMAT % {_PERSONAL_VALUES}
        commitment = merkle.personal_commitment_of_json(personal.encode("utf-8"), salt)
    else:
        commitment = leaf__personal_commitment
        if commitment is None:
            raise ValueError(f"event {{id}} has no salt: its stored personal commitment is needed")
    return merkle.leaf_hash((_LEAF_FORMAT % {_LEAF_VALUES}).encode("utf-8"))
"""


def _compile_splice() -> Callable[[Sequence[Any], bytes | None], bytes]:
    """``hash_leaf(leaf_for(...))`` of a ``ROW_COLUMNS`` row, spliced from per-field encodings
    instead of building, sorting and encoding two dicts per event: a third of audit_verify's
    time at a million events. Strings are quoted by the function the canonical encoder itself
    uses, so the bytes are identical (tests compare both paths). Raises TypeError on a value
    the splice does not expect and ValueError as ``leaf_for`` does.

    Compiled from ``_SPLICED_SOURCE``, generated from the field list above as ``namedtuple``
    and ``dataclasses`` generate theirs: a loop over the fields per row costs a fifth more.
    """
    namespace: dict[str, Any] = {
        "merkle": merkle,
        "canonical_json_text": merkle.canonical_json_text,
        "iso_timestamp": iso_timestamp,
        "_encode_str": _encode_str,
        "_int": _int,
        "_json_value": _json_value,
        "_LEAF_FORMAT": _LEAF_FORMAT,
        "_PERSONAL_FORMAT": _PERSONAL_FORMAT,
    }
    # The source holds only this module's constant field names and formats, never input.
    exec(compile(_SPLICED_SOURCE, f"<{__name__} splice>", "exec"), namespace)  # noqa: S102
    return namespace["_spliced_leaf_hash"]


_spliced_leaf_hash = _compile_splice()
_COMMITMENT = ROW_POSITION["leaf__personal_commitment"]


def row_leaf_hash(row: Sequence[Any], salt: bytes | None) -> bytes:
    """The leaf hash of one ``event_rows`` row (``ROW_COLUMNS``, before/after as the database's
    JSON text), under ``salt`` or, when None, the row's stored commitment. Raises ValueError
    (and TypeError or AttributeError for columns no event written by Steward holds) as
    ``leaf_for`` does."""
    try:
        return _spliced_leaf_hash(row, salt)
    except TypeError:
        event = {name: row[ROW_POSITION[name]] for name in EVENT_COLUMNS}
        for name in ("before", "after"):
            event[name] = None if event[name] is None else json.loads(event[name])
        return hash_leaf(leaf_for(event, salt, commitment=row[_COMMITMENT]))


def row_of(stored: Mapping[str, Any]) -> tuple[Any, ...]:
    """A ``ROW_COLUMNS`` row of an event given by column name, not yet in the tree."""
    return tuple(None if name in TREE_COLUMNS else stored[name] for name in ROW_COLUMNS)


def event_rows(low: int, high: int, *, sequenced: bool = True) -> models.QuerySet:
    """Events with ``low <= id < high`` (only those with a leaf when ``sequenced``) as
    ``ROW_COLUMNS`` tuples, before/after as JSON text (the timestamp as ``iso_timestamp`` text
    on PostgreSQL)."""
    events = AuditEvent.objects.filter(id__gte=low, id__lt=high).order_by()
    if sequenced:
        # The range on the leaf's own event_id column lets its index scan start at ``low`` too.
        events = events.filter(leaf__event_id__gte=low, leaf__event_id__lt=high)
    # JSON as text, decoded here: cheaper than the ORM's per-row converters at a million rows.
    events = events.annotate(before_text=Cast("before", TextField()), after_text=Cast("after", TextField()))
    renamed = {"before": "before_text", "after": "after_text"}
    if transaction.get_connection().vendor == "postgresql":
        events = events.annotate(timestamp_iso=IsoTimestamp("timestamp"))
        renamed["timestamp"] = "timestamp_iso"
    return events.values_list(*(renamed.get(name, name) for name in ROW_COLUMNS))

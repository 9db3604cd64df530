"""Writing audit events: the only writer of ``AuditEvent`` rows, and the snapshot of an object
an event records."""

from __future__ import annotations

import contextvars
import datetime
import decimal
import uuid
from typing import TYPE_CHECKING, Any

from django.db import models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from governance import merkle
from governance.audit.keys import stored_row_tag
from governance.audit.leaf import IsoTimestamp, iso_timestamp
from governance.models import AuditEvent, AuditPersonalData

if TYPE_CHECKING:
    from django.contrib.auth.models import User

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("steward_request_id", default="")

SYSTEM_ACTOR_LABEL = "system"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    return value


def snapshot(obj: models.Model | None) -> dict[str, Any] | None:
    """A JSON-able dict of ``obj``'s ``audit_fields`` (or all concrete fields), ids for relations."""
    if obj is None:
        return None
    names = getattr(obj, "audit_fields", None) or [f.attname for f in obj._meta.concrete_fields]
    return {name: _json_value(getattr(obj, name)) for name in names}


def _current_task_id() -> str:
    from celery import current_task

    if current_task and current_task.request and current_task.request.id:
        return current_task.request.id
    return ""


def record_audit_event(
    *,
    actor: User | None,
    action: str,
    obj: models.Model | None = None,
    object_type: str | None = None,
    object_id: str | int | None = None,
    object_repr: str | None = None,
    team_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    on_behalf_of: User | None = None,
) -> AuditEvent:
    """Append one audit event; must run inside the transaction of the change it records.

    ``actor`` is a user, or None for the system (a Celery task), in which case ``on_behalf_of``
    names the user who started the work. Object type/id/repr and team default from ``obj``.
    The event's salt (``AuditPersonalData``) is written with it: the sequencer later hashes a
    salted commitment to the personal fields into the event's Merkle leaf (``audit.leaf``).
    Raises RuntimeError outside ``transaction.atomic`` so no change commits without its event,
    and ValueError when ``before``/``after`` hold values a leaf cannot hash (NaN, infinities).
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("record_audit_event must run inside the transaction of the change")
    if obj is not None:
        object_type = object_type or obj._meta.model_name
        object_id = obj.pk if object_id is None else object_id
        object_repr = object_repr or str(obj)
        if team_id is None:
            team_id = _team_id_of(obj)
    # Refuse here, rolling the change back, rather than leave an event the sequencer cannot hash.
    merkle.canonical_json({"before": before, "after": after})
    values = {
        "timestamp": timezone.now(),
        "actor_id": actor.pk if actor is not None else None,
        "actor_label": actor.get_username() if actor is not None else SYSTEM_ACTOR_LABEL,
        "on_behalf_of_id": on_behalf_of.pk if on_behalf_of is not None else None,
        "on_behalf_of_label": on_behalf_of.get_username() if on_behalf_of is not None else "",
        "action": action,
        "object_type": object_type or "",
        "object_id": str(object_id if object_id is not None else ""),
        "object_repr": (object_repr or "")[:300],
        "team_id": team_id,
        "before": before,
        "after": after,
        "request_id": request_id_var.get(),
        "task_id": _current_task_id(),
    }
    event = AuditEvent(id=_insert_event_and_salt(connection, values), **values)
    event._state.adding, event._state.db = False, connection.alias
    return event


def _insert_event_and_salt(connection: BaseDatabaseWrapper, values: dict[str, Any]) -> int:
    """INSERT the event, then its fresh salt and tag (``AuditPersonalData``); return the
    event's id.

    The tag (``audit.keys.event_tag``) hashes the event's leaf as the database stored it: its
    id, and its JSON as the database normalised it (PostgreSQL returns both from the INSERT;
    SQLite keeps the text it was given). Plain statements with each field's own
    ``get_db_prep_save``: ``Model.save()`` and a read-back query would multiply the Python
    cost of every append (``benchmarks/bench_audit.py``).
    """
    quote = connection.ops.quote_name
    by_attname = {field.attname: field for field in AuditEvent._meta.concrete_fields}
    fields = [by_attname[attname] for attname in values]
    params = [field.get_db_prep_save(values[field.attname], connection) for field in fields]
    event_table = quote(AuditEvent._meta.db_table)
    salt_table = quote(AuditPersonalData._meta.db_table)
    insert_event = (
        f"INSERT INTO {event_table} ({', '.join(quote(field.column) for field in fields)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            timestamp_sql = IsoTimestamp.template % {"expressions": quote("timestamp")}
            cursor.execute(
                f"{insert_event} RETURNING id, {timestamp_sql}, CAST(before AS text), CAST(after AS text)",
                params,
            )
            event_id, timestamp, before, after = cursor.fetchone()
        else:
            cursor.execute(insert_event, params)
            event_id = connection.ops.last_insert_id(cursor, AuditEvent._meta.db_table, "id")
            cursor.execute(
                f"SELECT CAST(before AS text), CAST(after AS text) FROM {event_table} WHERE id = %s",  # noqa: S608
                [event_id],
            )
            (before, after), timestamp = cursor.fetchone(), iso_timestamp(values["timestamp"])
        stored = {**values, "id": event_id, "timestamp": timestamp, "before": before, "after": after}
        salt = merkle.new_salt()
        cursor.execute(
            f"INSERT INTO {salt_table} (event_id, salt, tag) VALUES (%s, %s, %s)",  # noqa: S608
            [event_id, salt.hex(), stored_row_tag(stored, salt)],
        )
    return event_id


def _team_id_of(obj: models.Model) -> int | None:
    if obj._meta.model_name == "team":
        return obj.pk
    if hasattr(obj, "team_id"):
        return obj.team_id
    team = getattr(obj, "team", None)
    return team.pk if team is not None else None

"""Erasing a person's details from the audit log without breaking its Merkle tree (issue 3).

A leaf hashes the event's non-personal fields plus a salted commitment to the personal ones
(``governance.audit.leaf``), so redacting those fields and deleting the salt keeps every leaf,
root and proof valid, and the verifiers report the details as erased, not tampered.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast

from governance.audit.keys import tag_stored_event
from governance.audit.leaf import ERASED
from governance.audit.record import record_audit_event
from governance.audit.sequencer import take_sequencer_lock
from governance.models import AuditEvent, AuditLeaf, AuditPersonalData
from governance.permissions import platform_roles

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def do_erase_personal_data(user: User, *, actor: User) -> int:
    """Erase ``user``'s personal details from the audit log without breaking it (issue 3).

    Under the sequencer's lock: every event naming ``user`` (as actor, on behalf of, as the
    object, or by username or e-mail in its description or before/after values) has those
    labels and strings replaced by "[erased]"; a sequenced event also loses its salt, so its
    leaf keeps the stored commitment and stays provable, and ``audit_verify`` counts it as
    erased. An event not sequenced yet keeps its salt, is tagged again as redacted and later
    committed to as redacted.
    On PostgreSQL the UPDATEs pass the append-only trigger through the transaction-local
    ``steward.audit_erasure`` setting, which allows changes to the personal columns only.
    Records a ``user.erase_personal_data`` event. Platform admins only: raises PermissionDenied.
    Returns the number of events changed.
    """
    with transaction.atomic():
        if "admin" not in platform_roles(actor, fresh=True):
            raise PermissionDenied("only a platform admin may erase personal data")
        take_sequencer_lock()
        changed = []
        with _erasure_allowed():
            for event in _events_naming(user):
                changes = _redactions(event, user)
                if not changes:
                    continue
                # The one sanctioned UPDATE of audit events; AuditEventQuerySet.update refuses.
                models.QuerySet.update(AuditEvent.objects.filter(pk=event.pk), **changes)
                changed.append(event.pk)
        sequenced = list(AuditLeaf.objects.filter(event_id__in=changed).values_list("event_id", flat=True))
        AuditPersonalData.objects.filter(event_id__in=sequenced).delete()
        # The others are not sequenced yet: their tags must vouch for the redacted rows.
        pending = AuditPersonalData.objects.filter(event_id__in=set(changed) - set(sequenced))
        for event_id, salt in pending.values_list("event_id", "salt"):
            tag_stored_event(event_id, salt)
        record_audit_event(
            actor=actor,
            action="user.erase_personal_data",
            object_type="user",
            object_id=user.pk,
            object_repr=f"user #{user.pk}",
            after={"events": len(changed), "sequenced_events": len(sequenced)},
        )
    return len(changed)


@contextlib.contextmanager
def _erasure_allowed() -> Iterator[None]:
    """Open the trigger's erasure door for the statements inside, and close it again after."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('steward.audit_erasure', 'on', true)")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('steward.audit_erasure', 'off', true)")


def _events_naming(user: User) -> list[AuditEvent]:
    needles = [user.get_username(), *([user.email] if getattr(user, "email", "") else [])]
    mentions = Q()
    for needle in needles:
        mentions |= (
            Q(actor_label=needle)
            | Q(on_behalf_of_label=needle)
            | Q(object_repr__contains=needle)
            | Q(before_text__contains=needle)
            | Q(after_text__contains=needle)
        )
    # Read them all before the first UPDATE rather than update under an open cursor.
    return list(
        AuditEvent.objects.annotate(
            before_text=Cast("before", TextField()),
            after_text=Cast("after", TextField()),
        )
        .filter(
            Q(actor_id=user.pk)
            | Q(on_behalf_of_id=user.pk)
            | Q(object_type="user", object_id=str(user.pk))
            | mentions
        )
        .order_by("id")
    )


def _redactions(event: AuditEvent, user: User) -> dict[str, Any]:
    """The personal columns of ``event`` to rewrite, with their redacted values."""
    pattern = _mention_pattern(user)
    changes: dict[str, Any] = {}
    if event.actor_id == user.pk or event.actor_label == user.get_username():
        changes["actor_label"] = ERASED
    if event.on_behalf_of_id == user.pk or event.on_behalf_of_label == user.get_username():
        changes["on_behalf_of_label"] = ERASED
    for name in ("object_repr", "before", "after"):
        value = _redact(getattr(event, name), pattern)
        if value != getattr(event, name):
            changes[name] = value
    return {name: value for name, value in changes.items() if getattr(event, name) != value}


def _mention_pattern(user: User) -> re.Pattern[str]:
    """The username or e-mail as a whole token: "dana" matches "dana in Mobility", not "danae"."""
    needles = sorted({user.get_username(), getattr(user, "email", "") or user.get_username()}, key=len)
    alternatives = "|".join(re.escape(needle) for needle in reversed(needles))
    return re.compile(rf"(?<![\w.@+-])(?:{alternatives})(?![\w@+-]|\.\w)")


# Keys whose values are the platform's vocabulary (role, alias, state names...), never a person:
# erasing a user called "viewer" or "production" must not rewrite what was granted or moved.
VOCABULARY_KEYS = frozenset(
    {"action", "alias", "kind", "role", "roles", "severity", "stage", "state", "status", "team"}
)


def _redact(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(ERASED, value)
    if isinstance(value, list):
        return [_redact(item, pattern) for item in value]
    if isinstance(value, dict):
        return {
            key: item if key in VOCABULARY_KEYS else _redact(item, pattern) for key, item in value.items()
        }
    return value

"""Read helpers of the audit trail's pages (issue 14): an event's changes as one diff with its
foreign keys named and linked as far as the viewer may see them, its neighbours in the trail,
the other events on its object, and the trail's state for the compliance officer's dashboard.

Every row shown goes through ``permissions.restrict``: an object outside the viewer's scope is
shown as the bare id it was recorded with, never by name.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, cast

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Max
from django.urls import reverse
from django.utils.http import urlencode

from governance.audit.keys import signing_key
from governance.audit.proofs import is_checkpoint_signed, latest_checkpoint
from governance.models import AuditCheckpoint, AuditEvent, AuditLeaf
from governance.permissions import ALL_TEAMS, restrict, team_scope

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

HISTORY_LIMIT = 20
# Pages of rows that have no get_absolute_url of their own.
_PAGES = {"governance.team": "team_detail"}


@dataclass(frozen=True)
class Reference:
    """A recorded foreign key as ``viewer`` may see it: ``name`` and ``url`` only when the row
    is in their scope; ``is_deleted`` only when they see every row of its kind (else a missing
    row could be another team's, and saying "deleted" or not would tell them which)."""

    pk: Any
    name: str = ""
    url: str = ""
    is_deleted: bool = False


@dataclass(frozen=True)
class ShownValue:
    """One recorded value: ``text`` is its JSON; ``reference`` is set for a foreign key."""

    text: str
    reference: Reference | None = None


@dataclass(frozen=True)
class ChangeRow:
    """One key of an event's snapshots; ``change`` is "changed", "added", "removed" or
    "unchanged"; a side the event did not record is None."""

    key: str
    change: str
    before: ShownValue | None
    after: ShownValue | None


@dataclass(frozen=True)
class EventChanges:
    """What ``event_changes`` returns: the keys that changed, those that did not (so nothing
    recorded is hidden), and the actor and on-behalf-of users as references."""

    changed: list[ChangeRow]
    unchanged: list[ChangeRow]
    actor: Reference | None
    on_behalf_of: Reference | None


@cache
def _models_by_name() -> dict[str, type[models.Model]]:
    # AuditEvent.object_type is the model name (record_audit_event); looked up through the app
    # registry, so governance names runners' and monitoring's objects without importing them.
    return {model._meta.model_name or "": model for model in apps.get_models()}


def _foreign_keys(object_type: str) -> dict[str, type[models.Model]]:
    """``{attname: related model}`` of the foreign keys of the model named ``object_type``
    ({} for a name that is no model)."""
    model = _models_by_name().get(object_type)
    if model is None:
        return {}
    return {
        field.attname: cast("type[models.Model]", field.related_model)
        for field in model._meta.concrete_fields
        if field.is_relation and (field.many_to_one or field.one_to_one)
    }


def _page_of(obj: models.Model) -> str:
    if obj._meta.label_lower == get_user_model()._meta.label_lower:
        return reverse("user_detail", args=[obj.pk])
    page = _PAGES.get(obj._meta.label_lower)
    if page is not None:
        return reverse(page, args=[obj.pk])
    return obj.get_absolute_url() if hasattr(obj, "get_absolute_url") else ""


def _name_of(obj: models.Model) -> str:
    return obj.get_username() if hasattr(obj, "get_username") else str(obj)


def resolve_references(
    wanted: Mapping[type[models.Model], Iterable[Any]], viewer: User | AnonymousUser
) -> dict[tuple[type[models.Model], Any], Reference]:
    """``{(model, recorded id): Reference}`` for the ids in ``wanted`` (``{model: ids}``).

    One restricted query per model (a second, for viewers who see every team, to tell a deleted
    row from one outside even their scope, like another user's API token). Ids that are not
    valid primary keys of their model are left out.
    """
    sees_every_team = team_scope(viewer) is ALL_TEAMS
    found: dict[tuple[type[models.Model], Any], Reference] = {}
    for model, recorded in wanted.items():
        by_pk: dict[Any, Any] = {}
        for value in recorded:
            try:
                by_pk[model._meta.pk.to_python(value)] = value
            except (ValidationError, TypeError):
                continue
        if not by_pk:
            continue
        # One level of relations: most names (a model version's) read their parent's.
        parents = [f.name for f in model._meta.concrete_fields if f.is_relation and f.many_to_one]
        visible = restrict(model._default_manager.select_related(*parents), viewer).filter(pk__in=by_pk)
        for obj in visible:
            found[(model, by_pk[obj.pk])] = Reference(obj.pk, _name_of(obj), _page_of(obj))
        missing = [pk for pk in by_pk if (model, by_pk[pk]) not in found]
        existing: set[Any] = set()
        if missing and sees_every_team:
            existing = set(model._default_manager.filter(pk__in=missing).values_list("pk", flat=True))
        for pk in missing:
            found[(model, by_pk[pk])] = Reference(
                by_pk[pk], is_deleted=sees_every_team and pk not in existing
            )
    return found


def _is_reference_value(value: Any) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def event_changes(event: AuditEvent, viewer: User | AnonymousUser) -> EventChanges:
    """``event``'s before/after snapshots as one diff, keys in order, values as recorded (JSON),
    foreign keys (``*_id`` keys that are foreign keys of the model ``object_type`` names) with
    the row's name and page where ``viewer`` may see it. At most two queries per kind of
    related row, whatever the number of keys."""
    before, after = event.before or {}, event.after or {}
    fields = _foreign_keys(event.object_type)
    user_model = get_user_model()
    wanted: dict[type[models.Model], set[Any]] = defaultdict(set)
    for snapshot in (before, after):
        for key, value in snapshot.items():
            if key in fields and _is_reference_value(value):
                wanted[fields[key]].add(value)
    for user_id in (event.actor_id, event.on_behalf_of_id):
        if user_id is not None:
            wanted[user_model].add(user_id)
    references = resolve_references(wanted, viewer)

    def shown(snapshot: Mapping[str, Any], key: str) -> ShownValue | None:
        if key not in snapshot:
            return None
        value = snapshot[key]
        related = fields.get(key)
        reference = (
            references.get((related, value)) if related is not None and _is_reference_value(value) else None
        )
        return ShownValue(json.dumps(value, default=str, ensure_ascii=False), reference)

    changed: list[ChangeRow] = []
    unchanged: list[ChangeRow] = []
    for key in sorted(set(before) | set(after)):
        if key in before and key in after:
            change = "unchanged" if before[key] == after[key] else "changed"
        else:
            change = "added" if key in after else "removed"
        row = ChangeRow(key, change, shown(before, key), shown(after, key))
        (unchanged if change == "unchanged" else changed).append(row)
    return EventChanges(
        changed=changed,
        unchanged=unchanged,
        actor=references.get((user_model, event.actor_id)),
        on_behalf_of=references.get((user_model, event.on_behalf_of_id)),
    )


def event_neighbours(event: AuditEvent, viewer: User | AnonymousUser) -> tuple[int | None, int | None]:
    """``(older, newer)``: the ids of the events just before and after ``event`` by id among
    those ``viewer`` may see, None at either end. Two primary-key index lookups."""
    visible = AuditEvent.objects.restrict(viewer)
    older = visible.filter(pk__lt=event.pk).order_by("-pk").values_list("pk", flat=True).first()
    newer = visible.filter(pk__gt=event.pk).order_by("pk").values_list("pk", flat=True).first()
    return older, newer


def object_history(
    event: AuditEvent, viewer: User | AnonymousUser, *, limit: int = HISTORY_LIMIT
) -> tuple[list[AuditEvent], bool]:
    """The other events on ``event``'s object (same ``object_type`` and ``object_id``) that
    ``viewer`` may see, newest first, at most ``limit``, with whether there are more."""
    rows = list(
        AuditEvent.objects.restrict(viewer)
        .filter(object_type=event.object_type, object_id=event.object_id)
        .exclude(pk=event.pk)
        .select_related("team")
        .order_by("-timestamp", "-id")[: limit + 1]
    )
    return rows[:limit], len(rows) > limit


def object_history_url(event: AuditEvent) -> str:
    """The audit trail filtered to ``event``'s object."""
    query = urlencode({"object_type": event.object_type, "object_id": event.object_id})
    return f"{reverse('audit_event_list')}?{query}"


def unsequenced_backlog() -> int:
    """Events above the newest sequenced one (an index range scan; an event committed late
    below it is not counted, the sequencer takes it all the same)."""
    newest_sequenced = AuditLeaf.objects.aggregate(newest=Max("event_id"))["newest"] or 0
    return AuditEvent.objects.filter(id__gt=newest_sequenced).count()


@dataclass(frozen=True)
class TrailStatus:
    """The audit log at a glance: its newest signed checkpoint (None before the first), whether
    that checkpoint's signature is valid under this server's key, and the sequencer's backlog."""

    checkpoint: AuditCheckpoint | None
    is_signed: bool
    backlog: int


def trail_status() -> TrailStatus:
    """The newest checkpoint, its Ed25519 signature checked with this server's key, and the
    number of events waiting for the sequencer. Three indexed reads, whatever the log's size;
    ``manage.py audit_verify`` checks every leaf."""
    checkpoint = latest_checkpoint()
    key = signing_key()
    is_signed = checkpoint is not None and is_checkpoint_signed(checkpoint, {key.key_id: key.public_key_pem})
    return TrailStatus(checkpoint, is_signed, unsequenced_backlog())

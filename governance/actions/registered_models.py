"""Registered models: create, update, rename, archive, delete (soft) and tags.

A model's name follows the name rule (``governance.names``) and is unique per team among models not
deleted, under NFKC case folding. Every change bumps ``updated_at`` and writes its audit event in
its transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.actions.checks import SAME_NAME, checked_name, ensure_can
from governance.audit import record_audit_event, snapshot
from governance.limits import checked_description, checked_tag, checked_tags
from governance.models import Membership, ModelVersion, RegisteredModel, Team
from governance.names import name_key
from governance.permissions import CHANGE

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class NameTaken(ValidationError):
    """The team already has a live model by that name (also raised for the loser of a race to
    create or rename one: the unique constraint's refusal is this, not a database error)."""


# "/" and ":" break MLflow's model URIs (models:/<name>/<version>, models:/<name>@<alias>), so a
# model name may not hold them (MLflow refuses them too); datasets and teams may.
_URI_CHARS = ("/", ":")


def checked_model_name(raw: str) -> str:
    """``raw`` under the name rule, without "/" or ":"; ValidationError on ``name`` otherwise."""
    name = checked_name(raw, noun="model name")
    for char in _URI_CHARS:
        if char in name:
            raise ValidationError(
                {"name": f"a model name may not contain {char!r}: it breaks models:/ URIs ({name!r})"}
            )
    return name


def _ensure_name_free(team: Team, name: str, *, exclude_pk: int | None = None) -> str:
    """The name's key; NameTaken if ``team`` (only it) has a live model by that key."""
    key = name_key(name)
    taken = RegisteredModel.objects.filter(team=team, name_key=key, deleted_at__isnull=True)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise NameTaken({"name": f"team {team.name} already has a model named {name!r}{SAME_NAME}"})
    return key


def lock_live_model(model: RegisteredModel, actor: User | None) -> RegisteredModel:
    """``model`` re-read and locked, with ``actor``'s CHANGE re-checked; ValidationError if deleted.

    Every write under a model takes this lock first (one order: model, then its versions and aliases).
    """
    # of=("self",): lock the model row only, not its team's (writes to a team's models run in parallel).
    locked = RegisteredModel.objects.select_for_update(of=("self",)).select_related("team").get(pk=model.pk)
    ensure_can(actor, CHANGE, locked.team_id)
    if locked.deleted_at is not None:
        raise ValidationError({"model": f"model {locked.name} is deleted"})
    return locked


def _save(model: RegisteredModel, fields: list[str]) -> None:
    model.updated_at = timezone.now()
    model.save(update_fields=[*fields, "updated_at"])


def do_create_registered_model(
    *,
    team: Team,
    name: str,
    owner,
    description: str = "",
    tags: dict[str, str] | None = None,
    actor: User | None,
) -> RegisteredModel:
    """Register a model name for ``team`` owned by ``owner`` (who must belong to the team).

    Raises ValidationError if the name breaks the name rule (``checked_model_name``), the owner
    is not a member, or the description or a tag is over its limit (``governance.limits``);
    NameTaken (a ValidationError) if the team already has it, a concurrent create included."""
    name = checked_model_name(name)
    description = checked_description(description)
    tags = checked_tags(tags)
    try:
        return _create(team, name, owner, description, tags, actor)
    except IntegrityError:
        # Two creates raced past the check; the unique (team, name_key) constraint refused the
        # second. Said as the same refusal the check gives, once the winner's row is visible.
        _ensure_name_free(team, name)
        raise


def _create(team: Team, name: str, owner, description: str, tags: dict[str, str], actor: User | None):
    with transaction.atomic():
        ensure_can(actor, CHANGE, team.pk)
        if not Membership.objects.filter(user=owner, team=team).exists():
            raise ValidationError({"owner": f"{owner.get_username()} is not a member of team {team.name}"})
        key = _ensure_name_free(team, name)
        model = RegisteredModel.objects.create(
            team=team, name=name, name_key=key, owner=owner, description=description, tags=tags
        )
        record_audit_event(actor=actor, action="registered_model.create", obj=model, after=snapshot(model))
    return model


def do_update_registered_model(
    *, model: RegisteredModel, description: str, actor: User | None
) -> RegisteredModel:
    """Set the model's description (at most ``limits.DESCRIPTION_MAX`` characters)."""
    description = checked_description(description)
    with transaction.atomic():
        model = lock_live_model(model, actor)
        before = snapshot(model)
        model.description = description
        _save(model, ["description"])
        record_audit_event(
            actor=actor, action="registered_model.update", obj=model, before=before, after=snapshot(model)
        )
    return model


def do_rename_registered_model(
    *, model: RegisteredModel, new_name: str, actor: User | None
) -> RegisteredModel:
    """Rename the model; the new name follows the name rule (``checked_model_name``) and is free
    in the model's team (NameTaken otherwise)."""
    new_name = checked_model_name(new_name)
    with transaction.atomic():
        model = lock_live_model(model, actor)
        key = _ensure_name_free(model.team, new_name, exclude_pk=model.pk)
        before = snapshot(model)
        model.name, model.name_key = new_name, key
        _save(model, ["name", "name_key"])
        record_audit_event(
            actor=actor, action="registered_model.rename", obj=model, before=before, after=snapshot(model)
        )
    return model


def do_archive_registered_model(*, model: RegisteredModel, actor: User | None) -> RegisteredModel:
    """Archive the model: it stays readable, takes no new versions and no new aliases.
    Archiving an archived model changes nothing (no event)."""
    with transaction.atomic():
        model = lock_live_model(model, actor)
        if model.archived_at is None:
            before = snapshot(model)
            model.archived_at = timezone.now()
            _save(model, ["archived_at"])
            record_audit_event(
                actor=actor,
                action="registered_model.archive",
                obj=model,
                before=before,
                after=snapshot(model),
            )
    return model


def do_unarchive_registered_model(*, model: RegisteredModel, actor: User | None) -> RegisteredModel:
    """Undo ``do_archive_registered_model``; a model not archived changes nothing (no event)."""
    with transaction.atomic():
        model = lock_live_model(model, actor)
        if model.archived_at is not None:
            before = snapshot(model)
            model.archived_at = None
            _save(model, ["archived_at"])
            record_audit_event(
                actor=actor,
                action="registered_model.unarchive",
                obj=model,
                before=before,
                after=snapshot(model),
            )
    return model


def do_delete_registered_model(
    *, model: RegisteredModel, with_versions: bool = False, actor: User | None
) -> RegisteredModel:
    """Soft-delete the model: the row stays for the audit trail and lineage, the name is free again.

    A model with live (not deleted) versions is refused (ValidationError on ``with_versions``)
    unless ``with_versions``; then each version is soft-deleted first, its aliases removed, each
    with its own audit event, all in this transaction.
    """
    from governance.actions.model_versions import soft_delete_version

    with transaction.atomic():
        model = lock_live_model(model, actor)
        live = list(
            ModelVersion.objects.select_for_update()
            .filter(model=model)
            .exclude(status=ModelVersion.Status.DELETED)
            .order_by("version")
        )
        if live and not with_versions:
            raise ValidationError(
                {
                    "with_versions": f"model {model.name} has {len(live)} live version(s); delete them "
                    "first or ask to delete them with the model (with_versions=true)"
                }
            )
        for version in live:
            soft_delete_version(model, version, actor)
        before = snapshot(model)
        model.deleted_at = timezone.now()
        _save(model, ["deleted_at"])
        record_audit_event(
            actor=actor, action="registered_model.delete", obj=model, before=before, after=snapshot(model)
        )
    return model


def do_set_registered_model_tag(
    *, model: RegisteredModel, key: str, value: str, actor: User | None
) -> RegisteredModel:
    """Set tag ``key`` to ``value`` (limits: ``governance.limits``)."""
    key, value = checked_tag(key, value)
    with transaction.atomic():
        model = lock_live_model(model, actor)
        before = snapshot(model)
        model.tags = {**model.tags, key: value}
        _save(model, ["tags"])
        record_audit_event(
            actor=actor, action="registered_model.tag.set", obj=model, before=before, after=snapshot(model)
        )
    return model


def do_delete_registered_model_tag(
    *, model: RegisteredModel, key: str, actor: User | None
) -> RegisteredModel:
    """Remove tag ``key``; a missing tag is a no-op (no event)."""
    with transaction.atomic():
        model = lock_live_model(model, actor)
        if key in model.tags:
            before = snapshot(model)
            model.tags = {k: v for k, v in model.tags.items() if k != key}
            _save(model, ["tags"])
            record_audit_event(
                actor=actor,
                action="registered_model.tag.delete",
                obj=model,
                before=before,
                after=snapshot(model),
            )
    return model

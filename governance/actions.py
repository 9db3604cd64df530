"""The one audited way to change registry, team and role state.

Each ``do_<verb>_<noun>`` runs in one transaction, re-checks the actor's permission inside it,
writes its audit event in the same transaction, and returns the changed object. ``actor=None``
means the system (a Celery task) acting ``on_behalf_of`` the user who started the work.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils.text import slugify

from governance import artifacts, datafiles
from governance.audit import record_audit_event, snapshot
from governance.models import (
    Dataset,
    DatasetVersion,
    Membership,
    ModelVersion,
    PlatformRoleGrant,
    RegisteredModel,
    Team,
    TeamRole,
)
from governance.permissions import CHANGE, MANAGE, Action, can, is_platform_admin, platform_roles


def ensure_can(actor, action: Action, team_id: int | None) -> None:
    """Raise PermissionDenied unless ``actor`` (None = system) may ``action`` on ``team_id``'s objects."""
    if actor is not None and not can(actor, action, team_id, fresh=True):
        raise PermissionDenied(f"you may not {action} objects of this team")


def _ensure_admin(actor) -> None:
    if actor is not None and "admin" not in platform_roles(actor, fresh=True):
        raise PermissionDenied("only a platform admin may do this")


def do_create_user(*, username: str, email: str = "", password: str | None = None, actor):
    """Create a login (platform admins only); ``password=None`` leaves it unusable until set."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    with transaction.atomic():
        _ensure_admin(actor)
        if user_model.objects.filter(username=username).exists():
            raise ValidationError({"username": f"user {username!r} already exists"})
        user = user_model.objects.create_user(username=username, email=email, password=password)
        record_audit_event(
            actor=actor,
            action="user.create",
            obj=user,
            object_type="user",
            after={"username": username, "email": email},
        )
    return user


def do_create_team(*, name: str, description: str = "", actor) -> Team:
    """Create a team (platform admins only). Raises ValidationError if the name or slug is taken."""
    slug = slugify(name)
    if not slug:
        raise ValidationError({"name": "a team name needs at least one letter or digit"})
    with transaction.atomic():
        _ensure_admin(actor)
        if Team.objects.filter(slug=slug).exists() or Team.objects.filter(name=name).exists():
            raise ValidationError({"name": f"a team named {name!r} already exists"})
        team = Team.objects.create(name=name, slug=slug, description=description)
        record_audit_event(actor=actor, action="team.create", obj=team, after=snapshot(team))
    return team


def do_set_membership(*, user, team: Team, role: str, actor) -> Membership:
    """Give ``user`` ``role`` in ``team`` (creating or changing the membership).

    Allowed for platform admins and the team's model owners; nobody may change their own role.
    """
    if role not in TeamRole.values:
        raise ValidationError({"role": f"unknown role {role!r}; one of {', '.join(TeamRole.values)}"})
    with transaction.atomic():
        ensure_can(actor, MANAGE, team.pk)
        if actor is not None and actor.pk == user.pk and not is_platform_admin(actor):
            raise PermissionDenied("you may not change your own role")
        membership = Membership.objects.select_for_update().filter(user=user, team=team).first()
        before = {"role": membership.role} if membership else None
        if membership is None:
            membership = Membership.objects.create(user=user, team=team, role=role)
        else:
            membership.role = role
            membership.save(update_fields=["role"])
        record_audit_event(
            actor=actor,
            action="membership.grant",
            obj=membership,
            object_repr=f"{user.get_username()} in {team.name}",
            before=before,
            after={"user": user.get_username(), "team": team.name, "role": role},
        )
    return membership


def do_grant_platform_role(*, user, role: str, actor) -> PlatformRoleGrant:
    """Grant a platform-wide role (admin or compliance officer); platform admins only."""
    with transaction.atomic():
        _ensure_admin(actor)
        grant, created = PlatformRoleGrant.objects.get_or_create(user=user, role=role)
        if created:
            record_audit_event(
                actor=actor,
                action="platform_role.grant",
                obj=grant,
                object_repr=f"{user.get_username()} as {role}",
                after={"user": user.get_username(), "role": role},
            )
    return grant


def do_create_dataset(*, team: Team, name: str, description: str = "", actor, on_behalf_of=None) -> Dataset:
    """Register a dataset name for ``team``. Raises ValidationError if the name is taken."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "a dataset needs a name"})
    with transaction.atomic():
        ensure_can(actor, CHANGE, team.pk)
        if Dataset.objects.filter(name=name).exists():
            raise ValidationError({"name": f"a dataset named {name!r} already exists"})
        dataset = Dataset.objects.create(
            team=team, name=name, description=description, created_by=actor or on_behalf_of
        )
        record_audit_event(
            actor=actor,
            on_behalf_of=on_behalf_of,
            action="dataset.create",
            obj=dataset,
            after=snapshot(dataset),
        )
    return dataset


def _next_version(model, parent_field: str, parent) -> int:
    highest = model.objects.filter(**{parent_field: parent}).aggregate(Max("version"))["version__max"]
    return (highest or 0) + 1


def do_register_dataset_version(
    *,
    dataset: Dataset,
    file_path: Path,
    filename: str,
    source: str,
    description: str = "",
    actor,
    on_behalf_of=None,
) -> DatasetVersion:
    """Validate a CSV/Parquet file, store it by content hash and register it as the next version.

    ``file_path`` is a readable local file (an upload's temporary file, an allowed server path,
    or a job's output). Raises ``datafiles.DataFileError`` (nothing registered) when the file is
    not valid; PermissionDenied when the actor may not change the dataset's team.
    """
    ensure_can(actor, CHANGE, dataset.team_id)
    summary = datafiles.summarize(
        file_path,
        filename,
        max_bytes=settings.STEWARD_MAX_DATASET_BYTES,
        max_rows=settings.STEWARD_MAX_DATASET_ROWS,
    )
    stored = artifacts.store_file(file_path, summary.sha256, "datasets", f".{summary.format}")
    with transaction.atomic():
        # Lock the parent so two registrations racing for the same dataset get 1..n without gaps.
        dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
        ensure_can(actor, CHANGE, dataset.team_id)
        version = DatasetVersion.objects.create(
            dataset=dataset,
            version=_next_version(DatasetVersion, "dataset", dataset),
            file=stored,
            original_filename=filename[:255],
            format=summary.format,
            sha256=summary.sha256,
            size_bytes=summary.size_bytes,
            row_count=summary.row_count,
            schema=summary.schema,
            source=source,
            description=description,
            created_by=actor or on_behalf_of,
        )
        record_audit_event(
            actor=actor,
            on_behalf_of=on_behalf_of,
            action="dataset_version.register",
            obj=version,
            after=snapshot(version),
        )
    return version


def resolve_import_path(raw: str) -> Path:
    """The absolute path of a server-side file inside one of ``STEWARD_IMPORT_ROOTS``.

    Raises ValidationError for a path outside them (no reading arbitrary server files) or missing.
    """
    path = Path(raw).expanduser()
    candidates = [path] if path.is_absolute() else [root / path for root in settings.STEWARD_IMPORT_ROOTS]
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
            inside = any(resolved.is_relative_to(root) for root in settings.STEWARD_IMPORT_ROOTS)
            if inside and resolved.is_file():
                return resolved
        except (OSError, ValueError):
            # A name too long for the file system, or a NUL byte: simply not a file we can read.
            continue
    raise ValidationError({"path": f"{raw[:200]!r} is not a file under the server's import folders"})


def do_create_registered_model(
    *, team: Team, name: str, owner, description: str = "", actor
) -> RegisteredModel:
    """Register a model name for ``team`` owned by ``owner`` (who must belong to the team)."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "a model needs a name"})
    with transaction.atomic():
        ensure_can(actor, CHANGE, team.pk)
        if not Membership.objects.filter(user=owner, team=team).exists():
            raise ValidationError({"owner": f"{owner.get_username()} is not a member of team {team.name}"})
        if RegisteredModel.objects.filter(name=name).exists():
            raise ValidationError({"name": f"a model named {name!r} already exists"})
        model = RegisteredModel.objects.create(team=team, name=name, owner=owner, description=description)
        record_audit_event(actor=actor, action="registered_model.create", obj=model, after=snapshot(model))
    return model


def do_register_model_version(
    *,
    model: RegisteredModel,
    artifact_bytes: bytes,
    metrics: dict[str, Any],
    signature: dict[str, Any],
    training_spec: dict[str, Any],
    training_dataset_version: DatasetVersion | None,
    source_job_id: int | None,
    actor,
    on_behalf_of=None,
) -> ModelVersion:
    """Store a trained artifact and register it as the model's next version (1..n, no gaps).

    Runs in the caller's transaction when there is one, so a job can commit its success, the
    version, its lineage edges and their audit events together.
    """
    sha256 = hashlib.sha256(artifact_bytes).hexdigest()
    stored = artifacts.store_bytes(artifact_bytes, sha256, "models", ".pt")
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        ensure_can(actor, CHANGE, model.team_id)
        version = ModelVersion.objects.create(
            model=model,
            version=_next_version(ModelVersion, "model", model),
            artifact=stored,
            sha256=sha256,
            size_bytes=len(artifact_bytes),
            metrics=metrics,
            signature=signature,
            training_spec=training_spec,
            training_dataset_version=training_dataset_version,
            source_job_id=source_job_id,
            created_by=actor or on_behalf_of,
        )
        record_audit_event(
            actor=actor,
            on_behalf_of=on_behalf_of,
            action="model_version.register",
            obj=version,
            after=snapshot(version),
        )
    return version

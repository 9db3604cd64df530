"""Model versions: register (from a training job, an artifact or a source), update, archive, delete
(soft: the number is never reused) and tags.

Every write locks the parent model first (``registered_models.lock_live_model``), bumps the
version's and the model's ``updated_at`` and writes its audit event in its transaction.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance import artifacts, flavors
from governance.actions.checks import ensure_can, is_protected_alias, next_version
from governance.actions.registered_models import lock_live_model
from governance.audit import record_audit_event, snapshot
from governance.limits import checked_description, checked_tag, checked_tags
from governance.models import DatasetVersion, ModelAlias, ModelVersion, RegisteredModel
from governance.permissions import CHANGE

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from governance.job_scope import JobScope


def _lock_model_for_new_version(model: RegisteredModel, actor: User | None) -> RegisteredModel:
    model = lock_live_model(model, actor)
    if model.archived_at is not None:
        raise ValidationError({"model": f"model {model.name} is archived; unarchive it to add versions"})
    return model


def _touch(model: RegisteredModel, now=None) -> None:
    """The model changed through one of its versions (MLflow's last_updated_timestamp)."""
    model.updated_at = now or timezone.now()
    model.save(update_fields=["updated_at"])


def _create_version(
    model: RegisteredModel, actor: User | None, on_behalf_of: User | None, **fields
) -> ModelVersion:
    now = timezone.now()
    version = ModelVersion.objects.create(
        model=model,
        version=next_version(ModelVersion, "model", model),
        created_by=actor or on_behalf_of,
        created_at=now,
        updated_at=now,
        **fields,
    )
    _touch(model, now)
    record_audit_event(
        actor=actor,
        on_behalf_of=on_behalf_of,
        action="model_version.register",
        obj=version,
        after=snapshot(version),
    )
    return version


def do_register_model_version(
    *,
    model: RegisteredModel,
    artifact_bytes: bytes,
    metrics: dict[str, Any],
    signature: dict[str, Any],
    training_spec: dict[str, Any],
    training_dataset_version: DatasetVersion | None,
    source_job_id: int | None,
    actor: User | None,
    on_behalf_of: User | None = None,
) -> ModelVersion:
    """Store a Steward-trained artifact (``runners.training``, flavor steward_tabular, loadable
    with ``weights_only=True``) and register it as the model's next version.

    Runs in the caller's transaction when there is one, so a job can commit its success, the
    version, its lineage edges and their audit events together. ValidationError when the model is
    deleted or archived; PermissionDenied without CHANGE on its team.
    """
    sha256 = hashlib.sha256(artifact_bytes).hexdigest()
    stored = artifacts.store_bytes(artifact_bytes, sha256, "models", ".pt")
    with transaction.atomic():
        model = _lock_model_for_new_version(model, actor)
        return _create_version(
            model,
            actor,
            on_behalf_of,
            artifact=stored,
            sha256=sha256,
            size_bytes=len(artifact_bytes),
            metrics=metrics,
            signature=signature,
            training_spec=training_spec,
            training_dataset_version=training_dataset_version,
            source_job_id=source_job_id,
            flavor=ModelVersion.Flavor.STEWARD_TABULAR,
            executes_code=False,
            source=f"job:{source_job_id}" if source_job_id else "",
        )


def do_register_model_version_from_artifact(
    *,
    model: RegisteredModel,
    artifact_path: Path,
    source: str,
    source_job_id: int | None = None,
    metrics: dict[str, Any] | None = None,
    training_spec: dict[str, Any] | None = None,
    description: str = "",
    tags: dict[str, str] | None = None,
    training_dataset_version_id: int | None = None,
    actor: User | None,
    on_behalf_of: User | None = None,
) -> ModelVersion:
    """Register a model file or directory (an upload, a server path, an MLflow run's artifacts)
    as the model's next version (trained on ``training_dataset_version_id`` when known).

    The content is stored content-addressed (a directory under the sha256 of its manifest,
    ``artifacts.store_directory``); its flavor and whether loading it executes code are detected
    by ``flavors.detect``, which never loads it. ``source`` (at most 1,000 characters) says where
    it came from. ValidationError for a missing path, a deleted or archived model, a description
    or tag over its limit; PermissionDenied without CHANGE on the model's team.
    """
    description = checked_description(description)
    tags = checked_tags(tags)
    if len(source) > 1000:
        raise ValidationError({"source": "a source has at most 1000 characters"})
    artifact_path = Path(artifact_path)
    # Refused before the (possibly large) copy with the roles the request read; the check that
    # binds is the fresh one under the lock below.
    ensure_can(actor, CHANGE, model.team_id, fresh=False)
    if artifact_path.is_dir():
        stored, sha256, size = artifacts.store_directory(artifact_path, "models")
    elif artifact_path.is_file():
        sha256 = artifacts.file_sha256(artifact_path)
        stored = artifacts.store_file(artifact_path, sha256, "models", artifacts.safe_suffix(artifact_path))
        size = artifact_path.stat().st_size
    else:
        raise ValidationError({"artifact": f"{artifact_path.name!r} is neither a file nor a directory"})
    detected = flavors.detect(artifact_path)
    with transaction.atomic():
        model = _lock_model_for_new_version(model, actor)
        return _create_version(
            model,
            actor,
            on_behalf_of,
            artifact=stored,
            sha256=sha256,
            size_bytes=size,
            metrics=metrics or {},
            # The input schema the artifact declares (read without loading it): drift checks and
            # online prediction need it whichever door registered the version.
            signature=flavors.signature_of(detected),
            training_spec=training_spec or {},
            training_dataset_version_id=training_dataset_version_id,
            source_job_id=source_job_id,
            flavor=detected.flavor,
            flavor_details=detected.details,
            executes_code=detected.executes_code,
            is_directory=artifact_path.is_dir(),
            source=source,
            description=description,
            tags=tags,
        )


def do_register_model_version_from_source(
    *,
    model: RegisteredModel,
    source: str,
    description: str = "",
    tags: dict[str, str] | None = None,
    actor: User | None,
    on_behalf_of: User | None = None,
    job_scope: JobScope | None = None,
) -> ModelVersion:
    """Register what ``source`` names (a path inside ``STEWARD_IMPORT_ROOTS``, or a URI a resolver
    was registered for, ``governance.sources``) as the model's next version, with the run,
    metrics and training dataset version the resolver reports. ValidationError when the source
    does not resolve. With ``job_scope`` (a job token registers, issue 17) the model must be in
    the job's team and the source an output of its run, else PermissionDenied naming the rule,
    before anything is copied."""
    from governance.sources import resolve_source

    resolved = resolve_source(source, actor=actor)
    try:
        if job_scope is not None:
            job_scope.ensure_team(model.team_id, f"model {model.name!r}")
            job_scope.ensure_output(resolved.source_job_id, f"source {source[:200]!r}")
        with transaction.atomic():
            version = do_register_model_version_from_artifact(
                model=model,
                artifact_path=resolved.path,
                source=source,
                source_job_id=resolved.source_job_id,
                metrics=resolved.metrics,
                training_spec={"params": resolved.params} if resolved.params else None,
                training_dataset_version_id=resolved.training_dataset_version_id,
                description=description,
                tags=tags,
                actor=actor,
                on_behalf_of=on_behalf_of,
            )
            if resolved.on_registered is not None:
                resolved.on_registered(version)
    finally:
        if resolved.release is not None:
            resolved.release()
    return version


def _lock_version(version: ModelVersion, actor: User | None) -> tuple[RegisteredModel, ModelVersion]:
    """The version's model (locked, live, CHANGE re-checked), then the version; a deleted version
    is refused (ValidationError)."""
    model = lock_live_model(version.model, actor)
    locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
    locked.model = model
    if locked.status == ModelVersion.Status.DELETED:
        raise ValidationError({"model_version": f"{locked} is deleted"})
    return model, locked


def _save_version(
    model: RegisteredModel, version: ModelVersion, fields: list[str], action: str, before, actor
) -> None:
    now = timezone.now()
    version.updated_at = now
    version.save(update_fields=[*fields, "updated_at"])
    _touch(model, now)
    record_audit_event(actor=actor, action=action, obj=version, before=before, after=snapshot(version))


def do_update_model_version(
    *,
    version: ModelVersion,
    description: str | None = None,
    intended_purpose: str | None = None,
    known_limitations: str | None = None,
    actor: User | None,
) -> ModelVersion:
    """Set the version's description and its model card's ``intended_purpose`` and
    ``known_limitations`` (each at most ``limits.DESCRIPTION_MAX`` characters); a field passed
    as None keeps its value. One ``model_version.update`` event when anything changed, none
    otherwise. ValidationError for a value too long or not a string."""
    wanted = {
        name: checked_description(value, field=name)
        for name, value in (
            ("description", description),
            ("intended_purpose", intended_purpose),
            ("known_limitations", known_limitations),
        )
        if value is not None
    }
    with transaction.atomic():
        model, version = _lock_version(version, actor)
        changed = [name for name, value in wanted.items() if getattr(version, name) != value]
        if changed:
            before = snapshot(version)
            for name in changed:
                setattr(version, name, wanted[name])
            _save_version(model, version, changed, "model_version.update", before, actor)
    return version


def do_archive_model_version(*, version: ModelVersion, actor: User | None) -> ModelVersion:
    """Archive a ready version: it stays readable (and keeps the aliases it holds) but takes no
    new alias. An archived version changes nothing (no event). PermissionDenied if it holds a
    protected alias (promote another version first)."""
    with transaction.atomic():
        model, version = _lock_version(version, actor)
        if version.status == ModelVersion.Status.READY:
            ensure_holds_no_protected_alias(model, version, "archived")
            before = snapshot(version)
            version.status = ModelVersion.Status.ARCHIVED
            _save_version(model, version, ["status"], "model_version.archive", before, actor)
    return version


def do_unarchive_model_version(*, version: ModelVersion, actor: User | None) -> ModelVersion:
    """Make an archived version ready again; a ready one changes nothing (no event)."""
    with transaction.atomic():
        model, version = _lock_version(version, actor)
        if version.status == ModelVersion.Status.ARCHIVED:
            before = snapshot(version)
            version.status = ModelVersion.Status.READY
            _save_version(model, version, ["status"], "model_version.unarchive", before, actor)
    return version


def ensure_holds_no_protected_alias(model: RegisteredModel, version: ModelVersion, doing: str) -> None:
    """PermissionDenied if ``version`` holds one of its team's protected aliases: deleting or
    archiving it would take the alias away without four eyes. ``doing`` ("deleted", "archived")
    completes the message."""
    held = [
        name
        for name in ModelAlias.objects.filter(model_version=version)
        .order_by("name")
        .values_list("name", flat=True)
        if is_protected_alias(model.team.protected_aliases, name)
    ]
    if held:
        raise PermissionDenied(
            f"{version} holds the protected alias {held[0]!r} of team {model.team.name}, so it cannot be "
            f"{doing}: promote another version to {held[0]!r} first (an approved promotion request)"
        )


def soft_delete_version(model: RegisteredModel, version: ModelVersion, actor: User | None) -> None:
    """Mark ``version`` deleted and remove the aliases it holds, each with its audit event.

    The caller holds the model's lock inside its transaction (``do_delete_model_version``,
    ``do_delete_registered_model``). PermissionDenied if it holds a protected alias.
    """
    ensure_holds_no_protected_alias(model, version, "deleted")
    for alias in ModelAlias.objects.select_for_update().filter(model_version=version).order_by("name"):
        before = snapshot(alias)
        record_audit_event(
            actor=actor,
            action="model_alias.delete",
            obj=alias,
            object_repr=f"{model.name}@{alias.name}",
            team_id=model.team_id,
            before=before,
        )
        alias.delete()
    before = snapshot(version)
    version.status = ModelVersion.Status.DELETED
    _save_version(model, version, ["status"], "model_version.delete", before, actor)


def do_delete_model_version(*, version: ModelVersion, actor: User | None) -> ModelVersion:
    """Soft-delete a version (MLflow's semantics): its number is never given again, the aliases
    it holds are removed in the same transaction, the row stays for the audit trail and lineage.
    ValidationError if already deleted; PermissionDenied if it holds a protected alias (promote
    another version first)."""
    with transaction.atomic():
        model, version = _lock_version(version, actor)
        soft_delete_version(model, version, actor)
    return version


def do_set_model_version_tag(
    *, version: ModelVersion, key: str, value: str, actor: User | None
) -> ModelVersion:
    """Set tag ``key`` to ``value`` on the version (limits: ``governance.limits``)."""
    key, value = checked_tag(key, value)
    with transaction.atomic():
        model, version = _lock_version(version, actor)
        before = snapshot(version)
        version.tags = {**version.tags, key: value}
        _save_version(model, version, ["tags"], "model_version.tag.set", before, actor)
    return version


def do_delete_model_version_tag(*, version: ModelVersion, key: str, actor: User | None) -> ModelVersion:
    """Remove tag ``key`` from the version; a missing tag is a no-op (no event)."""
    with transaction.atomic():
        model, version = _lock_version(version, actor)
        if key in version.tags:
            before = snapshot(version)
            version.tags = {k: v for k, v in version.tags.items() if k != key}
            _save_version(model, version, ["tags"], "model_version.tag.delete", before, actor)
    return version

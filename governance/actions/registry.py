"""The registry: datasets and their versions (files), registered models and their versions."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from governance import artifacts, datafiles
from governance.actions.checks import checked_name, ensure_can
from governance.audit import record_audit_event, snapshot
from governance.models import Dataset, DatasetVersion, Membership, ModelVersion, RegisteredModel, Team
from governance.names import name_key
from governance.permissions import CHANGE

if TYPE_CHECKING:
    from django.contrib.auth.models import User


# The name rule's collision clause, said wherever a name is refused as taken.
SAME_NAME = " (names are compared ignoring case and character width: NFKC case folding)"


def do_create_dataset(
    *, team: Team, name: str, description: str = "", actor: User | None, on_behalf_of: User | None = None
) -> Dataset:
    """Register a dataset name for ``team``. Raises ValidationError if the name breaks the name
    rule (``governance.names``) or the team already has it under NFKC case folding."""
    name = checked_name(name, noun="dataset name")
    with transaction.atomic():
        ensure_can(actor, CHANGE, team.pk)
        key = name_key(name)
        if Dataset.objects.filter(team=team, name_key=key).exists():
            raise ValidationError(
                {"name": f"team {team.name} already has a dataset named {name!r}{SAME_NAME}"}
            )
        dataset = Dataset.objects.create(
            team=team, name=name, name_key=key, description=description, created_by=actor or on_behalf_of
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
    actor: User | None,
    on_behalf_of: User | None = None,
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
    *, team: Team, name: str, owner, description: str = "", actor: User | None
) -> RegisteredModel:
    """Register a model name for ``team`` owned by ``owner`` (who must belong to the team).

    Raises ValidationError if the name breaks the name rule or the team already has it."""
    name = checked_name(name, noun="model name")
    with transaction.atomic():
        ensure_can(actor, CHANGE, team.pk)
        if not Membership.objects.filter(user=owner, team=team).exists():
            raise ValidationError({"owner": f"{owner.get_username()} is not a member of team {team.name}"})
        key = name_key(name)
        if RegisteredModel.objects.filter(team=team, name_key=key).exists():
            raise ValidationError({"name": f"team {team.name} already has a model named {name!r}{SAME_NAME}"})
        model = RegisteredModel.objects.create(
            team=team, name=name, name_key=key, owner=owner, description=description
        )
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
    actor: User | None,
    on_behalf_of: User | None = None,
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

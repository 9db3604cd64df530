"""Datasets and their versions (files): create, update, register a version (schema change
checked), erase a version (GDPR Art. 17)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from governance import artifacts, datafiles, storage
from governance.actions.checks import SAME_NAME, checked_name, ensure_can, next_version
from governance.actions.pii import queue_pii_scan
from governance.audit import record_audit_event, snapshot
from governance.limits import checked_description
from governance.models import Dataset, DatasetVersion, Team
from governance.names import name_key
from governance.permissions import CHANGE, MANAGE, VIEW, can

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def do_create_dataset(
    *, team: Team, name: str, description: str = "", actor: User | None, on_behalf_of: User | None = None
) -> Dataset:
    """Register a dataset name for ``team``. Raises ValidationError if the name breaks the name
    rule (``governance.names``), the description is over ``limits.DESCRIPTION_MAX``, or the team
    already has the name under NFKC case folding (other teams' names are never consulted)."""
    name = checked_name(name, noun="dataset name")
    description = checked_description(description)
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


def do_update_dataset(
    *,
    dataset: Dataset,
    description: str | None = None,
    is_schema_locked: bool | None = None,
    actor: User | None,
) -> Dataset:
    """Change a dataset's description and/or schema lock (None leaves a field as it is).

    Audited as ``dataset.update``; no event when nothing changes.
    """
    if description is not None:
        description = checked_description(description)
    with transaction.atomic():
        dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
        ensure_can(actor, CHANGE, dataset.team_id)
        before = snapshot(dataset)
        if description is not None:
            dataset.description = description
        if is_schema_locked is not None:
            dataset.is_schema_locked = bool(is_schema_locked)
        if snapshot(dataset) != before:
            dataset.save(update_fields=["description", "is_schema_locked"])
            record_audit_event(
                actor=actor, action="dataset.update", obj=dataset, before=before, after=snapshot(dataset)
            )
    return dataset


def schema_change(previous: list[dict[str, Any]] | None, current: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"added": [names], "removed": [names], "retyped": [{name, from, to}]}`` from ``previous``
    to ``current`` (schemas as ``datafiles.summarize`` writes them); {} when the columns and their
    types are the same, or when there is no previous version."""
    if previous is None:
        return {}
    old = {column["name"]: column.get("dtype") for column in previous}
    new = {column["name"]: column.get("dtype") for column in current}
    added = [name for name in new if name not in old]
    removed = [name for name in old if name not in new]
    retyped = [
        {"name": name, "from": old[name], "to": new[name]}
        for name in new
        if name in old and old[name] != new[name]
    ]
    if not (added or removed or retyped):
        return {}
    return {"added": added, "removed": removed, "retyped": retyped}


def describe_schema_change(change: dict[str, Any]) -> str:
    """``change`` in words: "added a, b; removed c; retyped d (int64 -> float64)"."""
    parts = []
    if change.get("added"):
        parts.append("added " + ", ".join(change["added"]))
    if change.get("removed"):
        parts.append("removed " + ", ".join(change["removed"]))
    if change.get("retyped"):
        parts.append(
            "retyped "
            + ", ".join(f"{item['name']} ({item['from']} -> {item['to']})" for item in change["retyped"])
        )
    return "; ".join(parts)


def dataset_named(team: Team, name: str, *, description: str, on_behalf_of: User | None) -> Dataset:
    """The team's dataset called ``name`` (NFKC case folded), locked for the caller's
    transaction, or a new one the system creates on behalf of ``on_behalf_of`` with
    ``description``: where a job's or a check's outputs go (predictions, a code run's declared
    outputs, served rows). Other teams' names are never consulted. ValidationError when ``name``
    breaks the name rule."""
    dataset = Dataset.objects.select_for_update().filter(team_id=team.pk, name_key=name_key(name)).first()
    if dataset is not None:
        return dataset
    return do_create_dataset(
        team=team, name=name, description=description, actor=None, on_behalf_of=on_behalf_of
    )


def do_register_dataset_version(
    *,
    dataset: Dataset,
    file_path: Path,
    filename: str,
    source: str,
    description: str = "",
    actor: User | None,
    on_behalf_of: User | None = None,
    protects: DatasetVersion | None = None,
    pii_protection: dict[str, str] | None = None,
) -> DatasetVersion:
    """Validate a CSV/Parquet file, store it by content hash and register it as the next version.

    ``file_path`` is a readable local file (an upload's temporary file, an allowed server path,
    or a job's output). The version's ``schema_change`` records how its columns differ from the
    previous version's. Raises ``datafiles.DataFileError`` (nothing registered) when the file is
    not valid; ValidationError on ``schema`` naming the added/removed/retyped columns when the
    dataset is schema-locked and the columns differ; PermissionDenied when the actor may not
    change the dataset's team. ``protects`` and ``pii_protection``: for a protected copy
    (``runners.pii_protection``), the version it protects and the rule applied to each column.
    """
    description = checked_description(description)
    ensure_can(actor, CHANGE, dataset.team_id)
    summary = datafiles.summarize(
        file_path,
        filename,
        max_bytes=settings.STEWARD_MAX_DATASET_BYTES,
        max_rows=settings.STEWARD_MAX_DATASET_ROWS,
        chunk_rows=settings.STEWARD_DATA_CHUNK_ROWS,
    )
    # Content-addressed within the team only: identical bytes of two teams are two objects, so an
    # erasure destroys only its own team's copy and tells nothing of what other teams hold.
    stored = artifacts.store_file(
        file_path, summary.sha256, f"datasets/{dataset.team_id}", f".{summary.format}"
    )
    with transaction.atomic():
        # Lock the parent so two registrations racing for the same dataset get 1..n without gaps.
        dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
        ensure_can(actor, CHANGE, dataset.team_id)
        previous = DatasetVersion.objects.filter(dataset=dataset).order_by("-version").first()
        change = schema_change(previous.schema if previous else None, summary.schema)
        if change and dataset.is_schema_locked:
            raise ValidationError(
                {
                    "schema": f"dataset {dataset.name} is schema-locked and this file's columns differ "
                    f"from version {previous.version if previous else 0}'s: {describe_schema_change(change)}"
                }
            )
        version = DatasetVersion.objects.create(
            dataset=dataset,
            version=next_version(DatasetVersion, "dataset", dataset),
            file=stored,
            original_filename=filename[:255],
            format=summary.format,
            sha256=summary.sha256,
            size_bytes=summary.size_bytes,
            row_count=summary.row_count,
            schema=summary.schema,
            schema_change=change,
            source=source,
            description=description,
            created_by=actor or on_behalf_of,
            created_at=timezone.now(),
            protects=protects,
            pii_protection=pii_protection or {},
        )
        record_audit_event(
            actor=actor,
            on_behalf_of=on_behalf_of,
            action="dataset_version.register",
            obj=version,
            after=snapshot(version),
        )
        # Issue 12: every new version is scanned for personal data by a worker once committed.
        queue_pii_scan(version, requested_by=actor or on_behalf_of)
    return version


def do_erase_dataset_version(
    *, dataset_version: DatasetVersion, reason: str, actor: User | None
) -> DatasetVersion:
    """Erase a dataset version (GDPR Art. 17, the right to erasure): its stored bytes are
    destroyed (``governance.storage.shred``: the data key, so every copy of the ciphertext is
    unreadable, or the file itself when artifacts are not encrypted), the row stays with who,
    when and why, and one ``dataset_version.erase`` event records it. Jobs and checks that need
    the file are refused from then on, naming the erasure.

    The store keeps identical bytes once, so the other versions registered with the same bytes
    are erased with it (one event each, naming the version asked for) when ``actor`` manages
    all their teams; otherwise nothing is erased and the refusal names the versions it may see.
    Its protected copies (``runners.pii_protection``: the same personal data masked, hashed or
    with columns dropped, derived from it) are erased with it too, and theirs, and the versions
    sharing their bytes, under the same rule.

    Team managers only (PermissionDenied); ``actor`` None is the system (a team's retention
    policy, ``actions.retention.apply_retention``), which erases protected copies but never a
    version that merely shares its bytes, nor anything when one of them is under legal hold.
    ValidationError: no ``reason``; already erased; shared bytes it may not erase; a hold the
    system may not break."""
    why = (reason or "").strip()
    if not why:
        raise ValidationError({"reason": "say why the version is erased (the audit event keeps it)"})
    why = checked_description(why)
    with transaction.atomic():
        version = (
            DatasetVersion.objects.select_for_update().select_related("dataset").get(pk=dataset_version.pk)
        )
        ensure_can(actor, MANAGE, version.dataset.team_id)
        if version.erased_at is not None:
            raise ValidationError(
                {"detail": f"{version} was already erased on {version.erased_at:%Y-%m-%d %H:%M} UTC"}
            )
        sharing, copies = _erased_with(version)
        others = sharing + copies
        if (sharing and actor is None) or (
            actor is not None and not all(can(actor, MANAGE, other.dataset.team_id) for other in others)
        ):
            visible = [
                str(other)
                for other in others
                if actor is not None and can(actor, VIEW, other.dataset.team_id)
            ]
            named = f" ({', '.join(visible[:5])})" if visible else ""
            taken = (
                f"this erasure takes {len(others)} other version(s){named} with it (versions sharing "
                "its bytes and its protected copies)"
                if copies
                else f"the same bytes are registered as {len(others)} other version(s){named} "
                "that this erasure would destroy too"
            )
            raise ValidationError(
                {"detail": f"{taken}, and you may not erase them all; ask their teams' managers"}
            )
        held = [str(other) for other in (version, *others) if other.legal_hold_at is not None]
        if actor is None and held:
            # The system's retention never breaks a hold, also not through a copy it would take
            # along (a manager's own erasure may: the GDPR and the hold are theirs to weigh).
            raise ValidationError(
                {"detail": f"{', '.join(held[:5])} is under legal hold; the system erases none of it"}
            )
        now = timezone.now()
        destroyed = {file: storage.shred(file) for file in dict.fromkeys(v.file for v in (version, *others))}
        copy_of = {copy.pk: copy.protects_id for copy in copies}
        for erased in (version, *others):
            before = {"erased_at": None, "erasure_reason": "", "file": erased.file, "sha256": erased.sha256}
            erased.erased_at, erased.erased_by, erased.erasure_reason = now, actor, why
            erased.save(update_fields=["erased_at", "erased_by", "erasure_reason"])
            after = {
                "erased_at": now.isoformat(),
                "erasure_reason": why,
                "file": erased.file,
                "sha256": erased.sha256,
                "bytes_destroyed": destroyed[erased.file],
                "crypto_shredded": not storage.is_direct(),
                # The version asked for; another one here shared its bytes or was its copy.
                "requested_version": version.pk,
            }
            if erased.pk in copy_of:
                after["protected_copy_of"] = copy_of[erased.pk]
            record_audit_event(
                actor=actor, action="dataset_version.erase", obj=erased, before=before, after=after
            )
    return version


def _erased_with(version: DatasetVersion) -> tuple[list[DatasetVersion], list[DatasetVersion]]:
    """What erasing ``version`` destroys with it, locked, in the order found: ``(sharing,
    copies)``, the live versions that share the bytes of one erased, and the protected copies
    of one erased (``DatasetVersion.protects``), to a fixed point (a copy's copies, the versions
    sharing a copy's bytes)."""
    sharing: list[DatasetVersion] = []
    copies: list[DatasetVersion] = []
    seen = {version.pk}
    pending = [version]
    while pending:
        current = pending.pop(0)
        related = (
            DatasetVersion.objects.select_for_update()
            .select_related("dataset")
            .filter(Q(file=current.file) | Q(protects=current), erased_at__isnull=True)
            .exclude(pk__in=seen)
            .order_by("pk")
        )
        for other in related:
            seen.add(other.pk)
            (copies if other.protects_id == current.pk else sharing).append(other)
            pending.append(other)
    return sharing, copies


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

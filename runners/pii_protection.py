"""Protected copies of dataset versions (issue 12): what jobs read instead of a version whose
personal data its team's PII policy masks, hashes or drops.

A protected copy is a derived dataset version in the sibling dataset ``<name>-protected`` of the
same team, made from the source's file with ``governance.pii.protect_frame`` under the plan of
``governance.actions.pii.protection_needed`` (column level, from the source's done scan). It is
registered through ``do_register_dataset_version`` (its own audit event and PII scan), marked
``protects`` = the source with the rule applied per column, joined to the source by a ``derived``
lineage edge and audited ``dataset_version.protect``, all in one transaction. It lives here, not
in governance, because governance may not import lineage (the layers contract); runners calls both.

A sibling dataset rather than the next version of the source's dataset: the source dataset's
numbering, "latest version" and schema lock stay the user's (a dropped column would otherwise be
a schema change that a locked dataset refuses, and the next upload would read as "added" it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from django.core.exceptions import ValidationError
from django.db import transaction

from governance import datafiles, pii
from governance.actions.checks import ensure_can
from governance.actions.datasets import dataset_named, do_register_dataset_version
from governance.actions.pii import describe_plan, hash_key, protection_needed
from governance.audit import record_audit_event
from governance.models import DatasetVersion
from governance.permissions import CHANGE
from lineage.actions import do_record_edges
from lineage.models import Relation
from lineage.nodes import NodeRef

if TYPE_CHECKING:
    from django.contrib.auth.models import User

SUFFIX = "-protected"


def protected_dataset_name(name: str) -> str:
    """The sibling dataset that holds ``name``'s protected copies (within the 200-character name rule)."""
    return f"{name[: 200 - len(SUFFIX)]}{SUFFIX}"


def _read_text_frame(version: DatasetVersion) -> pd.DataFrame:
    # CSV cells are read as the text they are, so untouched columns are written back unchanged
    # and a hashed value is the file's text ("39", never "39.0" in a column with a gap).
    if version.format == "parquet":
        return datafiles.read_frame(version.path, version.format, version.original_filename or None)
    return pd.read_csv(version.path, dtype=str, keep_default_na=False)


def do_protect_dataset_version(*, dataset_version: DatasetVersion, actor: User) -> DatasetVersion | None:
    """The protected copy of ``dataset_version`` under its team's current PII policy: a copy made
    before under the same plan (not erased), else a new one (see the module's docstring). None
    when no copy is needed (``protection_needed`` is empty: nothing to protect, a copy itself,
    or a scan that ``pii_refusal`` refuses anyway). The source row is locked while the copy is
    made, so two submissions racing on one version make one copy. PermissionDenied without the
    right to change the team; ``datafiles.DataFileError`` when the source file cannot be read."""
    with transaction.atomic():
        source = (
            DatasetVersion.objects.select_for_update(of=("self",))
            .select_related("dataset__team")
            .get(pk=dataset_version.pk)
        )
        ensure_can(actor, CHANGE, source.dataset.team_id)
        plan = protection_needed(source)
        if not plan:
            return None
        applied = {column: rule for column, (rule, _) in plan.items()}
        made = (
            DatasetVersion.objects.filter(protects=source, pii_protection=applied, erased_at__isnull=True)
            .order_by("-pk")
            .first()
        )
        if made is not None:
            return made
        protected = pii.protect_frame(_read_text_frame(source), plan, hash_key())
        described = describe_plan(plan)
        target = dataset_named(
            source.dataset.team,
            protected_dataset_name(source.dataset.name),
            description=f"Protected copies of {source.dataset.name} under the team's PII policy",
            on_behalf_of=actor,
        )
        stem = Path(source.original_filename or f"{source.dataset.name}.{source.format}").stem
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{stem}.protected.{source.format}"
            path.write_bytes(datafiles.write_frame(protected, source.format))
            copy = do_register_dataset_version(
                dataset=target,
                file_path=path,
                filename=path.name,
                source=DatasetVersion.Source.PROTECTED,
                description=f"Protected copy of {source}: {described}",
                actor=actor,
                protects=source,
                pii_protection=applied,
            )
        do_record_edges(
            [(NodeRef("dataset_version", source.pk), NodeRef("dataset_version", copy.pk), Relation.DERIVED)]
        )
        record_audit_event(
            actor=actor,
            action="dataset_version.protect",
            obj=copy,
            after={
                "protects": source.pk,
                "source": str(source),
                "pii_protection": applied,
                "kinds": {column: kind for column, (_, kind) in plan.items()},
                "sha256": copy.sha256,
            },
        )
    return copy


def readable_version(dataset_version: DatasetVersion, *, actor: User, field: str) -> DatasetVersion:
    """The version a job submitted on ``dataset_version`` reads: its protected copy when its
    team's policy masks, hashes or drops some of it (made if missing), else itself (which
    ``pii_refusal`` may still refuse). A source file that cannot be read is a ValidationError on
    ``field``; call it inside the submission's transaction, after its permission check."""
    if not protection_needed(dataset_version):
        return dataset_version  # no lock on the version for the common case: nothing to protect
    try:
        copy = do_protect_dataset_version(dataset_version=dataset_version, actor=actor)
    except (datafiles.DataFileError, OSError) as exc:
        raise ValidationError(
            {field: f"could not make the protected copy of {dataset_version}: {exc}"}
        ) from exc
    return copy if copy is not None else dataset_version

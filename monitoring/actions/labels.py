"""Late labels (issue 11): receiving them, durably and idempotently, and reading them back for a
check's window.

A delivery is a list of rows ``{"prediction_id": uuid, "label": value}`` (online prediction's
ids) or ``{"key": value, "label": value}`` (the key column a monitor declares for batch outputs),
from the API's JSON body or an uploaded CSV/Parquet file with those columns. Rules:

- idempotent: a label delivered again with the same value changes nothing and is counted
  ``unchanged``; a different value for the same key replaces it (a correction) and is counted
  ``updated``; nothing is ever counted twice, so a check's labelled rows are the distinct keys;
- a prediction id the model never logged is reported back (``unknown``), not stored: there is no
  prediction to join it to (predictions are logged only when sampled);
- a bad row (no key, two keys, a missing/NaN/infinite/empty label, a label that is not a number,
  text or boolean, too long a key or label, the same key twice with two labels) refuses the whole
  delivery with a message naming the row; more than ``STEWARD_LABELS_MAX_ROWS`` rows too;
- who: ``change`` on the model's team (model owners and data scientists; a viewer may not);
- audited as ``labels.receive`` on the registered model, with the counts (not the labels).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance import datafiles
from governance.actions.checks import ensure_can
from governance.audit import record_audit_event
from governance.models import RegisteredModel
from governance.permissions import CHANGE
from monitoring.models import LabelKind, PredictionLabel

if TYPE_CHECKING:
    from django.contrib.auth.models import User

MAX_KEY_LENGTH = 255
MAX_LABEL_LENGTH = 255
# How many unknown prediction ids a receipt names (the count is always complete).
UNKNOWN_SHOWN = 20


@dataclass
class LabelReceipt:
    """What a delivery did: rows received, labels created, updated (corrected), unchanged
    (delivered before with the same value), and the prediction ids the model never logged."""

    received: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    unknown: int = 0
    unknown_prediction_ids: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _label_value(value: Any, row: int) -> Any:
    """The label as stored: a finite number, a non-empty text, or a boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValidationError({"labels": f"row {row}: the label is not a finite number"})
        return int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(value, str):
        if not value.strip():
            raise ValidationError({"labels": f"row {row}: the label is empty"})
        if "\x00" in value:  # PostgreSQL stores no NUL character in text or JSON
            raise ValidationError({"labels": f"row {row}: the label holds a NUL character"})
        if len(value) > MAX_LABEL_LENGTH:
            raise ValidationError(
                {"labels": f"row {row}: the label is longer than {MAX_LABEL_LENGTH} characters"}
            )
        return value
    if value is None:
        raise ValidationError({"labels": f"row {row}: the label is missing"})
    raise ValidationError({"labels": f"row {row}: the label must be a number, a text or a boolean"})


def _key_of(entry: Any, row: int) -> tuple[str, str]:
    """(kind, key as text) of one row; prediction ids normalised to their canonical form."""
    if not isinstance(entry, dict):
        raise ValidationError(
            {"labels": f"row {row}: expected an object with prediction_id or key, and label"}
        )
    stray = sorted(set(entry) - {"prediction_id", "key", "label"})
    if stray:
        raise ValidationError({"labels": f"row {row}: unknown field(s) {', '.join(stray)}"})
    has_id, has_key = entry.get("prediction_id") is not None, entry.get("key") is not None
    if has_id == has_key:
        raise ValidationError({"labels": f"row {row}: give exactly one of prediction_id and key"})
    if has_id:
        try:
            return LabelKind.PREDICTION_ID, str(uuid.UUID(str(entry["prediction_id"])))
        except ValueError:
            raise ValidationError({"labels": f"row {row}: prediction_id is not a UUID"}) from None
    key = entry["key"]
    if isinstance(key, float):
        if not math.isfinite(key):
            raise ValidationError({"labels": f"row {row}: the key is not a finite number"})
        key = int(key) if key.is_integer() else key
    if isinstance(key, bool) or not isinstance(key, str | int | float):
        raise ValidationError({"labels": f"row {row}: the key must be a text or a number"})
    text = str(key)
    if "\x00" in text:
        raise ValidationError({"labels": f"row {row}: the key holds a NUL character"})
    if not text.strip() or len(text) > MAX_KEY_LENGTH:
        raise ValidationError({"labels": f"row {row}: the key must be 1 to {MAX_KEY_LENGTH} characters"})
    return LabelKind.KEY, text


def parse_labels(rows: Any) -> dict[tuple[str, str], Any]:
    """``{(kind, key): label}`` of a delivery's rows, validated (see the module's rules).

    Raises ValidationError naming the first bad row (0-based), or the row count past the limit.
    """
    if not isinstance(rows, list) or not rows:
        raise ValidationError({"labels": "expected a non-empty list of {prediction_id or key, label} rows"})
    limit = settings.STEWARD_LABELS_MAX_ROWS
    if len(rows) > limit:
        raise ValidationError(
            {"labels": f"{len(rows)} rows is more than the limit of {limit} (STEWARD_LABELS_MAX_ROWS)"}
        )
    parsed: dict[tuple[str, str], Any] = {}
    for row, entry in enumerate(rows):
        kind_key = _key_of(entry, row)
        label = _label_value(entry.get("label"), row)
        if kind_key in parsed and parsed[kind_key] != label:
            raise ValidationError(
                {"labels": f"row {row}: {kind_key[0]} {kind_key[1]} has two different labels"}
            )
        parsed[kind_key] = label
    return parsed


def rows_of_file(path: Path, filename: str) -> list[dict[str, Any]]:
    """The rows of an uploaded CSV or Parquet file with columns ``label`` and ``prediction_id`` or
    ``key`` (empty cells: no value). Raises ValidationError for an unreadable file, another
    format or missing columns."""
    suffix = Path(filename).suffix.lower().lstrip(".")
    if suffix not in ("csv", "parquet"):
        raise ValidationError({"file": "upload a .csv or .parquet file"})
    try:
        frame = datafiles.read_frame(path, suffix, filename, max_rows=settings.STEWARD_LABELS_MAX_ROWS)
    except datafiles.DataFileError as exc:
        raise ValidationError({"file": str(exc)}) from exc
    keys = [column for column in ("prediction_id", "key") if column in frame.columns]
    if "label" not in frame.columns or not keys:
        raise ValidationError({"file": "the file needs a label column and a prediction_id or key column"})
    frame = frame[[*keys, "label"]].astype(object)
    frame = frame.where(frame.notna(), None)  # NaN and empty cells: no value, refused by the rules
    return [
        # numpy scalars as Python values; a Parquet list cell (an array) stays an array and is
        # refused by the rules, naming its row.
        {name: (value.item() if isinstance(value, np.generic) else value) for name, value in record.items()}
        for record in frame.to_dict("records")
    ]


def do_receive_labels(
    *, registered_model: RegisteredModel, rows: Any, actor: User, source: str = "api"
) -> LabelReceipt:
    """Store a delivery of labels for ``registered_model`` (see the module's rules); ``source``
    says where they came from in the audit event (``api`` or the uploaded file's name).

    Raises PermissionDenied without ``change`` on the model's team; ValidationError for a bad
    delivery or a deleted model.
    """
    parsed = parse_labels(rows)
    receipt = LabelReceipt(received=len(rows))
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update().get(pk=registered_model.pk)
        ensure_can(actor, CHANGE, model.team_id)
        if model.deleted_at is not None:
            raise ValidationError({"registered_model": f"model {model.name} was deleted"})
        ids = [key for kind, key in parsed if kind == LabelKind.PREDICTION_ID]
        if ids:
            known = _logged_ids(model, ids)
            unknown = [key for key in ids if key not in known]
            receipt.unknown = len(unknown)
            receipt.unknown_prediction_ids = unknown[:UNKNOWN_SHOWN]
            for key in unknown:
                del parsed[(LabelKind.PREDICTION_ID, key)]
        now = timezone.now()
        existing: dict[tuple[str, str], PredictionLabel] = {}
        for kind in LabelKind.values:
            keys = [key for k, key in parsed if k == kind]
            for start in range(0, len(keys), 5000):  # bounded IN lists, like the join's reads
                chunk = keys[start : start + 5000]
                for label in PredictionLabel.objects.filter(registered_model=model, kind=kind, key__in=chunk):
                    existing[(label.kind, label.key)] = label
        created, changed = [], []
        for (kind, key), value in parsed.items():
            found = existing.get((kind, key))
            if found is None:
                created.append(
                    PredictionLabel(
                        team_id=model.team_id,
                        registered_model=model,
                        kind=kind,
                        key=key,
                        label=value,
                        received_by=actor,
                        received_at=now,
                        updated_at=now,
                    )
                )
            elif found.label != value:
                found.label, found.received_by, found.updated_at = value, actor, now
                changed.append(found)
        # The model's row is locked, so no other delivery for it inserts between the read and here.
        PredictionLabel.objects.bulk_create(created, batch_size=5000)
        PredictionLabel.objects.bulk_update(changed, ["label", "received_by", "updated_at"], batch_size=5000)
        receipt.created, receipt.updated = len(created), len(changed)
        receipt.unchanged = receipt.received - receipt.created - receipt.updated - receipt.unknown
        record_audit_event(
            actor=actor,
            action="labels.receive",
            obj=model,
            team_id=model.team_id,
            after={
                "source": source[:255],
                **{k: v for k, v in receipt.as_json().items() if k != "unknown_prediction_ids"},
            },
        )
    return receipt


def _logged_ids(model: RegisteredModel, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` online prediction logged for ``model`` (any version, any role)."""
    from runners.models import Prediction

    found: set[str] = set()
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        found.update(
            str(value)
            for value in Prediction.objects.filter(registered_model=model, prediction_id__in=chunk)
            .values_list("prediction_id", flat=True)
            .distinct()
        )
    return found


def labels_for(registered_model_id: int, kind: str, keys: Iterable[str]) -> dict[str, Any]:
    """``{key: label}`` of the given keys that have a label (a check's join; read in chunks)."""
    keys = list(dict.fromkeys(keys))
    out: dict[str, Any] = {}
    for start in range(0, len(keys), 5000):
        out.update(
            PredictionLabel.objects.filter(
                registered_model_id=registered_model_id, kind=kind, key__in=keys[start : start + 5000]
            ).values_list("key", "label")
        )
    return out


def label_summary(registered_model: RegisteredModel) -> dict[str, Any]:
    """How many labels the model holds, by kind, and when the last one arrived."""
    from django.db.models import Count, Max

    rows = (
        PredictionLabel.objects.filter(registered_model=registered_model)
        .values("kind")
        .annotate(count=Count("id"), last=Max("updated_at"))
    )
    by_kind = {row["kind"]: row["count"] for row in rows}
    last = max((row["last"] for row in rows), default=None)
    return {
        "registered_model": registered_model.pk,
        "labels": sum(by_kind.values()),
        "by_prediction_id": by_kind.get(LabelKind.PREDICTION_ID, 0),
        "by_key": by_kind.get(LabelKind.KEY, 0),
        "last_received_at": last,
    }

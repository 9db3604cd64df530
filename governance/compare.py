"""Two model versions side by side: metrics, parameters, training data and signature (issue 9).

One function, ``compare_model_versions``, answers both the API (``/api/model-versions/compare/``)
and the UI page; the caller fetches both versions through ``restrict`` (an invisible one is a 404).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from governance.models import ModelVersion

MISSING = None  # a key only one side has shows None on the other (JSON null)


class ComparedRow(TypedDict):
    key: str
    a: Any
    b: Any
    differs: bool


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": 0.1}``),
    so a parameter nested in the training spec is compared on its own row."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _rows(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[ComparedRow]:
    """One row per key of either side, sorted by key; ``differs`` when the values are unequal
    (a key missing on one side differs)."""
    return [
        {
            "key": key,
            "a": a.get(key, MISSING),
            "b": b.get(key, MISSING),
            "differs": key not in a or key not in b or a[key] != b[key],
        }
        for key in sorted(set(a) | set(b))
    ]


def _training_data(version: ModelVersion) -> dict[str, Any]:
    data = version.training_dataset_version
    if data is None:
        return {}
    return {"id": data.pk, "dataset": data.dataset.name, "version": data.version, "sha256": data.sha256}


def _side(version: ModelVersion) -> dict[str, Any]:
    return {
        "id": version.pk,
        "model": version.model_id,
        "model_name": version.model.name,
        "version": version.version,
    }


def compare_model_versions(a: ModelVersion, b: ModelVersion) -> dict[str, Any]:
    """``a`` and ``b`` side by side.

    Returns ``{"a": {id, model, model_name, version}, "b": {...}, "metrics": rows,
    "parameters": rows, "training_data": rows, "signature": rows, "differs": bool}`` where rows
    are ``[{"key", "a", "b", "differs"}]`` sorted by key: metrics as recorded, parameters from the
    training spec (nested keys dotted), training data as the dataset version's id, dataset name,
    version number and sha256, signature by field (lists compared whole). ``a`` and ``b`` should
    come with ``model`` and ``training_dataset_version__dataset`` selected (else a query each).
    """
    sections = {
        "metrics": _rows(a.metrics or {}, b.metrics or {}),
        "parameters": _rows(_flat(a.training_spec or {}), _flat(b.training_spec or {})),
        "training_data": _rows(_training_data(a), _training_data(b)),
        "signature": _rows(a.signature or {}, b.signature or {}),
    }
    return {
        "a": _side(a),
        "b": _side(b),
        **sections,
        "differs": any(row["differs"] for rows in sections.values() for row in rows),
    }

"""Training specs: what a training job asks for, validated against the dataset's columns.

No Django and no torch import (issue 8): the web process and the API validate specs without
loading torch; ``runners.training`` trains from a parsed ``TrainingSpec``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from governance.datafiles import RowFilterError, check_where


class SpecError(ValueError):
    """The training spec is invalid for this dataset; the message names the field or column."""


def where_from_spec(where: Any, columns: list[str]) -> dict[str, Any]:
    """Validate a spec's row filter; raises SpecError (see ``governance.datafiles.check_where``)."""
    try:
        return check_where(where, columns)
    except RowFilterError as exc:
        raise SpecError(str(exc)) from exc


@dataclass(frozen=True)
class TrainingSpec:
    target: str
    features: list[str]
    task: str = "auto"
    categorical: list[str] | None = None
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0
    hidden_layers: list[int] = field(default_factory=lambda: [64, 32])
    validation_fraction: float = 0.2
    where: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 1
    limits: dict[str, int] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "features": list(self.features),
            "task": self.task,
            "categorical": self.categorical,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
            "hidden_layers": list(self.hidden_layers),
            "validation_fraction": self.validation_fraction,
            "where": dict(self.where),
            "checkpoint_every": self.checkpoint_every,
            "limits": dict(self.limits),
            "resources": dict(self.resources),
        }


def _bounded(raw: dict, name: str, kind: type, low: float, high: float, default: Any) -> Any:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{name}: expected a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise SpecError(f"{name}: expected an integer, got {value!r}")
    if not (low <= value <= high) or (isinstance(value, float) and math.isnan(value)):
        raise SpecError(f"{name}: must be between {low} and {high}, got {value!r}")
    return kind(value)


# The per-job limits a spec may ask for (issue 16), their units and smallest values.
LIMIT_FIELDS = {
    "wall_time_s": ("s", 1),
    "soft_wall_time_s": ("s", 1),
    "memory_mb": ("MB", 64),
    "threads": ("", 1),
}


def parse_limits(raw: Any, maxima: dict[str, int] | None = None) -> dict[str, int]:
    """Validate a spec's ``limits`` object: ``{wall_time_s, soft_wall_time_s, memory_mb, threads}``,
    each optional, a positive integer, at most ``maxima[name]`` (the settings' bounds; None: not
    checked here). The soft wall time must be below the hard one. Raises SpecError naming
    ``limits.<name>`` and the maximum."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError("limits: expected a JSON object")
    unknown = sorted(set(raw) - set(LIMIT_FIELDS))
    if unknown:
        raise SpecError(f"limits: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(LIMIT_FIELDS)}")
    limits = {}
    for name, value in raw.items():
        unit, low = LIMIT_FIELDS[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SpecError(f"limits.{name}: expected an integer of at least {low}, got {value!r}")
        most = (maxima or {}).get(name)
        if most is not None and value > most:
            raise SpecError(
                f"limits.{name}: at most {most}{' ' + unit if unit else ''} on this platform, got {value}"
            )
        limits[name] = value
    soft, hard = limits.get("soft_wall_time_s"), limits.get("wall_time_s")
    if soft is not None and hard is not None and soft >= hard:
        raise SpecError(f"limits.soft_wall_time_s: must be below wall_time_s ({hard} s), got {soft}")
    return limits


# Where a job's compute may run (issue 16): runners.models.JobBackend's values.
BACKENDS = ("local", "ray", "kubernetes")


def split_backend(raw: Any) -> tuple[str | None, Any]:
    """Take the optional ``backend`` out of a job's spec: returns (backend or None, the rest).

    The backend is the job's (``Job.backend``), not the training's: the rest is what the spec's
    own parser sees. Raises SpecError naming ``backend`` and its allowed values.
    """
    if not isinstance(raw, dict) or "backend" not in raw:
        return None, raw
    rest = {key: value for key, value in raw.items() if key != "backend"}
    backend = raw["backend"]
    if backend not in BACKENDS:
        raise SpecError(f"backend: one of {', '.join(BACKENDS)}; got {backend!r}")
    return backend, rest


# Fields a spec may carry that say where and when the job runs, not what it computes (issue 16):
# ``parse_spec`` lets them through untouched; ``runners.actions`` validates them at submission
# (``runners.windows`` for the start window). The backend is taken out first (``split_backend``).
SUBMISSION_FIELDS = frozenset({"start_window", "not_before"})


RESOURCE_FIELDS = ("class", "gpus")


def parse_resources(
    raw: Any, classes: dict[str, dict[str, Any]] | None, default_class: str = ""
) -> dict[str, Any]:
    """Validate a spec's ``resources`` object: ``{"class": name, "gpus": N}``, both optional.

    ``classes``: the platform's resource classes (``STEWARD_RESOURCE_CLASSES``: name -> ``{"gpus":
    most GPUs, ...}``); the class defaults to ``default_class`` and the GPUs to the class's own
    count. A class without GPUs takes 0; one with G GPUs takes 1 to G. With ``classes`` None (a
    stored spec, validated at submission: the classes may have changed since) only the shape is
    checked and it is returned as it is. Returns ``{"class", "gpus"}``; raises SpecError naming
    ``resources.class`` or ``resources.gpus`` and the allowed values.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError("resources: expected a JSON object")
    unknown = sorted(set(raw) - set(RESOURCE_FIELDS))
    if unknown:
        raise SpecError(f"resources: unknown field(s) {', '.join(unknown)}; allowed: class, gpus")
    name = raw.get("class", default_class)
    gpus = raw.get("gpus")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0):
        raise SpecError(f"resources.gpus: expected a whole number of GPUs, got {gpus!r}")
    if classes is None:
        if "class" in raw and not isinstance(name, str):
            raise SpecError(f"resources.class: expected a name, got {name!r}")
        return dict(raw)
    if not isinstance(name, str) or name not in classes:
        raise SpecError(f"resources.class: unknown class {name!r}; one of {', '.join(sorted(classes))}")
    most = int(classes[name].get("gpus", 0))
    if gpus is None:
        gpus = most
    if most == 0 and gpus != 0:
        raise SpecError(f"resources.gpus: class {name!r} has no GPUs, so 0; got {gpus}")
    if most > 0 and not 1 <= gpus <= most:
        raise SpecError(f"resources.gpus: class {name!r} offers 1 to {most} GPUs; got {gpus}")
    return {"class": name, "gpus": gpus}


def parse_spec(
    raw: Any,
    columns: list[str],
    *,
    maxima: dict[str, int] | None = None,
    classes: dict[str, dict[str, Any]] | None = None,
    default_class: str = "",
) -> TrainingSpec:
    """Validate a JSON training spec against the dataset's column names.

    ``maxima``: the platform's bounds on ``limits`` (see ``parse_limits``); ``classes`` and
    ``default_class``: the resource classes ``resources`` may name (see ``parse_resources``).
    Raises SpecError naming the bad field or the missing column.
    """
    if not isinstance(raw, dict):
        raise SpecError("spec: expected a JSON object")
    known = set(TrainingSpec.__dataclass_fields__) | SUBMISSION_FIELDS
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SpecError(f"spec: unknown field(s) {', '.join(unknown)}")
    target = raw.get("target")
    if not isinstance(target, str) or not target:
        raise SpecError("target: required, the name of the column to predict")
    if target not in columns:
        raise SpecError(f"target: column {target!r} is not in the dataset")
    features = raw.get("features")
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise SpecError("features: required, a non-empty list of column names")
    missing = [f for f in features if f not in columns]
    if missing:
        raise SpecError(f"features: column(s) {', '.join(map(repr, missing))} not in the dataset")
    if target in features:
        raise SpecError(f"features: the target {target!r} cannot also be a feature")
    if len(set(features)) != len(features):
        raise SpecError("features: a column is listed twice")
    task = raw.get("task", "auto")
    if task not in ("auto", "regression", "classification"):
        raise SpecError(f"task: one of auto, regression, classification; got {task!r}")
    categorical = raw.get("categorical")
    if categorical is not None and (
        not isinstance(categorical, list) or any(c not in features for c in categorical)
    ):
        raise SpecError("categorical: must be a list of names taken from features")
    hidden = raw.get("hidden_layers", [64, 32])
    if (
        not isinstance(hidden, list)
        or not 1 <= len(hidden) <= 8
        or not all(isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= 4096 for h in hidden)
    ):
        raise SpecError("hidden_layers: 1 to 8 layer widths, each an integer from 1 to 4096")
    return TrainingSpec(
        target=target,
        features=list(features),
        task=task,
        categorical=categorical,
        epochs=_bounded(raw, "epochs", int, 1, 1000, 20),
        batch_size=_bounded(raw, "batch_size", int, 1, 65536, 256),
        learning_rate=_bounded(raw, "learning_rate", float, 1e-7, 10.0, 1e-3),
        seed=_bounded(raw, "seed", int, 0, 2**31 - 1, 0),
        hidden_layers=hidden,
        validation_fraction=_bounded(raw, "validation_fraction", float, 0.05, 0.5, 0.2),
        where=where_from_spec(raw.get("where"), columns),
        checkpoint_every=_bounded(raw, "checkpoint_every", int, 0, 1000, 1),
        limits=parse_limits(raw.get("limits"), maxima),
        resources=parse_resources(raw.get("resources"), classes, default_class),
    )

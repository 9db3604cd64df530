"""Evaluation jobs (issue 15): what one asks for, checked at submission, and its champion.

The job's spec is the evaluation engine's ``EvaluationSpec`` fields (``task``, ``target``,
``positive_label``, ``sensitive_attributes``, ``slice_columns``, ...) beside the job's own:
``where`` (the rows to evaluate on, e.g. the held-out ones), ``limits``, ``resources``,
``champion_alias`` and the submission fields (backend, start window). The champion is resolved
when the job is submitted and stored as ``champion_version`` (an alias may move while the job
waits; the evaluation compares with the version the submitter was shown).
"""

from __future__ import annotations

from typing import Any

from governance.models import DatasetVersion, ModelAlias, ModelVersion
from runners.evaluation import EvaluationError, EvaluationSpec
from runners.evaluation.inputs import absent_columns, check_image_features
from runners.serving.predictors import refusal
from runners.serving.rows import columns_of
from runners.specs import SUBMISSION_FIELDS, SpecError, parse_limits, parse_resources, where_from_spec

# The alias a candidate is compared with when the spec names none.
DEFAULT_CHAMPION_ALIAS = "production"
JOB_FIELDS = frozenset({"where", "limits", "resources", "champion_alias", "champion_version"})
MAX_LISTED = 10


def _listed(names: list[str]) -> str:
    shown = ", ".join(map(repr, names[:MAX_LISTED]))
    return shown + (" ..." if len(names) > MAX_LISTED else "")


def evaluation_spec(spec: dict[str, Any]) -> EvaluationSpec:
    """The ``EvaluationSpec`` in a job's spec (its other fields set aside). Raises
    ``EvaluationError`` naming the bad field."""
    return EvaluationSpec.from_dict(
        {key: value for key, value in spec.items() if key not in JOB_FIELDS | SUBMISSION_FIELDS}
    )


def check_columns(evaluation: EvaluationSpec, dataset_version: DatasetVersion) -> None:
    """Every column the evaluation names (the ``image``'s pixel columns too, which must be
    features) is one of ``dataset_version``'s; raises ``EvaluationError`` naming the field, the
    column and the version (the engine checks the frame again when it runs)."""
    columns = dataset_version.column_names
    absent = absent_columns(evaluation, columns)
    if absent is not None:
        field, names = absent
        which = "column" if len(names) == 1 else "columns"
        raise EvaluationError(
            field,
            f"{which} {_listed(names)} not in dataset version {dataset_version}, "
            f"whose columns are {_listed(columns)}",
        )
    check_image_features(
        evaluation, list(evaluation.features or [c for c in columns if c != evaluation.target])
    )


def champion_for(model_version: ModelVersion, alias: str | None, *, is_named: bool) -> ModelVersion | None:
    """The version ``model_version`` is compared with: the one holding ``alias`` on its model.

    ``is_named``: the submitter named the alias, so an alias the model lacks, or one held by the
    candidate itself, is an error (SpecError naming ``champion_alias``); the default alias
    (``production``) is quietly skipped then. None: no comparison.
    """
    if not alias:
        return None
    if not isinstance(alias, str):
        raise SpecError(f"champion_alias: an alias name, got {alias!r}")
    found = ModelAlias.objects.filter(model_id=model_version.model_id, name=alias).select_related(
        "model_version__model"
    )
    holder = found.first()
    if holder is None:
        if is_named:
            raise SpecError(f"champion_alias: model {model_version.model.name} has no alias {alias!r}")
        return None
    champion = holder.model_version
    if champion.pk == model_version.pk:
        if is_named:
            raise SpecError(
                f"champion_alias: {alias!r} is held by {model_version} itself; nothing to compare with"
            )
        return None
    if champion.status == ModelVersion.Status.DELETED:
        raise SpecError(f"champion_alias: {alias!r} points at {champion}, which was deleted")
    why = refusal(champion.flavor)
    if why:
        raise SpecError(f"champion_alias: {alias!r} is held by {champion}, which cannot predict: {why}")
    return champion


def check_evaluation_spec(
    spec: Any,
    dataset_version: DatasetVersion,
    model_version: ModelVersion,
    *,
    maxima: dict[str, int],
    classes: dict[str, dict[str, Any]],
    default_class: str,
) -> dict[str, Any]:
    """Validate an evaluation job's spec for ``model_version`` on ``dataset_version``; returns
    it as stored: the evaluation spec normalised (``EvaluationSpec.to_dict``), ``resources``
    resolved, ``champion_alias`` and ``champion_version`` (a version id, or None).

    Raises SpecError whose message starts with the bad field: an ``EvaluationError``'s field
    (``sensitive_attributes: column 'sex' not in dataset version ...``), ``where``, ``limits``,
    ``resources``, ``champion_alias``, or the model's feature columns the data lacks.
    """
    if not isinstance(spec, dict):
        raise SpecError("spec: expected a JSON object")
    try:
        evaluation = evaluation_spec(spec)
        check_columns(evaluation, dataset_version)
    except EvaluationError as exc:
        raise SpecError(str(exc)) from exc
    parse_limits(spec.get("limits"), maxima)
    resources = parse_resources(spec.get("resources"), classes, default_class)
    where_from_spec(spec.get("where"), dataset_version.column_names)
    given = evaluation.features or [c for c in dataset_version.column_names if c != evaluation.target]
    expected = columns_of(model_version.signature, model_version.flavor_details) or []
    missing = [c.name for c in expected if c.is_required and c.name not in given]
    if missing:
        raise SpecError(
            f"features: the model's feature column(s) {_listed(missing)} are not among the "
            f"evaluation's features of dataset version {dataset_version}"
        )
    is_named = "champion_alias" in spec
    alias = spec.get("champion_alias") if is_named else DEFAULT_CHAMPION_ALIAS
    champion = champion_for(model_version, alias, is_named=is_named)
    return {
        **{key: value for key, value in spec.items() if key in SUBMISSION_FIELDS},
        **evaluation.to_dict(),
        "where": spec.get("where") or {},
        "limits": spec.get("limits") or {},
        "resources": resources,
        "champion_alias": alias if champion is not None else None,
        "champion_version": champion.pk if champion is not None else None,
    }

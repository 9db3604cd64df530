"""Evaluation records (issue 15): what the evaluation job (``runners``) or a user's MLflow client
reports about a model version on a dataset version, stored, audited and joined into lineage.

The numbers come from ``runners.evaluation`` (``EvaluationResult.to_dict()``,
``Comparison.to_dict()["differences"]``); governance stores them as JSON and never imports the
engine. Its lineage edges are recorded by the caller in the same transaction
(``runners.evaluation_records.record_evaluation``): governance imports no other app.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction

from governance.actions.checks import ensure_can
from governance.audit import record_audit_event, snapshot
from governance.models import DatasetVersion, Evaluation, ModelVersion
from governance.permissions import CHANGE

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# One evaluation's JSON: the engine's curves (200 points each), 50 slices and the fairness groups
# of a few attributes take ~100 kB; a bound 20 times that keeps a bad client from storing a
# database-sized row through the MLflow door.
MAX_JSON_CHARS = 2_000_000


def _checked_json(name: str, value: Any, *, required: bool) -> Any:
    """``value`` if it is JSON the audit log and PostgreSQL accept (an object, no NaN, no
    infinities) of at most MAX_JSON_CHARS characters; ValidationError on ``name`` otherwise."""
    if value is None:
        if required:
            raise ValidationError({name: f"{name} is required"})
        return None
    if not isinstance(value, dict):
        raise ValidationError({name: f"{name} must be a JSON object, not {type(value).__name__}"})
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError({name: f"{name} is not plain JSON (numbers must be finite): {exc}"}) from exc
    if len(text) > MAX_JSON_CHARS:
        raise ValidationError(
            {name: f"{name} has {len(text):,} characters of JSON; at most {MAX_JSON_CHARS:,}"}
        )
    return value


def _finite(number: int | float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int too large for a float
        return False


def _metric_entry(metric: str, entry: Any) -> dict[str, Any]:
    """One metric as the engine writes it, ``{"value", "ci_low", "ci_high", "reason"}``; a bare
    number (what MLflow's ``log_metric`` gives a self-reported evaluation) becomes the value with
    no interval."""
    if isinstance(entry, int | float) and not isinstance(entry, bool):
        entry = {"value": entry}
    if not isinstance(entry, dict) or "value" not in entry:
        raise ValidationError(
            {"results": f"metric {metric!r} must be a number or an object with a 'value', not {entry!r:.80}"}
        )
    out = {"value": None, "ci_low": None, "ci_high": None, "reason": None, **entry}
    for bound in ("value", "ci_low", "ci_high"):
        number = out[bound]
        if number is not None and (
            isinstance(number, bool) or not isinstance(number, int | float) or not _finite(number)
        ):
            raise ValidationError({"results": f"metric {metric!r}: {bound} must be a finite number or null"})
    return out


def _checked_results(results: Any) -> dict[str, Any]:
    results = _checked_json("results", results, required=True)
    metrics = results.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ValidationError({"results": "results must hold 'metrics', an object of metric name -> value"})
    for metric in metrics:
        if not isinstance(metric, str) or not metric or len(metric) > 250:
            raise ValidationError({"results": f"metric name {metric!r:.60} must be 1 to 250 characters"})
    return {**results, "metrics": {metric: _metric_entry(metric, entry) for metric, entry in metrics.items()}}


def do_record_evaluation(
    *,
    model_version: ModelVersion,
    dataset_version: DatasetVersion | None,
    spec: dict,
    results: dict,
    source: str = "steward",
    job_id: int | None = None,
    champion_version: ModelVersion | None = None,
    champion_results: dict | None = None,
    comparison: dict | None = None,
    actor: User | None,
    on_behalf_of: User | None = None,
) -> Evaluation:
    """Store an evaluation of ``model_version`` on ``dataset_version``, audited
    (``evaluation.record``), in one transaction (the caller's when it has one, so a job commits
    its success and its evaluation together). Its lineage edges are the caller's to record in that
    transaction: ``runners.evaluation_records.record_evaluation`` does both.

    - ``spec``: ``EvaluationSpec.to_dict()`` (self-reported: whatever the client said, may be {}).
    - ``results``: ``EvaluationResult.to_dict()``; it must hold ``metrics``, ``{name: {"value",
      "ci_low", "ci_high", "reason"}}`` (a bare number is taken as the value).
    - ``source``: ``"steward"`` (the evaluation job; needs a dataset version) or
      ``"self_reported"`` (logged with the MLflow client; never satisfies a promotion gate).
    - ``champion_version`` / ``champion_results`` / ``comparison``: the version that held the
      target alias, its results on the same rows and ``Comparison.to_dict()["differences"]``.
    - ``actor``: the user, or None for the system (a worker) acting ``on_behalf_of`` the job's
      creator.

    Raises ValidationError for an unknown source, a dataset version or champion of another team
    (or, for the champion, another model), a Steward evaluation without a dataset version,
    comparison data without a champion, results without metrics, JSON that is not plain or over
    ``MAX_JSON_CHARS``; PermissionDenied when ``actor`` lacks CHANGE on the model's team.
    """
    if source not in Evaluation.Source.values:
        raise ValidationError(
            {"source": f"unknown source {source!r}; one of {', '.join(Evaluation.Source.values)}"}
        )
    spec = _checked_json("spec", spec if spec is not None else {}, required=True)
    results = _checked_results(results)
    champion_results = _checked_json("champion_results", champion_results, required=False)
    comparison = _checked_json("comparison", comparison, required=False)
    if champion_version is None and (champion_results is not None or comparison is not None):
        raise ValidationError(
            {"champion_version": "champion results and a comparison need the champion version"}
        )
    if job_id is not None and (isinstance(job_id, bool) or not isinstance(job_id, int) or job_id < 1):
        raise ValidationError({"job_id": "a job id is a positive integer"})
    with transaction.atomic():
        version = ModelVersion.objects.select_related("model").get(pk=model_version.pk)
        team_id = version.model.team_id
        ensure_can(actor, CHANGE, team_id)
        if version.status == ModelVersion.Status.DELETED:
            raise ValidationError({"model_version": f"{version} is deleted"})
        dataset = None
        if dataset_version is not None:
            dataset = DatasetVersion.objects.select_related("dataset").get(pk=dataset_version.pk)
            if dataset.dataset.team_id != team_id:
                # As for jobs: another team's rows (and names, through lineage) stay out.
                raise ValidationError(
                    {"dataset_version": "the dataset version belongs to another team than the model"}
                )
        elif source == Evaluation.Source.STEWARD:
            raise ValidationError({"dataset_version": "an evaluation by Steward names its dataset version"})
        champion = None
        if champion_version is not None:
            champion = ModelVersion.objects.select_related("model").get(pk=champion_version.pk)
            if champion.model_id != version.model_id:
                raise ValidationError(
                    {"champion_version": f"{champion} is not a version of model {version.model.name}"}
                )
            if champion.pk == version.pk:
                raise ValidationError({"champion_version": "a version is not its own champion"})
        evaluation = Evaluation.objects.create(
            team_id=team_id,
            model_version=version,
            dataset_version=dataset,
            job_id=job_id,
            source=source,
            spec=spec,
            results=results,
            champion_version=champion,
            champion_results=champion_results,
            comparison=comparison,
            created_by=actor or on_behalf_of,
        )
        record_audit_event(
            actor=actor,
            on_behalf_of=on_behalf_of,
            action="evaluation.record",
            obj=evaluation,
            team_id=team_id,
            after={**(snapshot(evaluation) or {}), "metrics": _metric_values(results)},
        )
    return evaluation


def _metric_values(results: dict[str, Any]) -> dict[str, Any]:
    """``{metric: value}``: what the audit event keeps of the results (the row keeps the rest)."""
    return {name: entry["value"] for name, entry in results["metrics"].items()}

"""Promotion gates (issue 15): what a version must show before one of the team's protected aliases
moves to it, per (team, alias) in ``PromotionGatePolicy``; set by the team's managers
(``do_set_gate_policy``), evaluated by ``gate_results`` against the version's newest evaluation by
Steward, the stored champion comparison and the version's open alerts.

Condition kinds (each ``{"kind": ..., parameters}``):

- ``metric_bound`` ``{metric, min?, max?}``: the metric's value within the bounds.
- ``not_worse_than_champion`` ``{metrics: [...] | "all"}``: no listed metric is worse than the
  champion's (the version holding the alias) beyond the paired bootstrap interval
  (``is_worse`` of the stored comparison: the whole interval on the worse side of 0); a compared
  metric without an interval (no bootstrap resamples) fails, since nothing then says "worse".
- ``fairness_ratio_at_least`` ``{value}``: each sensitive attribute's demographic-parity ratio
  (Fairlearn's min/max selection rate; the four-fifths rule is 0.8) at least ``value``.
- ``robustness_drop_at_most`` ``{value}``: each perturbation's drop of the primary metric (in its
  units, positive = worse) at most ``value``; a perturbation the model failed on fails.
- ``no_open_critical_alert`` ``{}``: no unresolved critical alert on the version.
- ``evaluation_max_age_days`` ``{days}``: the evaluation is at most ``days`` days old.
- ``pii_policy_satisfied`` ``{}``: the version's training dataset version has a done PII scan
  and no finding its team's PII policy blocks (``actions.pii.pii_gate``; issue 12).

The policy's optional ``evaluation`` setting (``check_evaluation_setting``) names the dataset and
the evaluation spec a promotion request evaluates the candidate with when it has no evaluation
young enough (``actions.promotions``; the job itself is submitted by runners).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance.actions.checks import check_alias_name, ensure_can, is_protected_alias
from governance.actions.pii import pii_gate
from governance.audit import record_audit_event, snapshot
from governance.models import Dataset, Evaluation, ModelAlias, ModelVersion, PromotionGatePolicy, Team
from governance.names import name_key
from governance.permissions import MANAGE

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# The evaluation engine's metric names (runners.evaluation.spec: REGRESSION_METRICS +
# CLASSIFICATION_METRICS), kept here because governance does not import runners; a test checks
# that the two lists agree.
EVALUATION_METRICS = (
    "rmse",
    "mae",
    "r2",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "calibration_error",
)
# monitoring's Severity.CRITICAL, by value: governance does not import monitoring.
CRITICAL = "critical"
MAX_CONDITIONS = 50
# The evaluation setting's fields: the dataset, then the engine's EvaluationSpec fields a policy
# may fix (runners.evaluation.spec; its full checks run when the job is submitted).
EVALUATION_TASKS = ("classification", "regression")
EVALUATION_FIELDS = ("dataset", "task", "target", "positive_label", "sensitive_attributes", "slice_columns")

# Kind -> (required parameters, optional parameters).
CONDITION_KINDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "metric_bound": (frozenset({"metric"}), frozenset({"min", "max"})),
    "not_worse_than_champion": (frozenset({"metrics"}), frozenset()),
    "fairness_ratio_at_least": (frozenset({"value"}), frozenset()),
    "robustness_drop_at_most": (frozenset({"value"}), frozenset()),
    "no_open_critical_alert": (frozenset(), frozenset()),
    "evaluation_max_age_days": (frozenset({"days"}), frozenset()),
    "pii_policy_satisfied": (frozenset(), frozenset()),
}


@dataclass(frozen=True)
class GateResult:
    """One condition's verdict: ``passed`` True, False (blocks approval) or None (does not apply,
    e.g. no champion to compare with; does not block); ``detail`` says what was read;
    ``condition``: the policy's condition judged (``gate_results`` sets it), so that an override
    is known to cover this condition and not one the policy put in its place since."""

    kind: str
    passed: bool | None
    detail: str
    condition: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float (JSON allows 10**400)
        return False


def _metric_name(where: str, metric: Any) -> str:
    if metric not in EVALUATION_METRICS:
        raise ValidationError(
            {"conditions": f"{where}: unknown metric {metric!r}; one of {', '.join(EVALUATION_METRICS)}"}
        )
    return str(metric)


def _check_condition(position: int, condition: Any) -> dict[str, Any]:
    where = f"condition {position}"
    if not isinstance(condition, dict):
        raise ValidationError({"conditions": f"{where}: an object with a 'kind', not {condition!r:.60}"})
    kind = condition.get("kind")
    if kind not in CONDITION_KINDS:
        raise ValidationError(
            {"conditions": f"{where}: unknown kind {kind!r}; one of {', '.join(CONDITION_KINDS)}"}
        )
    where = f"{where} ({kind})"
    required, optional = CONDITION_KINDS[kind]
    given = set(condition) - {"kind"}
    if missing := sorted(required - given):
        raise ValidationError({"conditions": f"{where}: {', '.join(missing)} required"})
    if unknown := sorted(given - required - optional):
        allowed = sorted(required | optional)
        raise ValidationError(
            {
                "conditions": f"{where}: unknown parameter {unknown[0]!r}; "
                f"it takes {', '.join(allowed) or 'none'}"
            }
        )
    out = dict(condition)
    if kind == "metric_bound":
        out["metric"] = _metric_name(where, condition["metric"])
        if "min" not in given and "max" not in given:
            raise ValidationError({"conditions": f"{where}: give min, max or both"})
        for bound in ("min", "max"):
            if bound in given and not _is_number(condition[bound]):
                raise ValidationError({"conditions": f"{where}: {bound} must be a number"})
        if "min" in given and "max" in given and condition["min"] > condition["max"]:
            raise ValidationError({"conditions": f"{where}: min is above max"})
    elif kind == "not_worse_than_champion":
        metrics = condition["metrics"]
        if metrics != "all":
            if not isinstance(metrics, list) or not metrics:
                raise ValidationError({"conditions": f'{where}: metrics is a list of metric names or "all"'})
            out["metrics"] = sorted({_metric_name(where, metric) for metric in metrics})
    elif kind == "fairness_ratio_at_least":
        if not _is_number(condition["value"]) or not 0 < condition["value"] <= 1:
            raise ValidationError(
                {"conditions": f"{where}: value is a ratio above 0 and at most 1 (0.8: four fifths)"}
            )
    elif kind == "robustness_drop_at_most":
        if not _is_number(condition["value"]) or condition["value"] < 0:
            raise ValidationError(
                {"conditions": f"{where}: value is a number of at least 0 (the metric's units)"}
            )
    elif kind == "evaluation_max_age_days":
        days = condition["days"]
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise ValidationError({"conditions": f"{where}: days is a whole number of at least 1"})
    return out


def check_conditions(conditions: Any) -> list[dict[str, Any]]:
    """``conditions`` validated (see the module docstring for the kinds); ValidationError on
    ``conditions`` naming the position (from 1), the kind and what is wrong. A kind other than
    ``metric_bound`` appears at most once."""
    if not isinstance(conditions, list):
        raise ValidationError({"conditions": 'a list of conditions, each {"kind": ..., ...}'})
    if len(conditions) > MAX_CONDITIONS:
        raise ValidationError({"conditions": f"at most {MAX_CONDITIONS} conditions, not {len(conditions)}"})
    checked = [_check_condition(position, condition) for position, condition in enumerate(conditions, 1)]
    kinds = [condition["kind"] for condition in checked if condition["kind"] != "metric_bound"]
    if repeated := sorted({kind for kind in kinds if kinds.count(kind) > 1}):
        raise ValidationError({"conditions": f"{repeated[0]} appears more than once; give it once"})
    return checked


def _column_names(field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(name, str) and name.strip() for name in value):
        raise ValidationError({"evaluation": f"{field}: a list of column names"})
    if len(set(value)) != len(value):
        raise ValidationError({"evaluation": f"{field}: a column appears more than once"})
    return list(value)


def check_evaluation_setting(setting: Any, team: Team) -> dict[str, Any]:
    """The policy's ``evaluation`` setting checked for shape: {} or None (no evaluation is
    started), else ``{"dataset": <id of one of team's datasets>, "task": "classification" |
    "regression", "target": <column>, "positive_label"?: <class as text>,
    "sensitive_attributes"?: [columns], "slice_columns"?: [columns]}``. ValidationError on
    ``evaluation`` naming the field. The columns are checked against the dataset's newest version
    when the job is submitted (the engine's checks)."""
    if setting is None or setting == {}:
        return {}
    if not isinstance(setting, dict):
        raise ValidationError({"evaluation": 'an object {"dataset": <id>, "task", "target", ...} or {}'})
    if unknown := sorted(set(setting) - set(EVALUATION_FIELDS)):
        raise ValidationError(
            {"evaluation": f"unknown field {unknown[0]!r}; the fields are {', '.join(EVALUATION_FIELDS)}"}
        )
    if missing := [name for name in ("dataset", "task", "target") if name not in setting]:
        raise ValidationError({"evaluation": f"{', '.join(missing)} required"})
    dataset = setting["dataset"]
    if isinstance(dataset, bool) or not isinstance(dataset, int):
        raise ValidationError({"evaluation": "dataset: a dataset id"})
    if not Dataset.objects.filter(pk=dataset, team=team).exists():
        raise ValidationError({"evaluation": f"dataset: no dataset #{dataset} in team {team.name}"})
    task = setting["task"]
    if task not in EVALUATION_TASKS:
        raise ValidationError({"evaluation": f"task: {task!r} is not one of {', '.join(EVALUATION_TASKS)}"})
    target = setting["target"]
    if not isinstance(target, str) or not target.strip():
        raise ValidationError({"evaluation": "target: name the label column"})
    out: dict[str, Any] = {"dataset": dataset, "task": task, "target": target}
    label = setting.get("positive_label")
    if label is not None:
        if task == "regression":
            raise ValidationError({"evaluation": "positive_label: a regression has no positive label"})
        if isinstance(label, int) and not isinstance(label, bool):
            label = str(label)
        if not isinstance(label, str):
            raise ValidationError({"evaluation": "positive_label: give the positive class as text"})
        out["positive_label"] = label
    for field in ("sensitive_attributes", "slice_columns"):
        if setting.get(field) is not None:
            names = _column_names(field, setting[field])
            if target in names:
                raise ValidationError({"evaluation": f"{field}: the target {target!r} cannot be one of them"})
            out[field] = names
    if out.get("sensitive_attributes") and task == "classification" and "positive_label" not in out:
        raise ValidationError({"evaluation": "positive_label: fairness needs the positive class"})
    return out


def policy_snapshot(policy: PromotionGatePolicy | None) -> dict[str, Any] | None:
    """The policy's audit snapshot: its ``audit_fields``, and its ``evaluation`` setting when it
    has one (a policy without is recorded as before the setting existed)."""
    out = snapshot(policy)
    if policy is not None and out is not None and policy.evaluation:
        out["evaluation"] = policy.evaluation
    return out


def do_set_gate_policy(
    *,
    team: Team,
    alias: str,
    conditions: list[dict[str, Any]],
    actor: User | None,
    evaluation: dict[str, Any] | None = None,
) -> PromotionGatePolicy:
    """Set the gates of ``team``'s protected ``alias`` (created if new; an empty list leaves four
    eyes only) and its ``evaluation`` setting (None or {}: no evaluation is started by a
    request; ``check_evaluation_setting``). The team's managers (model owners, platform admins:
    MANAGE) only; audited ``gate_policy.set`` with the conditions before and after.

    ValidationError for an alias that is not protected in the team (gates apply to promotion
    requests, which only protected aliases have) or invalid conditions (``check_conditions``);
    PermissionDenied without MANAGE.
    """
    alias = check_alias_name(alias)
    checked = check_conditions(conditions)
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        ensure_can(actor, MANAGE, team.pk)
        if not is_protected_alias(team.protected_aliases, alias):
            raise ValidationError(
                {
                    "alias": f"alias {alias!r} is not protected in team {team.name} (protected: "
                    f"{', '.join(team.protected_aliases) or 'none'}); protect it first, gates apply "
                    "to promotion requests"
                }
            )
        setting = check_evaluation_setting(evaluation, team)
        # One policy per protected alias, whatever its spelling: "Production" sets the policy of
        # "production", stored under the protected list's spelling.
        key = name_key(alias)
        alias = next(name for name in team.protected_aliases if name_key(name) == key)
        policy = PromotionGatePolicy.objects.select_for_update().filter(team=team, alias_key=key).first()
        before = policy_snapshot(policy)
        if policy is None:
            policy = PromotionGatePolicy(team=team, alias=alias, alias_key=key)
        elif policy.conditions == checked and policy.evaluation == setting:
            return policy
        policy.conditions = checked
        policy.evaluation = setting
        policy.updated_by = actor
        policy.updated_at = timezone.now()
        policy.save()
        record_audit_event(
            actor=actor,
            action="gate_policy.set",
            obj=policy,
            team_id=team.pk,
            before=before,
            after=policy_snapshot(policy),
        )
    return policy


def gate_policy(team_id: int, alias: str) -> PromotionGatePolicy | None:
    """The policy of ``alias`` in team ``team_id`` (compared under the alias's name key, like
    protection), or None."""
    return PromotionGatePolicy.objects.filter(team_id=team_id, alias_key=name_key(alias)).first()


# How many of a version's evaluations on the policy's dataset are read for one that conforms.
POLICY_EVALUATIONS_READ = 50


def policy_dataset(policy: PromotionGatePolicy) -> int | None:
    """The dataset a policy's gates are judged on: its ``evaluation`` setting's dataset, or None
    (any dataset) for a policy without one. An evaluation on another dataset (an easier one)
    never satisfies that policy's gates."""
    dataset = (policy.evaluation or {}).get("dataset")
    return dataset if isinstance(dataset, int) else None


def nonconformity(evaluation: Evaluation, setting: dict[str, Any]) -> str:
    """Why ``evaluation`` is not the evaluation a policy's ``evaluation`` setting asks for ("" when
    it is): the requester picks an evaluation's spec and rows, so one on a favourable subset (a
    ``where`` filter, a sample), without the policy's sensitive attributes or of another target
    would pass gates the policy's own evaluation fails. Evaluations recorded before their spec
    carried ``where`` count as unfiltered."""
    spec = evaluation.spec or {}
    if spec.get("target") != setting.get("target"):
        return f"its target is {spec.get('target')!r}, the policy's {setting.get('target')!r}"
    label = setting.get("positive_label")
    if label is not None and str(spec.get("positive_label")) != label:
        return f"its positive label is {spec.get('positive_label')!r}, the policy's {label!r}"
    lacking = [
        name
        for name in setting.get("sensitive_attributes") or []
        if name not in spec.get("sensitive_attributes", [])
    ]
    if lacking:
        return f"it leaves out the sensitive attribute(s) {', '.join(map(repr, lacking))}"
    if spec.get("where"):
        return f"it evaluated only the rows where {spec['where']}"
    sampled = ((evaluation.results or {}).get("dropped") or {}).get("sampled_out") or 0
    if sampled:
        return f"it left {sampled:,} rows out by sampling (max_rows)"
    return ""


def policy_evaluation(
    version: ModelVersion, policy: PromotionGatePolicy | None
) -> tuple[Evaluation | None, str]:
    """The evaluation ``policy``'s gates read for ``version``, and why a newer one does not count.

    With the policy's ``evaluation`` setting: the newest evaluation by Steward on its dataset that
    conforms to it (``nonconformity``); the reason names the newest one passed over, if any.
    Without (or without a policy): the version's newest evaluation by Steward, and ""."""
    if policy is None or not policy.evaluation:
        return newest_evaluation(version), ""
    setting = policy.evaluation
    evaluations = (
        Evaluation.objects.filter(
            model_version=version,
            source=Evaluation.Source.STEWARD,
            dataset_version__dataset_id=setting["dataset"],  # check_evaluation_setting: an id
        )
        .select_related("champion_version__model", "dataset_version__dataset")
        .order_by("-created_at", "-id")
    )
    passed_over = ""
    for evaluation in evaluations[:POLICY_EVALUATIONS_READ]:
        why = nonconformity(evaluation, setting)
        if not why:
            return evaluation, passed_over
        passed_over = passed_over or f"evaluation #{evaluation.pk} does not count: {why}"
    return None, passed_over


def judged_evaluation(version: ModelVersion, alias: str) -> Evaluation | None:
    """The evaluation the gates of ``alias`` read for ``version`` (``policy_evaluation``); None if
    none."""
    return policy_evaluation(version, gate_policy(version.model.team_id, alias))[0]


def needs_evaluation(version: ModelVersion, policy: PromotionGatePolicy | None) -> bool:
    """Whether a request for ``version`` under ``policy`` starts an evaluation: the policy has an
    ``evaluation`` setting and the version has no evaluation by Steward, or none younger than the
    policy's ``evaluation_max_age_days`` (without that condition any evaluation is reused)."""
    if policy is None or not policy.evaluation:
        return False
    evaluation, _ = policy_evaluation(version, policy)
    if evaluation is None:
        return True
    for condition in policy.conditions:
        if condition["kind"] == "evaluation_max_age_days":
            return _age(condition, evaluation).passed is False
    return False


def critical_alerts(version: ModelVersion) -> list[dict[str, Any]]:
    """The version's unresolved critical alerts, oldest first: ``[{"id", "title", "state"}]``.
    Reached through the alerts' reverse accessor and their ``unresolved()`` query, so governance
    does not import monitoring."""
    alerts = version.alerts.unresolved().filter(severity=CRITICAL).order_by("id")
    return [{"id": alert.pk, "title": alert.title, "state": alert.state} for alert in alerts]


def newest_evaluation(
    version: ModelVersion, *, source: str | None = Evaluation.Source.STEWARD, dataset_id: int | None = None
) -> Evaluation | None:
    """The version's newest evaluation (by Steward unless ``source`` is None: any), on a version
    of dataset ``dataset_id`` when given."""
    evaluations = Evaluation.objects.filter(model_version=version)
    if source is not None:
        evaluations = evaluations.filter(source=source)
    if dataset_id is not None:
        evaluations = evaluations.filter(dataset_version__dataset_id=dataset_id)
    return (
        evaluations.select_related("champion_version__model", "dataset_version__dataset")
        .order_by("-created_at", "-id")
        .first()
    )


def _number(value: Any) -> str:
    return "—" if value is None else f"{value:.4g}"


def _metric_bound(condition: dict[str, Any], evaluation: Evaluation) -> GateResult:
    metric = condition["metric"]
    bounds = " and ".join(
        f"{'≥' if bound == 'min' else '≤'} {condition[bound]:g}"
        for bound in ("min", "max")
        if bound in condition
    )
    entry = evaluation.results.get("metrics", {}).get(metric)
    if entry is None or entry.get("value") is None:
        reason = (entry or {}).get("reason") or "not measured"
        return GateResult(
            "metric_bound",
            False,
            f"{metric} must be {bounds}; evaluation #{evaluation.pk} has no value ({reason})",
        )
    value = entry["value"]
    passed = condition.get("min", -math.inf) <= value <= condition.get("max", math.inf)
    interval = (
        f" (CI {_number(entry.get('ci_low'))} to {_number(entry.get('ci_high'))})"
        if entry.get("ci_low") is not None
        else ""
    )
    return GateResult("metric_bound", passed, f"{metric} = {value:.4g}{interval}, must be {bounds}")


def _champion(condition: dict[str, Any], evaluation: Evaluation, holder: ModelVersion | None) -> GateResult:
    kind = "not_worse_than_champion"
    if holder is None:
        return GateResult(kind, None, "no version holds the alias yet: no champion to compare with")
    if evaluation.champion_version_id != holder.pk or not evaluation.comparison:
        compared = (
            f"compared with {evaluation.champion_version}"
            if evaluation.champion_version_id
            else "has no champion comparison"
        )
        return GateResult(
            kind,
            False,
            f"evaluation #{evaluation.pk} {compared}, but the champion is {holder}; evaluate against it",
        )
    differences = evaluation.comparison
    wanted = condition["metrics"]
    names = sorted(differences) if wanted == "all" else wanted
    worse, unknown, unsure = [], [], []
    for name in names:
        entry = differences.get(name)
        if entry is None or entry.get("difference") is None:
            if wanted != "all":
                unknown.append(name)
            continue
        if entry.get("ci_low") is None or entry.get("ci_high") is None:
            # No interval (an evaluation with bootstrap_resamples 0): "is_worse" is then never
            # set, which would pass any candidate, however much worse.
            unsure.append(name)
            continue
        if entry.get("is_worse"):
            worse.append(
                f"{name} {_number(entry['candidate'])} vs {_number(entry['champion'])} (difference "
                f"{_number(entry['difference'])}, CI {_number(entry.get('ci_low'))} "
                f"to {_number(entry.get('ci_high'))})"
            )
    if worse or unknown or unsure:
        parts = [f"worse than {holder} beyond the interval: {'; '.join(worse)}"] if worse else []
        parts += [f"not compared: {', '.join(unknown)}"] if unknown else []
        parts += (
            [f"no confidence interval (evaluated without bootstrap resamples): {', '.join(unsure)}"]
            if unsure
            else []
        )
        return GateResult(kind, False, ". ".join(parts))
    return GateResult(kind, True, f"no metric of {', '.join(names)} worse than {holder} beyond its interval")


def _fairness(condition: dict[str, Any], evaluation: Evaluation) -> GateResult:
    kind, bound = "fairness_ratio_at_least", condition["value"]
    fairness = evaluation.results.get("fairness") or {}
    if not fairness:
        return GateResult(kind, False, f"evaluation #{evaluation.pk} measured no sensitive attribute")
    ratios = {
        attribute: (values or {}).get("demographic_parity_ratio") for attribute, values in fairness.items()
    }
    failing = [attribute for attribute, ratio in ratios.items() if ratio is None or ratio < bound]
    listed = ", ".join(f"{attribute} {_number(ratio)}" for attribute, ratio in ratios.items())
    if failing:
        return GateResult(
            kind, False, f"demographic-parity ratio below {bound:g} on {', '.join(failing)} ({listed})"
        )
    return GateResult(kind, True, f"demographic-parity ratio at least {bound:g} on each attribute ({listed})")


def _robustness(condition: dict[str, Any], evaluation: Evaluation) -> GateResult:
    kind, bound = "robustness_drop_at_most", condition["value"]
    probes = evaluation.results.get("robustness") or []
    if not probes:
        return GateResult(kind, False, f"evaluation #{evaluation.pk} ran no robustness probe")
    failing, listed = [], []
    for probe in probes:
        name, drop = probe.get("perturbation"), probe.get("drop")
        if probe.get("error") or drop is None:
            failing.append(f"{name}: {probe.get('error') or 'no value'}")
            continue
        listed.append(f"{name} {drop:.4g}")
        if drop > bound:
            failing.append(f"{name} drops {probe.get('metric')} by {drop:.4g}")
    if failing:
        return GateResult(kind, False, f"drop above {bound:g}: {'; '.join(failing)}")
    return GateResult(kind, True, f"every drop at most {bound:g} ({', '.join(listed)})")


def _alerts(version: ModelVersion) -> GateResult:
    alerts = critical_alerts(version)
    if alerts:
        listed = "; ".join(f"#{alert['id']} {alert['title']}" for alert in alerts)
        return GateResult(
            "no_open_critical_alert", False, f"{version} has unresolved critical alerts: {listed}"
        )
    return GateResult("no_open_critical_alert", True, f"{version} has no unresolved critical alert")


def _age(condition: dict[str, Any], evaluation: Evaluation) -> GateResult:
    days = condition["days"]
    age = (timezone.now() - evaluation.created_at).total_seconds() / 86400
    detail = f"evaluation #{evaluation.pk} is {age:.1f} days old; at most {days}"
    return GateResult("evaluation_max_age_days", age <= days, detail)


def _pii(version: ModelVersion) -> GateResult:
    passed, detail = pii_gate(version.training_dataset_version)
    return GateResult("pii_policy_satisfied", passed, detail)


def gate_results(version: ModelVersion, alias: str) -> list[GateResult]:
    """Each condition of the gate policy of ``version``'s team for ``alias``, in the policy's
    order; [] when the alias has no policy (four eyes only).

    Reads the version's newest evaluation by Steward (a self-reported one never satisfies a gate:
    the detail says so), on the policy's dataset when its ``evaluation`` setting names one
    (``policy_dataset``), and, for the champion comparison, the version that holds ``alias`` now.
    Without an evaluation every condition but ``no_open_critical_alert`` and
    ``pii_policy_satisfied`` (which read no evaluation) fails with "no evaluation of <version> yet".
    """
    model = version.model
    policy = gate_policy(model.team_id, alias)
    if policy is None or not policy.conditions:
        return []
    dataset_id = policy_dataset(policy)
    evaluation, passed_over = policy_evaluation(version, policy)
    missing = f"no evaluation of {version} yet"
    if dataset_id is not None:
        dataset = Dataset.objects.filter(pk=dataset_id).values_list("name", flat=True).first()
        missing = f"no evaluation of {version} on dataset {dataset or f'#{dataset_id}'} (the policy's) yet"
    self_reported = Evaluation.Source.SELF_REPORTED
    others = newest_evaluation(version, source=self_reported, dataset_id=dataset_id)
    if evaluation is None and passed_over:
        missing = f"{missing.removesuffix(' yet')} as the policy asks for it yet; {passed_over}"
    elif evaluation is None and others is not None:
        missing += " (only self-reported ones, which never satisfy a gate: run an evaluation in Steward)"
    elif evaluation is None and dataset_id is not None and newest_evaluation(version) is not None:
        missing += "; evaluations on other datasets do not count"
    current = (
        ModelAlias.objects.filter(model_id=version.model_id, name=alias)
        .select_related("model_version__model")
        .first()
    )
    holder = current.model_version if current is not None and current.model_version_id != version.pk else None
    return [
        replace(_gate_result(condition, version, evaluation, holder, missing), condition=condition)
        for condition in policy.conditions
    ]


def _gate_result(
    condition: dict[str, Any],
    version: ModelVersion,
    evaluation: Evaluation | None,
    holder: ModelVersion | None,
    missing: str,
) -> GateResult:
    """One condition's verdict (``gate_results``); its ``condition`` is set by the caller."""
    kind = condition["kind"]
    if kind == "no_open_critical_alert":
        return _alerts(version)
    if kind == "pii_policy_satisfied":
        return _pii(version)
    if evaluation is None:
        return GateResult(kind, False, missing)
    if kind == "metric_bound":
        return _metric_bound(condition, evaluation)
    if kind == "not_worse_than_champion":
        return _champion(condition, evaluation, holder)
    if kind == "fairness_ratio_at_least":
        return _fairness(condition, evaluation)
    if kind == "robustness_drop_at_most":
        return _robustness(condition, evaluation)
    return _age(condition, evaluation)


def failing_gates(results: list[GateResult]) -> list[GateResult]:
    """The results that block approval (``passed`` is False)."""
    return [result for result in results if result.passed is False]


def describe_failures(results: list[GateResult]) -> str:
    """ "gate <kind> fails: <detail>; ..." for the failing results, "" when none fails."""
    return "; ".join(f"gate {result.kind} fails: {result.detail}" for result in failing_gates(results))

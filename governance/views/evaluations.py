"""Evaluation pages (issue 15): one evaluation's metrics with intervals, curves, slices (worst
first), fairness per sensitive attribute, robustness and importance, and the champion side by
side. Every chart is ``governance.charts.chart`` with its table; the figures are the stored JSON's.
And the promotion gate policies: listed for the team, set by its managers.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from governance.actions.gates import do_set_gate_policy
from governance.charts import CHART_POINTS_MAX, Series, chart, finite, format_number
from governance.forms import GatePolicyForm
from governance.models import Evaluation, PromotionGatePolicy, Team
from governance.permissions import MANAGE, can
from governance.views.helpers import form_view, visible_or_404

# The four-fifths rule (EEOC, 29 CFR 1607.4(D)): the line each fairness chart is judged against.
FOUR_FIFTHS = 0.8


def metric_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """``[{name, value, ci_low, ci_high, reason}]`` of an EvaluationResult's metrics, formatted."""
    return [
        {
            "name": name,
            "value": format_number(finite(entry.get("value"))),
            "ci_low": format_number(finite(entry.get("ci_low"))),
            "ci_high": format_number(finite(entry.get("ci_high"))),
            "reason": entry.get("reason") or "",
        }
        for name, entry in (results.get("metrics") or {}).items()
    ]


def comparison_rows(evaluation: Evaluation) -> list[dict[str, Any]]:
    """The champion comparison, a row per metric: candidate, champion, difference and its
    paired-bootstrap interval, and whether the candidate is worse or better beyond it."""
    return [
        {
            "name": name,
            "candidate": format_number(finite(entry.get("candidate"))),
            "champion": format_number(finite(entry.get("champion"))),
            "difference": format_number(finite(entry.get("difference"))),
            "ci_low": format_number(finite(entry.get("ci_low"))),
            "ci_high": format_number(finite(entry.get("ci_high"))),
            "verdict": "worse" if entry.get("is_worse") else "better" if entry.get("is_better") else "",
        }
        for name, entry in (evaluation.comparison or {}).items()
    ]


def _line(x: list[Any], y: list[Any], *, x_label: str, y_label: str, extra: tuple[Series, ...] = ()) -> dict:
    # Drawn left to right: a precision-recall curve comes with recall falling.
    order = sorted(range(min(len(x), CHART_POINTS_MAX)), key=lambda i: finite(x[i]) or 0.0)
    positions = [finite(x[i]) or 0.0 for i in order]
    return chart(
        "line",
        x_label=x_label,
        x=positions,
        x_labels=[format_number(value) for value in positions],
        series=[
            Series(y_label, [y[i] for i in order]),
            *(Series(s.label, [s.values[i] for i in order], s.is_threshold) for s in extra),
        ],
        y_label=y_label,
    )


def _bars(labels: list[str], series: list[Series], *, x_label: str, y_label: str) -> dict:
    return chart(
        "bar",
        x_label=x_label,
        x=list(range(len(labels))),
        x_labels=labels,
        series=series,
        y_label=y_label,
    )


def evaluation_charts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{"id", "caption", "chart"}]`` of an EvaluationResult: ROC, precision-recall and
    calibration curves (classification with probabilities) or the residual histogram
    (regression), then fairness (selection rate per group with the four-fifths line: 0.8 x the
    highest group's rate, under which a group fails the ratio), robustness and importance bars."""
    charts: list[dict[str, Any]] = []
    curves = results.get("curves") or {}
    if roc := curves.get("roc"):
        charts.append(
            {
                "id": "roc",
                "caption": "ROC curve",
                "chart": _line(
                    roc["fpr"], roc["tpr"], x_label="false positive rate", y_label="true positive rate"
                ),
            }
        )
    if pr := curves.get("pr"):
        charts.append(
            {
                "id": "pr",
                "caption": "Precision-recall curve",
                "chart": _line(pr["recall"], pr["precision"], x_label="recall", y_label="precision"),
            }
        )
    if calibration := curves.get("calibration"):
        diagonal = Series("perfectly calibrated", list(calibration["mean_probability"]), is_threshold=True)
        charts.append(
            {
                "id": "calibration",
                "caption": "Calibration: share positive per predicted probability bin",
                "chart": _line(
                    calibration["mean_probability"],
                    calibration["fraction_positive"],
                    x_label="mean predicted probability",
                    y_label="share positive",
                    extra=(diagonal,),
                ),
            }
        )
    if residuals := curves.get("residuals"):
        edges = residuals["edges"]
        labels = [f"{format_number(low)} to {format_number(high)}" for low, high in pairwise(edges)]
        charts.append(
            {
                "id": "residuals",
                "caption": "Residuals (truth - prediction)",
                "chart": _bars(
                    labels, [Series("rows", residuals["counts"])], x_label="residual", y_label="rows"
                ),
            }
        )
    for position, (attribute, fairness) in enumerate((results.get("fairness") or {}).items()):
        groups = (fairness.get("groups") or [])[:CHART_POINTS_MAX]
        labels = [str(group["group"]) for group in groups]
        if "selection_rate" in (groups[0] if groups else {}):
            rates = [finite(group.get("selection_rate")) for group in groups]
            highest = max((rate for rate in rates if rate is not None), default=None)
            line = None if highest is None else FOUR_FIFTHS * highest
            series = [
                Series("selection rate", rates),
                Series("0.8 of the highest rate", [line] * len(groups), is_threshold=True),
            ]
            ratio = format_number(finite(fairness.get("demographic_parity_ratio")))
            caption = f"Selection rate per {attribute} group (demographic-parity ratio {ratio})"
            y_label = "selection rate"
        else:
            series = [Series("RMSE", [finite(group.get("rmse")) for group in groups])]
            caption = f"RMSE per {attribute} group"
            y_label = "RMSE"
        series_rows = Series("rows", [group.get("rows") for group in groups])
        built = chart(
            "bar",
            x_label=attribute,
            x=list(range(len(labels))),
            x_labels=labels,
            series=series,
            y_label=y_label,
            table_only=[series_rows],
        )
        charts.append(
            {"id": f"fairness-{position}", "caption": caption, "chart": built, "attribute": attribute}
        )
    if robustness := results.get("robustness"):
        labels = [str(probe.get("perturbation")) for probe in robustness]
        metric = robustness[0].get("metric", "")
        charts.append(
            {
                "id": "robustness",
                "caption": f"Robustness: drop of {metric} under each perturbation (positive = worse)",
                "chart": _bars(
                    labels,
                    [Series(f"{metric} drop", [probe.get("drop") for probe in robustness])],
                    x_label="perturbation",
                    y_label="drop",
                ),
            }
        )
    if importance := (results.get("importance") or [])[:CHART_POINTS_MAX]:
        labels = [str(item.get("feature")) for item in importance]
        charts.append(
            {
                "id": "importance",
                "caption": f"Permutation importance ({results.get('primary_metric', '')} lost "
                "with the column shuffled)",
                "chart": _bars(
                    labels,
                    [Series("mean", [item.get("mean") for item in importance])],
                    x_label="feature",
                    y_label="importance",
                ),
            }
        )
    return charts


def slice_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The slices, worst first as the engine ordered them: column, value, rows, the primary
    metric's value (or why none) and its bootstrap interval ("" for evaluations recorded before
    slices had intervals)."""
    metric = results.get("primary_metric")
    rows = []
    for item in (results.get("slices") or {}).get("items") or []:
        value = (item.get("metrics") or {}).get(metric) if item.get("metrics") else None
        low, high = ((item.get("intervals") or {}).get(metric) or [None, None])[:2]
        interval = ""
        if finite(low) is not None and finite(high) is not None:
            interval = f"{format_number(finite(low))} to {format_number(finite(high))}"
        rows.append(
            {
                "column": item.get("column"),
                "value": item.get("value"),
                "rows": item.get("rows"),
                "metric": "too few rows" if item.get("too_small") else format_number(finite(value)),
                "interval": interval,
            }
        )
    return rows


@login_required
def evaluation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One evaluation the user may view (another team's: 404)."""
    evaluation = visible_or_404(
        request,
        Evaluation.objects.select_related(
            "team",
            "model_version__model",
            "dataset_version__dataset",
            "champion_version__model",
            "created_by",
        ),
        pk,
    )
    results = evaluation.results
    context = {
        "section": "models",
        "evaluation": evaluation,
        "metrics": metric_rows(results),
        "champion_metrics": metric_rows(evaluation.champion_results or {}),
        "comparison": comparison_rows(evaluation),
        "charts": evaluation_charts(results),
        "slices": slice_rows(results),
        "left_out_slices": (results.get("slices") or {}).get("left_out", 0),
        "fairness": [
            {
                "attribute": attribute,
                "figures": [
                    (key.replace("_", " "), format_number(finite(value)))
                    for key, value in values.items()
                    if key not in ("groups", "four_fifths_rule_holds")
                ],
                "four_fifths_rule_holds": values.get("four_fifths_rule_holds"),
            }
            for attribute, values in (results.get("fairness") or {}).items()
        ],
    }
    return render(request, "governance/evaluation_detail.html", context)


@login_required
def gate_policy_list(request: HttpRequest) -> HttpResponse:
    """The gate policies the user may view; POST sets one (the team's managers)."""

    def page() -> dict[str, Any]:
        return {
            "section": "promotions",
            "policies": PromotionGatePolicy.objects.restrict(request.user).select_related(
                "team", "updated_by"
            ),
            "may_manage": Team.objects.restrict(request.user, MANAGE).exists(),
        }

    return form_view(
        request,
        GatePolicyForm(request.POST or None, user=request.user),
        lambda data: _set_policy(request, data),
        success_message=lambda policy: f"Set the gates of {policy.alias} in {policy.team.name}.",
        template="governance/gate_policy_list.html",
        context=page,
    )


def _set_policy(request: HttpRequest, data: dict[str, Any]) -> PromotionGatePolicy:
    """``do_set_gate_policy`` from a valid ``GatePolicyForm`` (the list's form and a policy's page)."""
    return do_set_gate_policy(
        team=data["team"],
        alias=data["alias"],
        conditions=data["conditions"],
        evaluation=data.get("evaluation"),
        actor=request.user,
    )


@login_required
def gate_policy_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One policy's conditions; its team's managers edit them here."""
    policy = visible_or_404(request, PromotionGatePolicy.objects.select_related("team", "updated_by"), pk)
    initial = {
        "team": policy.team,
        "alias": policy.alias,
        "conditions": policy.conditions,
        "evaluation": policy.evaluation,
    }
    return form_view(
        request,
        GatePolicyForm(request.POST or None, initial=initial, user=request.user),
        lambda data: _set_policy(request, data),
        success_message=lambda saved: f"Set the gates of {saved.alias} in {saved.team.name}.",
        template="governance/gate_policy_detail.html",
        context=lambda: {
            "section": "promotions",
            "policy": policy,
            "may_manage": can(request.user, MANAGE, policy.team_id),
        },
    )

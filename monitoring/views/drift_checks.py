"""Drift check pages: request one of a model version, the list, a check's verdicts, its report."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_sameorigin

from governance.charts import Series, chart
from governance.models import ModelVersion
from governance.views.helpers import filtered_list, form_page, form_view, visible_or_404
from monitoring.actions.checks import do_request_drift_check
from monitoring.engine import count_tested
from monitoring.filtersets import DriftCheckFilterSet
from monitoring.forms import DriftCheckForm
from monitoring.models import Alert, CheckState, DriftCheck
from monitoring.queries import CHART_COLUMNS_MAX, column_scores, group_trend, relative_score
from monitoring.report_http import report_response
from monitoring.views.relations import CHECK_RELATIONS


@login_required
def drift_check_request(request: HttpRequest, pk: int) -> HttpResponse:
    """Compare a dataset version against a model version's training data; GET shows the form."""
    version = visible_or_404(
        request, ModelVersion.objects.select_related("model", "training_dataset_version__dataset"), pk
    )
    form = DriftCheckForm(request.POST or None, user=request.user)
    return form_view(
        request,
        form,
        lambda data: do_request_drift_check(
            model_version=version,
            current_dataset_version=data["current_dataset_version"],
            columns=form.column_list(),
            drift_share=data["drift_share"],
            actor=request.user,
        ),
        success_message=lambda check: f"Requested {check}; it runs when a worker picks it up.",
        template="generic/form.html",
        context=lambda: form_page(
            "models", f"Check {version} for data drift", "Run drift check", version.get_absolute_url()
        ),
    )


@login_required
def drift_check_list(request: HttpRequest) -> HttpResponse:
    """Drift checks newest first, filtered by model version, state, verdict and team."""
    queryset = DriftCheck.objects.restrict(request.user).select_related(*CHECK_RELATIONS)
    context = {"section": "drift", **filtered_list(request, DriftCheckFilterSet, queryset)}
    return render(request, "monitoring/drift_check_list.html", context)


def _side_by_side(check: DriftCheck) -> list[dict]:
    """Each column's engine verdict with evidently's beside it; drifted (by the engine) first."""
    evidently = {row["column"]: row for row in check.evidently_results}
    rows = [dict(result, evidently=evidently.get(result["column"])) for result in check.results]
    return sorted(rows, key=lambda r: (not r.get("is_drifted"), r["column"]))


def score_chart(check: DriftCheck) -> dict | None:
    """A succeeded check's bar chart: each tested column's score relative to its own threshold
    (``monitoring.queries.relative_score``; 1 is the threshold), most drifted first, with the raw
    score and threshold in its table. None before the check has succeeded."""
    if check.state != CheckState.SUCCEEDED:
        return None
    rows = column_scores(check)
    return chart(
        "bar",
        x_label="column (method)",
        x=list(range(len(rows))),
        x_labels=[f"{row['column']} ({row['method']})" for row in rows],
        series=[
            Series("score ÷ threshold", [row["relative"] for row in rows]),
            Series("threshold", [1.0] * len(rows), is_threshold=True),
        ],
        y_label="times its threshold",
        table_only=[
            Series("score", [row["score"] for row in rows]),
            Series("its threshold", [row["threshold"] for row in rows]),
        ],
    )


def _group_rows(groups: list[dict], columns: list[str]) -> list[dict]:
    """Each window or segment with one cell per column: its score and whether it drifted."""
    rows = []
    for group in groups:
        cells = []
        for name in columns:
            result = group["columns"].get(name) or {}
            cells.append(
                {
                    "score": result.get("score"),
                    "status": result.get("status"),
                    "is_drifted": result.get("status") == "drift",
                }
            )
        rows.append(dict(group, cells=cells))
    return rows


def groups_context(check: DriftCheck) -> dict | None:
    """The page's windows and segments (issue 11): tables of verdicts and scores per group, and a
    line chart of the share of drifted columns per window (the trend) against the check's drift
    share, with each column's score per window in its table. None when the check asked for none."""
    if not check.groups:
        return None
    trend = group_trend(check)
    columns = trend["columns"]
    windows = trend["windows"] or {}
    segments = trend["segments"] or {}
    listed = windows.get("windows") or []
    window_chart = None
    if listed:
        window_chart = chart(
            "line",
            x_label="window",
            x=list(range(len(listed))),
            x_labels=[window["label"] for window in listed],
            series=[
                Series("share of drifted columns", [window["share_of_drifted_columns"] for window in listed]),
                Series("drift share", [check.drift_share] * len(listed), is_threshold=True),
            ],
            y_label="share of drifted columns",
            table_only=[
                Series(
                    f"{name} score ÷ threshold",
                    [
                        relative_score(c.get("method"), c.get("score"), c.get("threshold"))
                        for c in (window["columns"].get(name) or {} for window in listed)
                    ],
                )
                for name in columns
            ],
        )
    return {
        "trend": trend,
        "columns": columns,
        "windows": windows,
        "segments": segments,
        "window_rows": _group_rows(listed, columns),
        "segment_rows": _group_rows(segments.get("segments") or [], columns),
        "window_chart": window_chart,
    }


@login_required
def drift_check_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The engine's per-column verdicts (evidently's beside them), prediction and performance
    drift, the dataset verdict, progress while it runs, and the evidently report."""
    check = visible_or_404(request, DriftCheck.objects.select_related(*CHECK_RELATIONS, "monitor"), pk)
    performance = check.performance or {}
    context = {
        "section": "drift",
        "check": check,
        "is_finished": check.is_finished,
        "reference_where": json.dumps(check.reference_where or {}),
        "results": _side_by_side(check),
        "tested_count": count_tested(check.results),
        "performance_rows": sorted(performance.get("metrics", {}).items()),
        "alerts": Alert.objects.restrict(request.user).filter(drift_check=check),
        "score_chart": score_chart(check),
        "score_columns_max": CHART_COLUMNS_MAX,
        "groups": groups_context(check),
    }
    return render(request, "monitoring/drift_check_detail.html", context)


@login_required
@xframe_options_sameorigin
def drift_check_report(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """The stored evidently HTML, framed by the drift check page, with its own CSP
    (``monitoring.reports.REPORT_CSP``)."""
    return report_response(visible_or_404(request, DriftCheck.objects.all(), pk))

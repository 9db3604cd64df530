"""Monitor pages: create, view, edit, and the confirmed run, pause, resume and delete buttons."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from governance.charts import Series, chart
from governance.models import ModelVersion
from governance.views.helpers import button_view, form_page, form_view, pretty_json, visible_or_404
from monitoring.actions.checks import do_run_monitor
from monitoring.actions.monitors import (
    do_create_monitor,
    do_delete_monitor,
    do_pause_monitor,
    do_resume_monitor,
    do_update_monitor,
)
from monitoring.forms import MonitorForm
from monitoring.models import Alert, DriftCheck, Monitor
from monitoring.permissions import may_change_monitor
from monitoring.queries import (
    CHART_CHECKS_MAX,
    P_VALUE_METHODS,
    checked_columns,
    column_history,
    column_scores,
    recent_checks,
)
from monitoring.views.relations import MONITOR_RELATIONS


@login_required
def monitor_create(request: HttpRequest, pk: int) -> HttpResponse:
    """A new monitor of a model version; GET shows the form with the defaults."""
    version = visible_or_404(
        request, ModelVersion.objects.select_related("model", "training_dataset_version__dataset"), pk
    )
    form = MonitorForm(request.POST or None, user=request.user)

    def create(data: dict[str, Any]) -> Monitor:
        options = form.options()
        return do_create_monitor(
            model_version=version, name=options.pop("name"), actor=request.user, **options
        )

    return form_view(
        request,
        form,
        create,
        success_message=lambda monitor: f"Created {monitor}.",
        template="generic/form.html",
        context=lambda: form_page(
            "models", f"New monitor of {version}", "Create monitor", version.get_absolute_url()
        ),
    )


def _when(check: DriftCheck) -> str:
    return f"{timezone.localtime(check.created_at):%Y-%m-%d %H:%M} (#{check.pk})"


def _column_caption(column: str | None, methods: list[str]) -> str:
    if column is None:
        return "Score of a column per check"
    # p-values drift at or below their threshold (K-S) or below it, distances at or above it.
    where = "below" if methods and all(m in P_VALUE_METHODS for m in methods) else "at or above"
    tested = ", ".join(methods) or "untested"
    return f"Score of {column} per check ({tested}); drifted {where} the dashed threshold"


def monitor_charts(monitor: Monitor, asked_column: str | None) -> dict[str, Any]:
    """The monitor page's charts over its last ``CHART_CHECKS_MAX`` succeeded checks: the share of
    drifted columns against the monitor's drift share (``share_chart``), and one column's score
    against its threshold (``column_chart``; ``asked_column`` when it was checked, else the most
    drifted column of the newest check). Also ``columns`` (the choices) and ``column``."""
    checks = recent_checks(monitor)
    x = [check.created_at.timestamp() for check in checks]
    labels = [_when(check) for check in checks]
    share_chart = chart(
        "line",
        x_label="check",
        x=x,
        x_labels=labels,
        series=[
            Series("drifted share", [check.drifted_fraction for check in checks]),
            Series("drift share threshold", [check.drift_share for check in checks], is_threshold=True),
        ],
        y_label="share of columns",
        x_time=True,
    )
    columns = checked_columns(checks)
    column = asked_column if asked_column in columns else None
    if column is None and checks:
        newest = column_scores(checks[-1])
        column = newest[0]["column"] if newest else (columns[0] if columns else None)
    history = column_history(checks, column) if column else []
    methods = sorted({point["method"] for point in history if point["method"]})
    column_chart = chart(
        "line",
        x_label="check",
        x=x if column else [],
        x_labels=labels if column else [],
        series=[
            Series("score", [point["score"] for point in history]),
            Series("threshold", [point["threshold"] for point in history], is_threshold=True),
        ],
        y_label=", ".join(methods),
        x_time=True,
    )
    return {
        "share_chart": share_chart,
        "column_chart": column_chart,
        "columns": columns,
        "column": column,
        "column_caption": _column_caption(column, methods),
        "chart_checks_max": CHART_CHECKS_MAX,
    }


@login_required
def monitor_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A monitor: its settings, open alert, recent checks and the buttons to run, pause or edit it."""
    user = request.user
    monitor = visible_or_404(request, Monitor.objects.select_related(*MONITOR_RELATIONS), pk)
    context = {
        "section": "models",
        "monitor": monitor,
        "alerts": Alert.objects.restrict(user)
        .filter(monitor=monitor)
        .select_related("owner", "model_version__model")[:10],
        "checks": DriftCheck.objects.restrict(user)
        .filter(monitor=monitor)
        .select_related("model_version__model", "current_dataset_version__dataset")[:20],
        "may_change": may_change_monitor(user, monitor),
        "settings_json": pretty_json(
            {
                "columns": monitor.columns,
                "methods": monitor.methods,
                "thresholds": monitor.thresholds,
                "reference_where": monitor.reference_where,
                "retrain_where": monitor.retrain_where,
            }
        ),
        **monitor_charts(monitor, request.GET.get("column")),
    }
    return render(request, "monitoring/monitor_detail.html", context)


@login_required
def monitor_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a monitor's settings (and its schedule)."""
    monitor = visible_or_404(request, Monitor.objects.select_related(*MONITOR_RELATIONS), pk)
    form = MonitorForm.for_monitor(monitor, request.POST or None, user=request.user)
    return form_view(
        request,
        form,
        lambda data: do_update_monitor(monitor=monitor, actor=request.user, **form.options()),
        success_message=lambda changed: f"Saved {changed}.",
        template="generic/form.html",
        context=lambda: form_page("models", f"Edit {monitor}", "Save monitor", monitor.get_absolute_url()),
    )


# verb: (label, action, success message, where a success goes)
MONITOR_BUTTONS: dict[str, tuple[str, Callable[..., Any], str, Callable[[Monitor, Any], Any]]] = {
    "run": ("Run", do_run_monitor, "Queued a check of {monitor}.", lambda monitor, check: check),
    "pause": ("Pause", do_pause_monitor, "Paused {monitor}: its schedule stops.", lambda monitor, _: monitor),
    "resume": ("Resume", do_resume_monitor, "Resumed {monitor}.", lambda monitor, _: monitor),
    "delete": ("Delete", do_delete_monitor, "Deleted {monitor}.", lambda monitor, _: monitor.model_version),
}


def _monitor_button(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    monitor = visible_or_404(request, Monitor.objects.select_related(*MONITOR_RELATIONS), pk)
    label, action, success_message, success = MONITOR_BUTTONS[verb]
    return button_view(
        request,
        lambda: action(monitor=monitor, actor=request.user),
        section="models",
        question=f"{label} {monitor}?",
        explanation="Its checks and alerts stay." if verb == "delete" else "",
        label=label,
        back=monitor.get_absolute_url(),
        success_message=success_message.format(monitor=monitor),
        success=lambda result: success(monitor, result),
    )


@login_required
def monitor_run(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST queues a check of the monitor's window now."""
    return _monitor_button(request, pk, "run")


@login_required
def monitor_pause(request: HttpRequest, pk: int) -> HttpResponse:
    return _monitor_button(request, pk, "pause")


@login_required
def monitor_resume(request: HttpRequest, pk: int) -> HttpResponse:
    return _monitor_button(request, pk, "resume")


@login_required
def monitor_delete(request: HttpRequest, pk: int) -> HttpResponse:
    return _monitor_button(request, pk, "delete")

"""Monitor pages: create, view, edit, and the confirmed run, pause, resume and delete buttons."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from governance.models import ModelVersion
from governance.views.helpers import call_action, perform, pretty_json, visible_or_404
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
from monitoring.views.relations import MONITOR_RELATIONS


@login_required
def monitor_create(request: HttpRequest, pk: int) -> HttpResponse:
    """A new monitor of a model version; GET shows the form with the defaults."""
    version = visible_or_404(
        request, ModelVersion.objects.select_related("model", "training_dataset_version__dataset"), pk
    )
    form = MonitorForm(request.POST or None, user=request.user)
    status = 200
    if request.method == "POST" and form.is_valid():
        options = form.options()
        monitor, status = call_action(
            form,
            lambda: do_create_monitor(
                model_version=version, name=options.pop("name"), actor=request.user, **options
            ),
        )
        if monitor is not None:
            messages.success(request, f"Created {monitor}.")
            return redirect(monitor)
    elif request.method == "POST":
        status = 400
    context = {
        "section": "models",
        "title": f"New monitor of {version}",
        "form": form,
        "submit_label": "Create monitor",
        "cancel_url": version.get_absolute_url(),
    }
    return render(request, "generic/form.html", context, status=status)


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
    }
    return render(request, "monitoring/monitor_detail.html", context)


@login_required
def monitor_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a monitor's settings (and its schedule)."""
    monitor = visible_or_404(request, Monitor.objects.select_related(*MONITOR_RELATIONS), pk)
    form = MonitorForm.for_monitor(monitor, request.POST or None, user=request.user)
    status = 200
    if request.method == "POST" and form.is_valid():
        options = form.options()
        changed, status = call_action(
            form, lambda: do_update_monitor(monitor=monitor, actor=request.user, **options)
        )
        if changed is not None:
            messages.success(request, f"Saved {changed}.")
            return redirect(changed)
    elif request.method == "POST":
        status = 400
    context = {
        "section": "models",
        "title": f"Edit {monitor}",
        "form": form,
        "submit_label": "Save monitor",
        "cancel_url": monitor.get_absolute_url(),
    }
    return render(request, "generic/form.html", context, status=status)


MONITOR_VERBS = {
    "run": ("Run", "Queued a check of {monitor}."),
    "pause": ("Pause", "Paused {monitor}: its schedule stops."),
    "resume": ("Resume", "Resumed {monitor}."),
    "delete": ("Delete", "Deleted {monitor}."),
}


def _monitor_action(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    monitor = visible_or_404(request, Monitor.objects.select_related(*MONITOR_RELATIONS), pk)
    label, success = MONITOR_VERBS[verb]
    if request.method != "POST":
        context = {
            "section": "models",
            "object": monitor,
            "question": f"{label} {monitor}?",
            "explanation": "Its checks and alerts stay." if verb == "delete" else "",
            "confirm_label": label,
            "cancel_url": monitor.get_absolute_url(),
        }
        return render(request, "generic/confirm.html", context)
    results = {}

    def act():
        if verb == "run":
            results["check"] = do_run_monitor(monitor=monitor, actor=request.user)
        elif verb == "pause":
            do_pause_monitor(monitor=monitor, actor=request.user)
        elif verb == "resume":
            do_resume_monitor(monitor=monitor, actor=request.user)
        else:
            do_delete_monitor(monitor=monitor, actor=request.user)

    status = perform(request, act, success.format(monitor=monitor))
    if status != 200:
        return redirect(monitor)
    if verb == "run":
        return redirect(results["check"])
    if verb == "delete":
        return redirect(monitor.model_version)
    return redirect(monitor)


@login_required
def monitor_run(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST queues a check of the monitor's window now."""
    return _monitor_action(request, pk, "run")


@login_required
def monitor_pause(request: HttpRequest, pk: int) -> HttpResponse:
    return _monitor_action(request, pk, "pause")


@login_required
def monitor_resume(request: HttpRequest, pk: int) -> HttpResponse:
    return _monitor_action(request, pk, "resume")


@login_required
def monitor_delete(request: HttpRequest, pk: int) -> HttpResponse:
    return _monitor_action(request, pk, "delete")

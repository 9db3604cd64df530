"""Monitoring pages: the dashboard, a model version's page, drift checks and alerts.

UI views sit above every app (DESIGN.md, layers), so the two pages that answer cross-app
questions live here: the dashboard (open alerts first: the model owner's question) and the
model version page (its metrics, lineage, drift checks, alerts and jobs). They read runners'
jobs and embed its inference form, which posts to a runners URL; no business logic crosses.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.clickjacking import xframe_options_sameorigin

from governance import artifacts
from governance.forms import style_filters
from governance.models import (
    AuditEvent,
    Dataset,
    Membership,
    ModelVersion,
    PlatformRoleGrant,
    RegisteredModel,
)
from governance.permissions import CHANGE, can, is_platform_admin, platform_roles
from governance.views import (
    call_action,
    lineage_of,
    metric_rows,
    paginate,
    perform,
    pretty_json,
    visible_or_404,
)
from monitoring import actions
from monitoring.filtersets import AlertFilterSet, DriftCheckFilterSet
from monitoring.forms import DriftCheckForm
from monitoring.models import Alert, AlertState, CheckState, DriftCheck
from runners.forms import InferenceJobForm
from runners.models import Job, JobState

UNRESOLVED = [AlertState.OPEN, AlertState.ACKNOWLEDGED]
ALERT_RELATIONS = (
    "model_version__model",
    "drift_check__current_dataset_version__dataset",
    "owner",
    "acknowledged_by",
    "resolved_by",
)
# What includes/jobs_table.html prints for each job.
JOB_TABLE_RELATIONS = ("created_by", "registered_model", "model_version__model", "dataset_version__dataset")
REPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; frame-ancestors 'self'"
)
CHECK_RELATIONS = (
    "model_version__model",
    "reference_dataset_version__dataset",
    "current_dataset_version__dataset",
    "created_by",
)


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Open alerts on the user's models first, then the teams' other alerts, jobs and versions."""
    user = request.user
    unresolved = (
        Alert.objects.restrict(user)
        .filter(state__in=UNRESOLVED)
        .select_related("model_version__model", "owner")
    )
    context = {
        "section": "dashboard",
        "my_alerts": unresolved.filter(owner=user),
        "team_alerts": unresolved.exclude(owner=user)[:10],
        "recent_jobs": Job.objects.restrict(user).select_related(*JOB_TABLE_RELATIONS)[:8],
        "recent_versions": ModelVersion.objects.restrict(user)
        .select_related("model")
        .order_by("-created_at", "-id")[:8],
        "counts": [
            ("Datasets", Dataset.objects.restrict(user).count(), "dataset_list"),
            ("Models", RegisteredModel.objects.restrict(user).count(), "model_list"),
            (
                "Active jobs",
                Job.objects.restrict(user).filter(state__in=[JobState.QUEUED, JobState.RUNNING]).count(),
                "job_list",
            ),
            ("Unresolved alerts", unresolved.count(), "alert_list"),
        ],
    }
    # The admin's question is who holds which role; the compliance officer's, what changed lately.
    if is_platform_admin(user):
        context["memberships"] = Membership.objects.restrict(user).select_related("user", "team")
        context["platform_grants"] = PlatformRoleGrant.objects.select_related("user").order_by("role")
    if "compliance_officer" in platform_roles(user):
        context["recent_events"] = AuditEvent.objects.restrict(user)[:10]
    return render(request, "monitoring/dashboard.html", context)


# Model versions -------------------------------------------------------------------------------


@login_required
def model_version_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A trained version: metrics, signature, provenance, lineage, drift checks, alerts, jobs."""
    user = request.user
    version = visible_or_404(
        request,
        ModelVersion.objects.select_related(
            "model__team", "model__owner", "training_dataset_version__dataset", "created_by"
        ),
        pk,
    )
    source_job = None
    if version.source_job_id is not None:
        source_job = Job.objects.restrict(user).filter(pk=version.source_job_id).first()
    context = {
        "section": "models",
        "version": version,
        "metrics": metric_rows(version.metrics),
        "signature": version.signature,
        "training_spec_json": pretty_json(version.training_spec),
        "source_job": source_job,
        "lineage": lineage_of(user, version),
        "drift_checks": DriftCheck.objects.restrict(user)
        .filter(model_version=version)
        .select_related("model_version__model", "current_dataset_version__dataset")[:20],
        "alerts": Alert.objects.restrict(user).filter(model_version=version).select_related("owner")[:20],
        "inference_jobs": Job.objects.restrict(user)
        .filter(model_version=version)
        .select_related(*JOB_TABLE_RELATIONS)[:10],
        "may_change": can(user, CHANGE, version.model.team_id),
        "drift_form": DriftCheckForm(user=user),
        "infer_form": InferenceJobForm(user=user),
    }
    return render(request, "monitoring/model_version_detail.html", context)


@login_required
def drift_check_request(request: HttpRequest, pk: int) -> HttpResponse:
    """Compare a dataset version against a model version's training data; GET shows the form."""
    version = visible_or_404(
        request, ModelVersion.objects.select_related("model", "training_dataset_version__dataset"), pk
    )
    form = DriftCheckForm(request.POST or None, user=request.user)
    status = 200
    if request.method == "POST" and form.is_valid():
        check, status = call_action(
            form,
            lambda: actions.do_request_drift_check(
                model_version=version,
                current_dataset_version=form.cleaned_data["current_dataset_version"],
                columns=form.column_list(),
                drift_share=form.cleaned_data["drift_share"],
                actor=request.user,
            ),
        )
        if check is not None:
            messages.success(request, f"Requested {check}; it runs when a worker picks it up.")
            return redirect(check)
    elif request.method == "POST":
        status = 400
    context = {
        "section": "models",
        "title": f"Check {version} for data drift",
        "form": form,
        "submit_label": "Run drift check",
        "cancel_url": version.get_absolute_url(),
    }
    return render(request, "generic/form.html", context, status=status)


# Drift checks ---------------------------------------------------------------------------------


@login_required
def drift_check_list(request: HttpRequest) -> HttpResponse:
    """Drift checks newest first, filtered by model version, state, verdict and team."""
    queryset = DriftCheck.objects.restrict(request.user).select_related(*CHECK_RELATIONS)
    filterset = DriftCheckFilterSet(request.GET or None, queryset=queryset, request=request)
    style_filters(filterset.form)
    context = {"section": "drift", "filterset": filterset, "page_obj": paginate(request, filterset.qs)}
    return render(request, "monitoring/drift_check_list.html", context)


@login_required
def drift_check_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Per-column scores with drifted columns first, the dataset verdict and the evidently report."""
    check = visible_or_404(request, DriftCheck.objects.select_related(*CHECK_RELATIONS), pk)
    context = {
        "section": "drift",
        "check": check,
        "is_finished": check.state in (CheckState.SUCCEEDED, CheckState.FAILED),
        # The reference side is the training rows: the training spec's row filter applied.
        "reference_where": json.dumps(check.model_version.training_spec.get("where") or {}),
        "results": sorted(check.results, key=lambda r: (not r["is_drifted"], r["column"])),
        "alerts": Alert.objects.restrict(request.user).filter(drift_check=check),
    }
    return render(request, "monitoring/drift_check_detail.html", context)


@login_required
@xframe_options_sameorigin
def drift_check_report(request: HttpRequest, pk: int) -> FileResponse:
    """The stored evidently HTML, framed by the drift check page.

    The HTML embeds values from uploaded data; its CSP lets its inline scripts render but
    reach no network at all. (A sandboxed, opaque-origin frame would be stricter, but
    evidently's scripts read localStorage unguarded and render nothing there.)
    """
    check = visible_or_404(request, DriftCheck.objects.all(), pk)
    path = artifacts.resolve(check.report) if check.report else None
    if path is None or not path.is_file():
        raise Http404("this drift check has no report")
    response = FileResponse(
        path.open("rb"), content_type="text/html; charset=utf-8", filename=f"drift-check-{check.pk}.html"
    )
    response["Content-Security-Policy"] = REPORT_CSP
    return response


# Alerts ---------------------------------------------------------------------------------------


@login_required
def alert_list(request: HttpRequest) -> HttpResponse:
    """Alerts, opening on the open ones (``?state=`` shows every state)."""
    data = request.GET.copy()
    data.setdefault("state", AlertState.OPEN)
    queryset = Alert.objects.restrict(request.user).select_related(*ALERT_RELATIONS)
    filterset = AlertFilterSet(data, queryset=queryset, request=request)
    style_filters(filterset.form)
    context = {"section": "alerts", "filterset": filterset, "page_obj": paginate(request, filterset.qs)}
    return render(request, "monitoring/alert_list.html", context)


def _alert_page(request: HttpRequest, alert: Alert, status: int = 200) -> HttpResponse:
    context = {
        "section": "alerts",
        "alert": alert,
        "check": alert.drift_check,
        "drifted": alert.drift_check.drifted_columns,
        # Mirrors do_acknowledge_alert's rule to decide which buttons to show; the action decides.
        "may_handle": alert.owner_id == request.user.pk or can(request.user, CHANGE, alert.team_id),
        "summary_lines": alert.summary.splitlines(),
    }
    return render(request, "monitoring/alert_detail.html", context, status=status)


@login_required
def alert_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """An alert's evidence (the drifted columns, the check, its report) and what to do about it."""
    return _alert_page(request, visible_or_404(request, Alert.objects.select_related(*ALERT_RELATIONS), pk))


def _alert_transition(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    alert = visible_or_404(request, Alert.objects.select_related(*ALERT_RELATIONS), pk)
    action = {"acknowledge": actions.do_acknowledge_alert, "resolve": actions.do_resolve_alert}[verb]
    if request.method != "POST":
        context = {
            "section": "alerts",
            "object": alert,
            "question": f"{verb.capitalize()} alert #{alert.pk}?",
            "explanation": alert.title,
            "confirm_label": verb.capitalize(),
            "cancel_url": alert.get_absolute_url(),
        }
        return render(request, "generic/confirm.html", context)
    past = "acknowledged" if verb == "acknowledge" else "resolved"
    status = perform(request, lambda: action(alert=alert, actor=request.user), f"Alert #{alert.pk} {past}.")
    if status == 200:
        return redirect(alert)
    alert.refresh_from_db()
    return _alert_page(request, alert, status)


@login_required
def alert_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST moves an open alert to acknowledged (stops escalation)."""
    return _alert_transition(request, pk, "acknowledge")


@login_required
def alert_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST resolves an open or acknowledged alert."""
    return _alert_transition(request, pk, "resolve")

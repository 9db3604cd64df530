"""Monitoring pages: the dashboard, a model version's page, monitors, drift checks, alerts,
channels and escalation policies, and ``/metrics``.

UI views sit above every app (DESIGN.md, layers), so the two pages that answer cross-app
questions live here: the dashboard (open alerts first: the model owner's question) and the
model version page (its alerts, monitors, metrics, lineage, drift checks and jobs). They read
runners' jobs and embed its inference form, which posts to a runners URL; no business logic
crosses.
"""

from __future__ import annotations

import hmac
import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from governance import artifacts
from governance.forms import style_filters
from governance.models import (
    AuditEvent,
    Dataset,
    Membership,
    ModelVersion,
    PlatformRoleGrant,
    RegisteredModel,
    Team,
)
from governance.permissions import (
    ALL_TEAMS,
    CHANGE,
    MANAGE,
    VIEW,
    can,
    is_platform_admin,
    platform_roles,
    team_scope,
)
from governance.views.helpers import (
    call_action,
    metric_rows,
    paginate,
    perform,
    pretty_json,
    visible_or_404,
)
from governance.views.promotions import promotion_panel
from lineage.queries import lineage_of
from monitoring import actions, metrics
from monitoring.filtersets import (
    AlertFilterSet,
    ChannelFilterSet,
    DriftCheckFilterSet,
    EscalationPolicyFilterSet,
)
from monitoring.forms import (
    ChannelEditForm,
    ChannelForm,
    DriftCheckForm,
    EscalationPolicyForm,
    MonitorForm,
    SnoozeForm,
    level_formset,
    level_specs,
)
from monitoring.models import (
    Alert,
    AlertState,
    Channel,
    DriftCheck,
    EscalationPolicy,
    Monitor,
    Notification,
)
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
    """A trained version: open alerts, monitors, metrics, signature, lineage, drift checks, jobs."""
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
        "monitors": Monitor.objects.restrict(user)
        .filter(model_version=version)
        .select_related("escalation_policy")
        .annotate(open_alerts=Count("alerts", filter=Q(alerts__state__in=UNRESOLVED))),
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
        **promotion_panel(user, version),
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


# Monitors -------------------------------------------------------------------------------------

MONITOR_RELATIONS = (
    "model_version__model",
    "reference_dataset_version__dataset",
    "current_dataset",
    "escalation_policy",
    "created_by",
)


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
            lambda: actions.do_create_monitor(
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
        "may_change": can(user, CHANGE, monitor.team_id),
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
            form, lambda: actions.do_update_monitor(monitor=monitor, actor=request.user, **options)
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
            results["check"] = actions.do_run_monitor(monitor=monitor, actor=request.user)
        elif verb == "pause":
            actions.do_pause_monitor(monitor=monitor, actor=request.user)
        elif verb == "resume":
            actions.do_resume_monitor(monitor=monitor, actor=request.user)
        else:
            actions.do_delete_monitor(monitor=monitor, actor=request.user)

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


# Drift checks ---------------------------------------------------------------------------------


@login_required
def drift_check_list(request: HttpRequest) -> HttpResponse:
    """Drift checks newest first, filtered by model version, state, verdict and team."""
    queryset = DriftCheck.objects.restrict(request.user).select_related(*CHECK_RELATIONS)
    filterset = DriftCheckFilterSet(request.GET or None, queryset=queryset, request=request)
    style_filters(filterset.form)
    context = {"section": "drift", "filterset": filterset, "page_obj": paginate(request, filterset.qs)}
    return render(request, "monitoring/drift_check_list.html", context)


def _side_by_side(check: DriftCheck) -> list[dict]:
    """Each column's engine verdict with evidently's beside it; drifted (by the engine) first."""
    evidently = {row["column"]: row for row in check.evidently_results}
    rows = [dict(result, evidently=evidently.get(result["column"])) for result in check.results]
    return sorted(rows, key=lambda r: (not r.get("is_drifted"), r["column"]))


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
        "tested_count": sum(1 for r in check.results if r.get("status", "ok") in ("ok", "drift")),
        "performance_rows": sorted(performance.get("metrics", {}).items()),
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


def _alert_page(request: HttpRequest, alert: Alert, status: int = 200, snooze_form=None) -> HttpResponse:
    check = alert.drift_check
    context = {
        "section": "alerts",
        "alert": alert,
        "check": check,
        "evidence": alert.evidence or {},
        "drifted": check.drifted_columns,
        # Mirrors do_acknowledge_alert's rule to decide which buttons to show; the action decides.
        "may_handle": alert.owner_id == request.user.pk or can(request.user, CHANGE, alert.team_id),
        "is_snoozed": alert.is_snoozed(),
        "summary_lines": alert.summary.splitlines(),
        "events": alert.events.select_related("actor", "drift_check"),
        "notifications": Notification.objects.restrict(request.user)
        .filter(alert=alert)
        .select_related("channel")
        .order_by("round", "level", "repeat", "id"),
        "snooze_form": snooze_form or SnoozeForm(),
    }
    return render(request, "monitoring/alert_detail.html", context, status=status)


@login_required
def alert_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """An alert's evidence, what to do about it, its escalation history and its deliveries."""
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


@login_required
def alert_snooze(request: HttpRequest, pk: int) -> HttpResponse:
    """GET shows the snooze choices; POST holds the alert's escalation for that long."""
    alert = visible_or_404(request, Alert.objects.select_related(*ALERT_RELATIONS), pk)
    form = SnoozeForm(request.POST or None)
    if request.method != "POST":
        context = {
            "section": "alerts",
            "title": f"Snooze alert #{alert.pk}",
            "form": form,
            "submit_label": "Snooze",
            "cancel_url": alert.get_absolute_url(),
        }
        return render(request, "generic/form.html", context)
    if not form.is_valid():
        return _alert_page(request, alert, 400, snooze_form=form)
    until = form.until(timezone.now())
    status = perform(
        request,
        lambda: actions.do_snooze_alert(alert=alert, until=until, actor=request.user),
        f"Alert #{alert.pk} snoozed until {timezone.localtime(until):%Y-%m-%d %H:%M %Z}.",
    )
    if status == 200:
        return redirect(alert)
    alert.refresh_from_db()
    return _alert_page(request, alert, status)


# Channels -------------------------------------------------------------------------------------


@login_required
def channel_list(request: HttpRequest) -> HttpResponse:
    """The teams' delivery channels, disabled ones first (they need someone); POST creates one."""
    user = request.user
    form = ChannelForm(request.POST or None, user=user)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        channel, status = call_action(
            form,
            lambda: actions.do_create_channel(
                team=data["team"],
                name=data["name"],
                kind=data["kind"],
                owner=data["owner"],
                email_address=data["email_address"],
                url=data["url"],
                actor=user,
            ),
        )
        if channel is not None:
            if channel.secret:  # shown once, on the channel's page
                request.session[f"channel-secret-{channel.pk}"] = channel.secret
            messages.success(request, f"Created channel {channel.name}.")
            return redirect(channel)
    elif request.method == "POST":
        status = 400
    queryset = (
        Channel.objects.restrict(user)
        .select_related("team", "owner")
        .order_by("is_active", "team__name", "name")
    )
    filterset = ChannelFilterSet(request.GET or None, queryset=queryset, request=request)
    style_filters(filterset.form)
    context = {
        "section": "channels",
        "filterset": filterset,
        "page_obj": paginate(request, filterset.qs),
        "form": form,
        "may_create": Team.objects.restrict(user, MANAGE).exists(),
    }
    return render(request, "monitoring/channel_list.html", context, status=status)


@login_required
def channel_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A channel: its health (last error, disabled reason), recent deliveries; POST edits it."""
    user = request.user
    channel = visible_or_404(request, Channel.objects.select_related("team", "owner"), pk)
    may_manage = can(user, MANAGE, channel.team_id)
    form = ChannelEditForm(
        request.POST or None,
        initial={
            "name": channel.name,
            "owner": channel.owner_id,
            "email_address": channel.email_address,
            "url": channel.url,
        },
        user=user,
    )
    status = 200
    if request.method == "POST" and form.is_valid():
        changed, status = call_action(
            form, lambda: actions.do_update_channel(channel=channel, actor=user, **form.cleaned_data)
        )
        if changed is not None:
            messages.success(request, f"Saved channel {changed.name}.")
            return redirect(changed)
    elif request.method == "POST":
        status = 400
    context = {
        "section": "channels",
        "channel": channel,
        "form": form,
        "may_manage": may_manage,
        "notifications": Notification.objects.restrict(user)
        .filter(channel=channel)
        .select_related("alert")[:20],
        "levels": channel.levels.select_related("policy"),
        "secret": request.session.pop(f"channel-secret-{channel.pk}", None),
    }
    return render(request, "monitoring/channel_detail.html", context, status=status)


def _channel_action(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    channel = visible_or_404(request, Channel.objects.all(), pk)
    if request.method != "POST":
        context = {
            "section": "channels",
            "object": channel,
            "question": f"{verb.capitalize()} channel {channel.name}?",
            "explanation": "The old secret stops verifying at once." if verb == "rotate" else "",
            "confirm_label": verb.capitalize(),
            "cancel_url": channel.get_absolute_url(),
        }
        return render(request, "generic/confirm.html", context)
    if verb == "rotate":

        def act():
            rotated = actions.do_rotate_channel_secret(channel=channel, actor=request.user)
            request.session[f"channel-secret-{channel.pk}"] = rotated.secret

        perform(request, act, "New secret made; it is shown once, below.")
    else:
        perform(
            request,
            lambda: actions.do_update_channel(
                channel=channel, actor=request.user, is_active=verb == "enable"
            ),
            f"Channel {channel.name} {verb}d.",
        )
    return redirect(channel)


@login_required
def channel_enable(request: HttpRequest, pk: int) -> HttpResponse:
    return _channel_action(request, pk, "enable")


@login_required
def channel_disable(request: HttpRequest, pk: int) -> HttpResponse:
    return _channel_action(request, pk, "disable")


@login_required
def channel_rotate_secret(request: HttpRequest, pk: int) -> HttpResponse:
    return _channel_action(request, pk, "rotate")


# Escalation policies --------------------------------------------------------------------------


@login_required
def escalation_policy_list(request: HttpRequest) -> HttpResponse:
    """The teams' escalation policies with their levels, and which monitors use them."""
    user = request.user
    queryset = (
        EscalationPolicy.objects.restrict(user)
        .select_related("team")
        .prefetch_related("levels__users", "levels__channels", "levels__owners_of", "monitors")
    )
    filterset = EscalationPolicyFilterSet(request.GET or None, queryset=queryset, request=request)
    style_filters(filterset.form)
    context = {
        "section": "escalation",
        "filterset": filterset,
        "page_obj": paginate(request, filterset.qs),
        "may_create": Team.objects.restrict(user, MANAGE).exists(),
    }
    return render(request, "monitoring/escalation_policy_list.html", context)


def _policy_form_page(request: HttpRequest, policy: EscalationPolicy | None) -> HttpResponse:
    user = request.user
    initial = (
        {"team": policy.team_id, "name": policy.name, "description": policy.description} if policy else None
    )
    form = EscalationPolicyForm(request.POST or None, initial=initial, user=user)
    if policy is not None:
        form.fields["team"].disabled = True
    levels = level_formset(request.POST or None, user=user, policy=policy)
    status = 200
    if request.method == "POST" and form.is_valid() and levels.is_valid():
        data, specs = form.cleaned_data, level_specs(levels)
        if policy is None:
            saved, status = call_action(
                form,
                lambda: actions.do_create_escalation_policy(
                    team=data["team"],
                    name=data["name"],
                    description=data["description"],
                    levels=specs,
                    actor=user,
                ),
            )
        else:
            saved, status = call_action(
                form,
                lambda: actions.do_update_escalation_policy(
                    policy=policy,
                    name=data["name"],
                    description=data["description"],
                    levels=specs,
                    actor=user,
                ),
            )
        if saved is not None:
            messages.success(request, f"Saved escalation policy {saved.name}.")
            return redirect(saved)
    elif request.method == "POST":
        status = 400
    context = {
        "section": "escalation",
        "title": f"Edit {policy}" if policy else "New escalation policy",
        "form": form,
        "levels": levels,
        "cancel_url": policy.get_absolute_url() if policy else reverse("escalation_policy_list"),
    }
    return render(request, "monitoring/escalation_policy_form.html", context, status=status)


@login_required
def escalation_policy_create(request: HttpRequest) -> HttpResponse:
    return _policy_form_page(request, None)


@login_required
def escalation_policy_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _policy_form_page(
        request, visible_or_404(request, EscalationPolicy.objects.select_related("team"), pk)
    )


@login_required
def escalation_policy_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A policy's levels in order, as the timeline an unacknowledged alert follows."""
    user = request.user
    policy = visible_or_404(request, EscalationPolicy.objects.select_related("team"), pk)
    levels = list(policy.levels.select_related("owners_of").prefetch_related("users", "channels"))
    elapsed, timeline = 0, []
    for level in levels:
        timeline.append({"level": level, "starts_after": elapsed})
        elapsed += level.delay_minutes * (level.repeat + 1)
    context = {
        "section": "escalation",
        "policy": policy,
        "timeline": timeline,
        "exhausted_after": elapsed,
        "monitors": Monitor.objects.restrict(user)
        .filter(escalation_policy=policy)
        .select_related("model_version__model"),
        "may_manage": can(user, MANAGE, policy.team_id),
    }
    return render(request, "monitoring/escalation_policy_detail.html", context)


# Metrics --------------------------------------------------------------------------------------


def _may_scrape(request: HttpRequest) -> bool:
    """A Prometheus scraper with the configured bearer token, or a person who may view every team.

    The numbers name models and columns of every team, so the endpoint is not public: a team
    member would otherwise learn of other teams' models (STYLE: never reveal another team's objects).
    """
    token = settings.STEWARD_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
        return True
    return request.user.is_authenticated and team_scope(request.user, VIEW) is ALL_TEAMS


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition of drift scores, checks, open alerts, notifications and job durations."""
    if not _may_scrape(request):
        response = HttpResponse("a bearer token or a platform-wide role is needed\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="steward-metrics"'
        return response
    return HttpResponse(generate_latest(metrics.registry()), content_type=CONTENT_TYPE_LATEST)

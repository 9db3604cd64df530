"""Alert pages: the list (open first), an alert's evidence and history, acknowledge, snooze, resolve."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from governance.views.helpers import button_view, filtered_list, form_page, perform, visible_or_404
from monitoring.actions.alerts import do_acknowledge_alert, do_resolve_alert, do_snooze_alert
from monitoring.filtersets import AlertFilterSet
from monitoring.forms import SnoozeForm
from monitoring.models import Alert, Notification
from monitoring.permissions import may_handle_alert
from monitoring.views.relations import ALERT_RELATIONS


@login_required
def alert_list(request: HttpRequest) -> HttpResponse:
    """Alerts, opening on the unresolved ones, open or acknowledged (``?state=`` shows every state)."""
    data = request.GET.copy()
    data.setdefault("state", "unresolved")
    queryset = Alert.objects.restrict(request.user).select_related(*ALERT_RELATIONS)
    context = {"section": "alerts", **filtered_list(request, AlertFilterSet, queryset, data)}
    return render(request, "monitoring/alert_list.html", context)


def _alert_page(request: HttpRequest, alert: Alert, status: int = 200, snooze_form=None) -> HttpResponse:
    check = alert.drift_check
    context = {
        "section": "alerts",
        "alert": alert,
        "check": check,
        "evidence": alert.evidence or {},
        # A budget alert (issue 16) has no check: its evidence is the team's spend.
        "drifted": check.drifted_columns if check is not None else [],
        # Which buttons to show; the action re-checks the same predicate in its transaction.
        "may_handle": may_handle_alert(request.user, alert),
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


def _alert_button(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    alert = visible_or_404(request, Alert.objects.select_related(*ALERT_RELATIONS), pk)
    action = {"acknowledge": do_acknowledge_alert, "resolve": do_resolve_alert}[verb]
    past = "acknowledged" if verb == "acknowledge" else "resolved"
    return button_view(
        request,
        lambda: action(alert=alert, actor=request.user),
        section="alerts",
        question=f"{verb.capitalize()} alert #{alert.pk}?",
        explanation=alert.title,
        label=verb.capitalize(),
        back=alert.get_absolute_url(),
        success_message=f"Alert #{alert.pk} {past}.",
        refused=lambda status: _refused(request, alert, status),
    )


def _refused(request: HttpRequest, alert: Alert, status: int) -> HttpResponse:
    """The alert's page as it is now, with the refusal's status."""
    alert.refresh_from_db()
    return _alert_page(request, alert, status)


@login_required
def alert_acknowledge(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST moves an open alert to acknowledged (stops escalation)."""
    return _alert_button(request, pk, "acknowledge")


@login_required
def alert_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST resolves an open or acknowledged alert."""
    return _alert_button(request, pk, "resolve")


@login_required
def alert_snooze(request: HttpRequest, pk: int) -> HttpResponse:
    """GET shows the snooze choices; POST holds the alert's escalation for that long."""
    alert = visible_or_404(request, Alert.objects.select_related(*ALERT_RELATIONS), pk)
    form = SnoozeForm(request.POST or None)
    if request.method != "POST":
        context = form_page("alerts", f"Snooze alert #{alert.pk}", "Snooze", alert.get_absolute_url())
        return render(request, "generic/form.html", dict(context, form=form))
    if not form.is_valid():
        return _alert_page(request, alert, 400, snooze_form=form)
    until = form.until(timezone.now())
    status = perform(
        request,
        lambda: do_snooze_alert(alert=alert, until=until, actor=request.user),
        f"Alert #{alert.pk} snoozed until {timezone.localtime(until):%Y-%m-%d %H:%M %Z}.",
    )
    return redirect(alert) if status == 200 else _refused(request, alert, status)

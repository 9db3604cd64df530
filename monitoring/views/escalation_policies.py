"""Escalation policy pages: the list, create and edit (levels in a formset), and a policy's timeline."""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from governance.views.helpers import filtered_list, form_view, visible_or_404
from monitoring.actions.policies import do_create_escalation_policy, do_update_escalation_policy
from monitoring.escalation import last_send_after, level_starts
from monitoring.filtersets import EscalationPolicyFilterSet
from monitoring.forms import EscalationPolicyForm, level_formset, level_specs
from monitoring.models import EscalationLevel, EscalationPolicy, Monitor
from monitoring.permissions import may_create_routing, may_manage_escalation_policy


@login_required
def escalation_policy_list(request: HttpRequest) -> HttpResponse:
    """The teams' escalation policies with their levels, and which monitors use them."""
    user = request.user
    queryset = (
        EscalationPolicy.objects.restrict(user)
        .select_related("team")
        .prefetch_related("levels__users", "levels__channels", "levels__owners_of", "monitors")
    )
    context = {
        "section": "escalation",
        **filtered_list(request, EscalationPolicyFilterSet, queryset),
        "may_create": may_create_routing(user),
    }
    # Each level with the minute it starts, from the same arithmetic as the detail page (the list
    # used to print each level's delay as if it were its start).
    for policy in context["page_obj"]:
        policy.timeline = _timeline(list(policy.levels.all()))
    return render(request, "monitoring/escalation_policy_list.html", context)


def _timeline(levels: list[EscalationLevel]) -> list[dict]:
    """``[{"level", "starts_after"}]``: when each level's first notification goes out, in minutes
    after the alert opens (``monitoring.escalation.level_starts``, what do_escalate_alert sends)."""
    starts = level_starts([level.plan() for level in levels])
    return [
        {"level": level, "starts_after": _minutes(start)} for level, start in zip(levels, starts, strict=True)
    ]


def _policy_form_page(request: HttpRequest, policy: EscalationPolicy | None) -> HttpResponse:
    user = request.user
    initial = (
        {"team": policy.team_id, "name": policy.name, "description": policy.description} if policy else None
    )
    form = EscalationPolicyForm(request.POST or None, initial=initial, user=user)
    if policy is not None:
        form.fields["team"].disabled = True
    levels = level_formset(request.POST or None, user=user, policy=policy)

    def save(data: dict[str, Any]) -> EscalationPolicy:
        fields = {"name": data["name"], "description": data["description"], "levels": level_specs(levels)}
        if policy is None:
            return do_create_escalation_policy(team=data["team"], actor=user, **fields)
        return do_update_escalation_policy(policy=policy, actor=user, **fields)

    return form_view(
        request,
        form,
        save,
        success_message=lambda saved: f"Saved escalation policy {saved.name}.",
        template="monitoring/escalation_policy_form.html",
        context=lambda: {
            "section": "escalation",
            "title": f"Edit {policy}" if policy else "New escalation policy",
            "levels": levels,
            "cancel_url": policy.get_absolute_url() if policy else reverse("escalation_policy_list"),
        },
        also=[levels],
    )


@login_required
def escalation_policy_create(request: HttpRequest) -> HttpResponse:
    return _policy_form_page(request, None)


@login_required
def escalation_policy_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _policy_form_page(
        request, visible_or_404(request, EscalationPolicy.objects.select_related("team"), pk)
    )


def _minutes(delta: datetime.timedelta) -> int:
    return int(delta.total_seconds() // 60)


@login_required
def escalation_policy_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A policy's levels in order, as the timeline an unacknowledged alert follows."""
    user = request.user
    policy = visible_or_404(request, EscalationPolicy.objects.select_related("team"), pk)
    levels = list(policy.levels.select_related("owners_of").prefetch_related("users", "channels"))
    # The times come from the step arithmetic do_escalate_alert sends with (issue 8: the page
    # used to add one more delay after the last notification).
    last = last_send_after([level.plan() for level in levels])
    timeline = _timeline(levels)
    context = {
        "section": "escalation",
        "policy": policy,
        "timeline": timeline,
        "last_send_after": _minutes(last) if last is not None else None,
        "monitors": Monitor.objects.restrict(user)
        .filter(escalation_policy=policy)
        .select_related("model_version__model"),
        "may_manage": may_manage_escalation_policy(user, policy),
    }
    return render(request, "monitoring/escalation_policy_detail.html", context)

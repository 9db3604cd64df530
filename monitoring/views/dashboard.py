"""The dashboard: open alerts on the user's models first, then the teams' other alerts, jobs and
versions; the admin's and the compliance officer's panels."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from governance.audit.trail import trail_status
from governance.models import (
    AuditEvent,
    Dataset,
    Membership,
    ModelVersion,
    PlatformRoleGrant,
    RegisteredModel,
    TeamRole,
)
from governance.permissions import is_platform_admin, platform_roles
from governance.queries import promotions_awaiting_decision
from monitoring.models import UNRESOLVED, Alert
from monitoring.views.relations import JOB_TABLE_RELATIONS
from runners.models import Job, JobState


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Open alerts on the user's models first, then the teams' other alerts, jobs and versions."""
    user = request.user
    unresolved = (
        Alert.objects.restrict(user)
        .filter(state__in=UNRESOLVED)
        .select_related("model_version__model", "owner")
    )
    my_alerts = unresolved.filter(owner=user)
    context = {
        "section": "dashboard",
        # An approver's dashboard item: the requests waiting for their decision (issue 14).
        "awaiting_promotions": promotions_awaiting_decision(user).select_related(
            "model_version__model", "requested_by", "decided_by"
        )[:10],
        "my_alerts": my_alerts,
        # Only for people alerts can escalate to: a model owner (or whoever holds one anyway). A
        # compliance officer or an admin without a team has no models, and the panel meant nothing.
        "show_my_alerts": Membership.objects.filter(user=user, role=TeamRole.MODEL_OWNER).exists()
        or my_alerts.exists(),
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
        # What they act on (issue 14): whether the trail is signed and keeping up, and what changed.
        context["trail"] = trail_status()
        context["recent_events"] = AuditEvent.objects.restrict(user).select_related("team")[:10]
    return render(request, "monitoring/dashboard.html", context)

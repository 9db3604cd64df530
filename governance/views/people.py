"""Who has which role: platform roles, team memberships, users and teams (the admin pages).

Like every page they parse input, call an action (which re-checks the permission inside its
transaction and writes the audit event) and render; lists come through ``restrict``. Everyone
may look at the people they may see; only platform admins and, for their team's roles, model
owners get the forms, and the actions refuse everyone else.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode

from governance.actions.passwords import do_send_password_reset, do_set_password
from governance.actions.pii import do_set_pii_policy
from governance.actions.teams import (
    do_create_team,
    do_grant_platform_role,
    do_revoke_membership,
    do_revoke_platform_role,
    do_set_membership,
)
from governance.actions.users import do_create_user, do_deactivate_user, do_reactivate_user
from governance.forms import (
    MembershipGrantForm,
    PiiPolicyForm,
    PlatformRoleGrantForm,
    SetPasswordForm,
    TeamCreateForm,
    UserCreateForm,
)
from governance.models import Membership, PiiPolicy, PlatformRoleGrant, Team
from governance.permissions import MANAGE, can, grant_refusal, is_platform_admin, restrict
from governance.views.helpers import button_view, form_view, paginate, visible_or_404

# Who has which role ---------------------------------------------------------------------------

# The page holds two forms with a "username" field: distinct element ids, same field names.
MEMBERSHIP_IDS, PLATFORM_IDS = "id_membership_%s", "id_platform_%s"


def _people_page(
    request: HttpRequest,
    membership_form: forms.Form | None = None,
    platform_form: forms.Form | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request.user
    context = {
        "section": "people",
        "grants": restrict(PlatformRoleGrant.objects.select_related("user"), user).order_by(
            "role", "user__username"
        ),
        "memberships": Membership.objects.restrict(user).select_related("user", "team"),
        "manageable_team_ids": set(Team.objects.restrict(user, MANAGE).values_list("pk", flat=True)),
        "is_admin": is_platform_admin(user),
        "membership_form": membership_form or MembershipGrantForm(user=user, auto_id=MEMBERSHIP_IDS),
        "platform_form": platform_form or PlatformRoleGrantForm(auto_id=PLATFORM_IDS),
    }
    return render(request, "governance/people.html", context, status=status)


@login_required
def people(request: HttpRequest) -> HttpResponse:
    """Platform roles, then every visible team's members; POST grants a team or platform role.

    The submit button's ``grant`` value (``membership`` or ``platform_role``) names the form.
    """
    if request.method != "POST":
        return _people_page(request)
    user = request.user
    kind = request.POST.get("grant")
    refusal = grant_refusal(user, kind)
    if refusal:
        # Before the form resolves the username, so the answer is the same whether it exists.
        messages.error(request, refusal)
        return _people_page(request, status=403)
    if kind == "membership":
        return form_view(
            request,
            MembershipGrantForm(request.POST, user=user, auto_id=MEMBERSHIP_IDS),
            lambda data: do_set_membership(
                user=data["username"], team=data["team"], role=data["role"], actor=user
            ),
            success=lambda done: "people",
            success_message=lambda done: (
                f"{done.user.get_username()} is now {done.get_role_display()} in {done.team}."
            ),
            render_page=lambda form, status: _people_page(request, membership_form=form, status=status),
        )
    if kind == "platform_role":
        return form_view(
            request,
            PlatformRoleGrantForm(request.POST, auto_id=PLATFORM_IDS),
            lambda data: do_grant_platform_role(user=data["username"], role=data["role"], actor=user),
            success=lambda done: "people",
            success_message=lambda done: f"{done.user.get_username()} is now {done.get_role_display()}.",
            render_page=lambda form, status: _people_page(request, platform_form=form, status=status),
        )
    return _people_page(request, status=400)


@login_required
def membership_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST removes a team role (admins and the team's model owners)."""
    membership = visible_or_404(request, Membership.objects.select_related("user", "team"), pk)
    return button_view(
        request,
        lambda: do_revoke_membership(membership=membership, actor=request.user),
        section="people",
        question=f"Remove {membership.user.get_username()} from {membership.team}?",
        explanation=f"They are {membership.get_role_display()} there and lose that role's rights at once.",
        label="Remove",
        back=reverse("team_detail", args=[membership.team_id]),
        success_message=f"Removed {membership.user.get_username()} from {membership.team}.",
        refused=lambda status: _team_page(request, membership.team, status=status),
    )


@login_required
def platform_role_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST revokes a platform role (admins; never the last admin's)."""
    grant = visible_or_404(request, PlatformRoleGrant.objects.select_related("user"), pk)
    return button_view(
        request,
        lambda: do_revoke_platform_role(grant=grant, actor=request.user),
        section="people",
        question=f"Revoke {grant.get_role_display()} from {grant.user.get_username()}?",
        label="Revoke",
        back=reverse("people"),
        success_message=f"{grant.user.get_username()} is no longer {grant.get_role_display()}.",
        refused=lambda status: _people_page(request, status=status),
    )


# Users ----------------------------------------------------------------------------------------


@login_required
def user_list(request: HttpRequest) -> HttpResponse:
    """Users the viewer may see with their roles; POST creates a login (platform admins)."""
    return form_view(
        request,
        UserCreateForm(request.POST or None),
        lambda data: do_create_user(
            username=data["username"],
            email=data["email"],
            password=data["password"] or None,
            actor=request.user,
        ),
        success=lambda created: "user_list",
        success_message=lambda created: f"Created user {created.get_username()}.",
        render_page=lambda form, status: _user_list_page(request, form, status),
    )


@login_required
def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One user the viewer may see (404 otherwise): their state, platform roles, the memberships
    the viewer may see, and links to the audit trail of what they did and what was done to them
    (the audit event page links its actor here, issue 14)."""
    target = visible_or_404(request, get_user_model().objects.all(), pk)
    trail = reverse("audit_event_list")
    context = {
        "section": "people",
        "target": target,
        "memberships": Membership.objects.restrict(request.user)
        .filter(user=target)
        .select_related("team")
        .order_by("team__name"),
        "platform_roles": restrict(PlatformRoleGrant.objects.filter(user=target), request.user).order_by(
            "role"
        ),
        "actions_url": f"{trail}?{urlencode({'actor': target.get_username()})}",
        "events_url": f"{trail}?{urlencode({'object_type': 'user', 'object_id': target.pk})}",
    }
    return render(request, "governance/user_detail.html", context)


def _user_list_page(request: HttpRequest, form: forms.Form, status: int) -> HttpResponse:
    user = request.user
    users = restrict(
        get_user_model().objects.order_by("username").select_related("external_identity"), user
    ).prefetch_related(
        Prefetch("memberships", queryset=Membership.objects.restrict(user).select_related("team")),
        Prefetch("platform_roles", queryset=restrict(PlatformRoleGrant.objects.all(), user)),
    )
    context = {
        "section": "people",
        "page_obj": paginate(request, users),
        "form": form,
        "is_admin": is_platform_admin(user),
    }
    return render(request, "governance/user_list.html", context, status=status)


def _user_transition(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    target = visible_or_404(request, get_user_model().objects.all(), pk)
    name = target.get_username()
    explanation = (
        "They can no longer log in, and their API tokens are revoked. History is kept."
        if verb == "deactivate"
        else "They can log in again; their old API tokens stay revoked."
    )
    action = do_deactivate_user if verb == "deactivate" else do_reactivate_user
    return button_view(
        request,
        lambda: action(user=target, actor=request.user),
        section="people",
        question=f"{verb.capitalize()} {name}?",
        explanation=explanation,
        label=verb.capitalize(),
        back=reverse("user_list"),
        success_message=f"{name} {verb}d.",
        refused=lambda status: _user_list_page(request, UserCreateForm(), status),
    )


@login_required
def user_password(request: HttpRequest, pk: int) -> HttpResponse:
    """A platform admin sets a user's password, or (POST ``send_reset``) emails them a link to
    set it themselves."""
    target = visible_or_404(request, get_user_model().objects.all(), pk)
    name = target.get_username()
    sending = request.method == "POST" and "send_reset" in request.POST
    # The link's button posts no fields: a bare form, where a refusal's reason lands.
    form = forms.Form(request.POST) if sending else SetPasswordForm(request.POST or None)
    return form_view(
        request,
        form,
        (lambda data: do_send_password_reset(user=target, actor=request.user))
        if sending
        else (lambda data: do_set_password(user=target, password=data["password"], actor=request.user)),
        success=lambda result: "user_list",
        success_message=lambda result: (
            f"A link to set a password went to {result}." if sending else f"{name}'s password is set."
        ),
        template="governance/user_password.html",
        context=lambda: {"section": "people", "target": target, "title": f"Password of {name}"},
    )


@login_required
def user_deactivate(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST deactivates the user (platform admins; not oneself)."""
    return _user_transition(request, pk, "deactivate")


@login_required
def user_reactivate(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST lets a deactivated user log in again (platform admins)."""
    return _user_transition(request, pk, "reactivate")


# Teams ----------------------------------------------------------------------------------------


@login_required
def team_list(request: HttpRequest) -> HttpResponse:
    """Teams the viewer may see with their member counts; POST creates one (platform admins)."""

    def page() -> dict[str, Any]:
        teams = Team.objects.restrict(request.user).annotate(member_count=Count("memberships"))
        return {
            "section": "people",
            "page_obj": paginate(request, teams.order_by("name")),
            "is_admin": is_platform_admin(request.user),
        }

    return form_view(
        request,
        TeamCreateForm(request.POST or None),
        lambda data: do_create_team(name=data["name"], description=data["description"], actor=request.user),
        success=lambda team: reverse("team_detail", args=[team.pk]),
        success_message=lambda team: f"Created team {team.name}.",
        template="governance/team_list.html",
        context=page,
    )


def _team_page(
    request: HttpRequest, team: Team, form: forms.Form | None = None, status: int = 200
) -> HttpResponse:
    may_manage = Team.objects.restrict(request.user, MANAGE).filter(pk=team.pk).exists()
    context = {
        "section": "people",
        "team": team,
        "memberships": team.memberships.restrict(request.user)
        .select_related("user")
        .order_by("user__username"),
        "may_manage": may_manage,
        "form": form or MembershipGrantForm(user=request.user, initial={"team": team.pk}),
    }
    return render(request, "governance/team_detail.html", context, status=status)


@login_required
def team_pii_policy(request: HttpRequest, pk: int) -> HttpResponse:
    """A team's PII policy (issue 12), a select per kind; its managers set it here."""
    team = visible_or_404(request, Team.objects.all(), pk)
    policy = PiiPolicy.objects.filter(team=team).select_related("updated_by").first()
    rules = dict(policy.rules) if policy is not None else {}
    initial = {"default": rules.get("default", "allow")} | {k: v for k, v in rules.items() if k != "default"}
    return form_view(
        request,
        PiiPolicyForm(request.POST or None, initial=initial),
        lambda data: do_set_pii_policy(team=team, rules=PiiPolicyForm.rules(data), actor=request.user),
        success=lambda saved: reverse("team_pii_policy", args=[saved.team_id]),
        success_message=lambda saved: f"Set the PII policy of {team.name}.",
        template="governance/pii_policy.html",
        context=lambda: {
            "section": "people",
            "team": team,
            "policy": policy,
            "rules": sorted(rules.items()),
            "may_manage": can(request.user, MANAGE, team.pk),
        },
    )


@login_required
def team_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A team's members and roles; POST adds a member or changes a role (admins, model owners)."""
    team = visible_or_404(request, Team.objects.all(), pk)
    if request.method != "POST":
        return _team_page(request, team)
    refusal = grant_refusal(request.user, "membership")
    if refusal:
        messages.error(request, refusal)
        return _team_page(request, team, status=403)
    return form_view(
        request,
        MembershipGrantForm(request.POST, user=request.user),
        lambda data: do_set_membership(
            user=data["username"], team=data["team"], role=data["role"], actor=request.user
        ),
        success=lambda done: reverse("team_detail", args=[done.team_id]),
        success_message=lambda done: (
            f"{done.user.get_username()} is now {done.get_role_display()} in {done.team}."
        ),
        render_page=lambda form, status: _team_page(request, team, form, status=status),
    )

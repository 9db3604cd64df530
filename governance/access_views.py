"""Admin pages of the web UI: who has which role, users, teams, platform roles, API tokens.

Like every page they parse input, call an action (which re-checks the permission inside its
transaction and writes the audit event) and render; lists come through ``restrict``. Everyone
may look at the people they may see; only platform admins and, for their team's roles, model
owners get the forms, and the actions refuse everyone else.
"""

from __future__ import annotations

import datetime

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone

from governance.actions.teams import (
    do_create_team,
    do_grant_platform_role,
    do_revoke_membership,
    do_revoke_platform_role,
    do_set_membership,
)
from governance.actions.tokens import do_create_api_token, do_revoke_api_token
from governance.actions.users import do_create_user, do_deactivate_user, do_reactivate_user
from governance.forms import (
    ApiTokenForm,
    MembershipGrantForm,
    PlatformRoleGrantForm,
    TeamCreateForm,
    UserCreateForm,
)
from governance.models import ApiToken, Membership, PlatformRoleGrant, Team
from governance.permissions import MANAGE, VIEW, is_platform_admin, restrict
from governance.views import call_action, paginate, perform, visible_or_404


def _visible(request: HttpRequest, queryset, pk: int):
    """Row ``pk`` if the user may view it (``permissions.restrict``), else Http404."""
    return get_object_or_404(restrict(queryset, request.user, VIEW), pk=pk)


def _confirm(request: HttpRequest, section: str, question: str, explanation: str, label: str, back: str):
    context = {
        "section": section,
        "question": question,
        "explanation": explanation,
        "confirm_label": label,
        "cancel_url": back,
    }
    return render(request, "generic/confirm.html", context)


# Who has which role ---------------------------------------------------------------------------

# The page holds two forms with a "username" field: distinct element ids, same field names.
MEMBERSHIP_IDS, PLATFORM_IDS = "id_membership_%s", "id_platform_%s"


def _people_page(request: HttpRequest, membership_form=None, platform_form=None, status: int = 200):
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


def _grant_refusal(user, kind: str | None) -> str:
    """Why ``user`` may not submit a ``kind`` grant at all ("" when they may try).

    Which team or user they may grant to is the action's to decide; this only spares the
    username lookup for people who may grant nothing of the kind.
    """
    if kind == "platform_role" and not is_platform_admin(user):
        return "only a platform admin may do this"
    manages_a_team = is_platform_admin(user) or Team.objects.restrict(user, MANAGE).exists()
    if kind == "membership" and not manages_a_team:
        return "you may not manage the members of any team"
    return ""


@login_required
def people(request: HttpRequest) -> HttpResponse:
    """Platform roles, then every visible team's members; POST grants a team or platform role.

    The submit button's ``grant`` value (``membership`` or ``platform_role``) names the form.
    """
    if request.method != "POST":
        return _people_page(request)
    user = request.user
    kind = request.POST.get("grant")
    refusal = _grant_refusal(user, kind)
    if refusal:
        # Before the form resolves the username, so the answer is the same whether it exists.
        messages.error(request, refusal)
        return _people_page(request, status=403)
    if kind == "membership":
        form = MembershipGrantForm(request.POST, user=user, auto_id=MEMBERSHIP_IDS)
        forms = {"membership_form": form}
    elif kind == "platform_role":
        form = PlatformRoleGrantForm(request.POST, auto_id=PLATFORM_IDS)
        forms = {"platform_form": form}
    else:
        return _people_page(request, status=400)
    if not form.is_valid():
        return _people_page(request, **forms, status=400)
    data = form.cleaned_data
    if kind == "membership":
        done, status = call_action(
            form,
            lambda: do_set_membership(
                user=data["username"], team=data["team"], role=data["role"], actor=user
            ),
        )
    else:
        done, status = call_action(
            form, lambda: do_grant_platform_role(user=data["username"], role=data["role"], actor=user)
        )
    if done is None:
        return _people_page(request, **forms, status=status)
    where = f" in {done.team}" if kind == "membership" else ""
    messages.success(request, f"{data['username'].get_username()} is now {done.get_role_display()}{where}.")
    return redirect("people")


@login_required
def membership_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST removes a team role (admins and the team's model owners)."""
    membership = visible_or_404(request, Membership.objects.select_related("user", "team"), pk)
    back = reverse("team_detail", args=[membership.team_id])
    if request.method != "POST":
        return _confirm(
            request,
            "people",
            f"Remove {membership.user.get_username()} from {membership.team}?",
            f"They are {membership.get_role_display()} there and lose that role's rights at once.",
            "Remove",
            back,
        )
    status = perform(
        request,
        lambda: do_revoke_membership(membership=membership, actor=request.user),
        f"Removed {membership.user.get_username()} from {membership.team}.",
    )
    return redirect(back) if status == 200 else _team_page(request, membership.team, status=status)


@login_required
def platform_role_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST revokes a platform role (admins; never the last admin's)."""
    grant = _visible(request, PlatformRoleGrant.objects.select_related("user"), pk)
    if request.method != "POST":
        return _confirm(
            request,
            "people",
            f"Revoke {grant.get_role_display()} from {grant.user.get_username()}?",
            "",
            "Revoke",
            reverse("people"),
        )
    status = perform(
        request,
        lambda: do_revoke_platform_role(grant=grant, actor=request.user),
        f"{grant.user.get_username()} is no longer {grant.get_role_display()}.",
    )
    return redirect("people") if status == 200 else _people_page(request, status=status)


# Users ----------------------------------------------------------------------------------------


@login_required
def user_list(request: HttpRequest) -> HttpResponse:
    """Users the viewer may see with their roles; POST creates a login (platform admins)."""
    form = UserCreateForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        created, status = call_action(
            form,
            lambda: do_create_user(
                username=data["username"],
                email=data["email"],
                password=data["password"] or None,
                actor=request.user,
            ),
        )
        if created is not None:
            messages.success(request, f"Created user {created.get_username()}.")
            return redirect("user_list")
    elif request.method == "POST":
        status = 400
    return _user_list_page(request, form, status)


def _user_list_page(request: HttpRequest, form: UserCreateForm, status: int) -> HttpResponse:
    user = request.user
    users = restrict(get_user_model().objects.order_by("username"), user).prefetch_related(
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
    target = _visible(request, get_user_model().objects.all(), pk)
    name = target.get_username()
    if request.method != "POST":
        explanation = (
            "They can no longer log in, and their API tokens are revoked. History is kept."
            if verb == "deactivate"
            else "They can log in again; their old API tokens stay revoked."
        )
        back = reverse("user_list")
        return _confirm(
            request, "people", f"{verb.capitalize()} {name}?", explanation, verb.capitalize(), back
        )
    action = do_deactivate_user if verb == "deactivate" else do_reactivate_user
    status = perform(request, lambda: action(user=target, actor=request.user), f"{name} {verb}d.")
    return redirect("user_list") if status == 200 else _user_list_page(request, UserCreateForm(), status)


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
    form = TeamCreateForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        team, status = call_action(
            form,
            lambda: do_create_team(name=data["name"], description=data["description"], actor=request.user),
        )
        if team is not None:
            messages.success(request, f"Created team {team.name}.")
            return redirect("team_detail", pk=team.pk)
    elif request.method == "POST":
        status = 400
    teams = Team.objects.restrict(request.user).annotate(member_count=Count("memberships")).order_by("name")
    context = {
        "section": "people",
        "page_obj": paginate(request, teams),
        "form": form,
        "is_admin": is_platform_admin(request.user),
    }
    return render(request, "governance/team_list.html", context, status=status)


def _team_page(request: HttpRequest, team: Team, form: MembershipGrantForm | None = None, status: int = 200):
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
def team_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A team's members and roles; POST adds a member or changes a role (admins, model owners)."""
    team = visible_or_404(request, Team.objects.all(), pk)
    if request.method != "POST":
        return _team_page(request, team)
    refusal = _grant_refusal(request.user, "membership")
    if refusal:
        messages.error(request, refusal)
        return _team_page(request, team, status=403)
    form = MembershipGrantForm(request.POST, user=request.user)
    if not form.is_valid():
        return _team_page(request, team, form, status=400)
    data = form.cleaned_data
    membership, status = call_action(
        form,
        lambda: do_set_membership(
            user=data["username"], team=data["team"], role=data["role"], actor=request.user
        ),
    )
    if membership is None:
        return _team_page(request, team, form, status=status)
    messages.success(
        request,
        f"{membership.user.get_username()} is now {membership.get_role_display()} in {membership.team}.",
    )
    return redirect("team_detail", pk=membership.team_id)


# API tokens -----------------------------------------------------------------------------------


@login_required
def api_token_list(request: HttpRequest) -> HttpResponse:
    """The user's own API tokens; POST creates one and shows its secret on this answer only."""
    form = ApiTokenForm(request.POST or None)
    status, created = 200, None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        expires_at = None
        if data["expires_in_days"]:
            expires_at = timezone.now() + datetime.timedelta(days=data["expires_in_days"])
        created, status = call_action(
            form,
            lambda: do_create_api_token(
                user=request.user,
                name=data["name"],
                is_read_only=data["is_read_only"],
                expires_at=expires_at,
                actor=request.user,
            ),
        )
        if created is not None:
            form = ApiTokenForm()
    elif request.method == "POST":
        status = 400
    return _token_page(request, form, created, status)


def _token_page(request: HttpRequest, form: ApiTokenForm, created, status: int) -> HttpResponse:
    context = {
        "section": "tokens",
        "tokens": restrict(ApiToken.objects.all(), request.user),
        "form": form,
        "new_token": created[0] if created else None,
        "new_secret": created[1] if created else None,
        "now": timezone.now(),
    }
    response = render(request, "governance/api_token_list.html", context, status=status)
    # The secret is in this page only: keep it out of every cache.
    response["Cache-Control"] = "no-store"
    return response


@login_required
def api_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm; POST revokes one of the user's own tokens (others' are 404)."""
    token = _visible(request, ApiToken.objects.all(), pk)
    if request.method != "POST":
        return _confirm(
            request,
            "tokens",
            f"Revoke the token {token.name} ({token.prefix}…)?",
            "Requests with it are refused from now on. This cannot be undone.",
            "Revoke",
            reverse("api_token_list"),
        )
    status = perform(
        request,
        lambda: do_revoke_api_token(token=token, actor=request.user),
        f"Revoked the token {token.name}.",
    )
    return redirect("api_token_list") if status == 200 else _token_page(request, ApiTokenForm(), None, status)

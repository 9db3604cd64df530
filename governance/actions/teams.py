"""Teams, team memberships and platform role grants.

Nobody changes their own roles; the last active platform admin stays (checked after the change,
inside its transaction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.text import slugify

from governance.actions.checks import (
    checked_name,
    ensure_active,
    ensure_admin,
    ensure_an_admin_remains,
    ensure_can,
    ensure_not_self,
    lock_platform_admins,
)
from governance.audit import record_audit_event, snapshot
from governance.models import Membership, PlatformRole, PlatformRoleGrant, Team, TeamRole
from governance.names import name_key
from governance.permissions import CHANGE, MANAGE, ROLE_ACTIONS, can, team_roles

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def do_create_team(*, name: str, description: str = "", actor: User | None) -> Team:
    """Create a team (platform admins only). Raises ValidationError if the name breaks the name
    rule (``governance.names``) or is taken (under NFKC case folding) or its slug is."""
    name = checked_name(name, noun="team name", max_length=100)
    slug = slugify(name)
    if not slug:
        raise ValidationError({"name": "a team name needs at least one letter or digit"})
    with transaction.atomic():
        ensure_admin(actor)
        key = name_key(name)
        if Team.objects.filter(slug=slug).exists() or Team.objects.filter(name_key=key).exists():
            raise ValidationError(
                {"name": f"a team named {name!r} already exists (names are compared ignoring case and width)"}
            )
        team = Team.objects.create(name=name, name_key=key, slug=slug, description=description)
        record_audit_event(actor=actor, action="team.create", obj=team, after=snapshot(team))
    return team


def do_set_membership(*, user: User, team: Team, role: str, actor: User | None) -> Membership:
    """Give ``user`` ``role`` in ``team`` (creating or changing the membership).

    Allowed for platform admins and the team's model owners; nobody may change their own role.
    Raises ValidationError for an unknown role or an inactive user.
    """
    if role not in TeamRole.values:
        raise ValidationError({"role": f"unknown role {role!r}; one of {', '.join(TeamRole.values)}"})
    with transaction.atomic():
        ensure_can(actor, MANAGE, team.pk)
        ensure_not_self(actor, user)
        ensure_active(user)
        return write_membership(user=user, team=team, role=role, actor=actor)


def write_membership(
    *, user: User, team: Team, role: str, actor: User | None, source: dict | None = None
) -> Membership:
    """Create or change ``user``'s membership of ``team`` and record it; no permission check.

    For actions that have made their own check (``do_set_membership``; single sign-on, whose
    rule is the role map). ``source`` joins the event's after-state (where the change came
    from). Runs inside the caller's transaction.
    """
    membership = Membership.objects.select_for_update().filter(user=user, team=team).first()
    before = {"role": membership.role} if membership else None
    if membership is None:
        membership = Membership.objects.create(user=user, team=team, role=role)
    else:
        membership.role = role
        membership.save(update_fields=["role"])
    record_audit_event(
        actor=actor,
        action="membership.grant",
        obj=membership,
        object_repr=f"{user.get_username()} in {team.name}",
        before=before,
        after={"user": user.get_username(), "team": team.name, "role": role, **(source or {})},
        on_behalf_of=user if actor is None else None,
    )
    return membership


def do_revoke_membership(*, membership: Membership, actor: User | None) -> None:
    """Remove ``membership`` (platform admins and the team's model owners; never one's own)."""
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update().select_related("user", "team").get(pk=membership.pk)
        )
        ensure_can(actor, MANAGE, membership.team_id)
        ensure_not_self(actor, membership.user)
        delete_membership(membership=membership, actor=actor)


def delete_membership(*, membership: Membership, actor: User | None, source: dict | None = None) -> None:
    """Record and delete a locked ``membership``; no permission check (see ``write_membership``)."""
    user, team = membership.user, membership.team
    record_audit_event(
        actor=actor,
        action="membership.revoke",
        obj=membership,
        object_repr=f"{user.get_username()} in {team.name}",
        before={"user": user.get_username(), "team": team.name, "role": membership.role},
        after=source,
        on_behalf_of=user if actor is None else None,
    )
    membership.delete()


def do_grant_platform_role(*, user: User, role: str, actor: User | None) -> PlatformRoleGrant:
    """Grant a platform-wide role (admin or compliance officer); platform admins only, never to
    themselves. Granting a role the user holds changes nothing and writes no event."""
    if role not in PlatformRole.values:
        raise ValidationError({"role": f"unknown role {role!r}; one of {', '.join(PlatformRole.values)}"})
    with transaction.atomic():
        ensure_admin(actor)
        ensure_not_self(actor, user)
        ensure_active(user)
        return write_platform_role(user=user, role=role, actor=actor)


def write_platform_role(
    *, user: User, role: str, actor: User | None, source: dict | None = None
) -> PlatformRoleGrant:
    """Grant ``role`` to ``user`` if not held, recording it; no permission check (see
    ``write_membership``)."""
    grant, created = PlatformRoleGrant.objects.get_or_create(user=user, role=role)
    if created:
        record_audit_event(
            actor=actor,
            action="platform_role.grant",
            obj=grant,
            object_repr=f"{user.get_username()} as {role}",
            after={"user": user.get_username(), "role": role, **(source or {})},
            on_behalf_of=user if actor is None else None,
        )
    return grant


def do_revoke_platform_role(*, grant: PlatformRoleGrant, actor: User | None) -> None:
    """Remove a platform role (platform admins only; never one's own, never the last admin's)."""
    with transaction.atomic():
        ensure_admin(actor)
        lock_platform_admins()
        grant = PlatformRoleGrant.objects.select_for_update().select_related("user").get(pk=grant.pk)
        ensure_not_self(actor, grant.user)
        delete_platform_role(grant=grant, actor=actor)


def delete_platform_role(*, grant: PlatformRoleGrant, actor: User | None, source: dict | None = None) -> None:
    """Record and delete a locked ``grant``, then refuse (PermissionDenied, rolling the caller's
    transaction back) if no active platform admin remains; no permission check. The caller holds
    ``lock_platform_admins``."""
    record_audit_event(
        actor=actor,
        action="platform_role.revoke",
        obj=grant,
        object_repr=f"{grant.user.get_username()} as {grant.role}",
        before={"user": grant.user.get_username(), "role": grant.role},
        after=source,
        on_behalf_of=grant.user if actor is None else None,
    )
    grant.delete()
    ensure_an_admin_remains()


# The tag that names the team (by slug) of an MLflow experiment or registered model (issue 9).
TEAM_TAG = "steward.team"


def default_team(user: User, *, team_slug: str | None = None) -> Team:
    """The team a new object of ``user``'s belongs to when the caller (the MLflow API) names none.

    ``team_slug`` (the ``steward.team`` tag) wins: it must be a team where ``user`` may change
    objects. Without it, the one team where ``user`` holds a role with CHANGE (model owner, data
    scientist). Raises ValidationError on ``steward.team`` when the slug names no such team, or when
    ``user`` has several such teams (naming them, so the caller knows what to tag); PermissionDenied
    when ``user`` has none.
    A platform admin may name any team, but gets a default only from their own memberships.
    """
    if team_slug is not None and team_slug != "":
        team = Team.objects.filter(slug=team_slug).first()
        if team is None or not can(user, CHANGE, team.pk):
            raise ValidationError(
                {TEAM_TAG: f"you have no team with slug {team_slug!r} where you may create objects"}
            )
        return team
    team_ids = sorted(team_id for team_id, role in team_roles(user).items() if CHANGE in ROLE_ACTIONS[role])
    if len(team_ids) == 1:
        return Team.objects.get(pk=team_ids[0])
    if not team_ids:
        # A permission refusal (403), not bad input: no tag would help a viewer or an approver.
        raise PermissionDenied(
            "you hold no role that may create objects in any team (model owner or data scientist)"
        )
    slugs = ", ".join(Team.objects.filter(pk__in=team_ids).order_by("slug").values_list("slug", flat=True))
    raise ValidationError(
        {TEAM_TAG: f"you may create objects in several teams ({slugs}): name one with the tag {TEAM_TAG}"}
    )

"""Teams, team memberships and platform role grants.

Nobody changes their own roles; the last active platform admin stays (checked after the change,
inside its transaction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
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
from governance.permissions import MANAGE

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
            after={"user": user.get_username(), "team": team.name, "role": role},
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
        user, team = membership.user, membership.team
        record_audit_event(
            actor=actor,
            action="membership.revoke",
            obj=membership,
            object_repr=f"{user.get_username()} in {team.name}",
            before={"user": user.get_username(), "team": team.name, "role": membership.role},
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
        grant, created = PlatformRoleGrant.objects.get_or_create(user=user, role=role)
        if created:
            record_audit_event(
                actor=actor,
                action="platform_role.grant",
                obj=grant,
                object_repr=f"{user.get_username()} as {role}",
                after={"user": user.get_username(), "role": role},
            )
    return grant


def do_revoke_platform_role(*, grant: PlatformRoleGrant, actor: User | None) -> None:
    """Remove a platform role (platform admins only; never one's own, never the last admin's)."""
    with transaction.atomic():
        ensure_admin(actor)
        lock_platform_admins()
        grant = PlatformRoleGrant.objects.select_for_update().select_related("user").get(pk=grant.pk)
        ensure_not_self(actor, grant.user)
        record_audit_event(
            actor=actor,
            action="platform_role.revoke",
            obj=grant,
            object_repr=f"{grant.user.get_username()} as {grant.role}",
            before={"user": grant.user.get_username(), "role": grant.role},
        )
        grant.delete()
        ensure_an_admin_remains()

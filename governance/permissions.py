"""The one place that decides who sees and changes what.

Every governed model declares ``team_scope``, the lookup from the model to its owning team, and
uses ``RestrictedQuerySet``; API, UI, exports and lineage all go through ``restrict``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from django.db import models

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

Action = Literal["view", "change", "manage", "approve"]

VIEW: Action = "view"
CHANGE: Action = "change"
MANAGE: Action = "manage"
APPROVE: Action = "approve"

# Team role -> actions it allows on the team's objects. "change" registers data, submits jobs,
# runs drift checks and acknowledges alerts; "manage" changes the team's models and members.
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "model_owner": frozenset({VIEW, CHANGE, MANAGE}),
    "data_scientist": frozenset({VIEW, CHANGE}),
    "approver": frozenset({VIEW, APPROVE}),
    "viewer": frozenset({VIEW}),
}


class AllTeams:
    """Marker: the user's scope is every team."""


ALL_TEAMS = AllTeams()


def platform_roles(user: AbstractBaseUser | AnonymousUser, *, fresh: bool = False) -> set[str]:
    """The platform-wide roles of ``user`` (``{"admin", "compliance_officer"}`` subsets).

    Cached on the user object; ``fresh=True`` re-reads (actions re-check inside their transaction).
    """
    if not user.is_authenticated:
        return set()
    cached = None if fresh else getattr(user, "_steward_platform_roles", None)
    if cached is None:
        cached = set(user.platform_roles.values_list("role", flat=True))
        if user.is_superuser:
            cached.add("admin")
        user._steward_platform_roles = cached
    return cached


def is_platform_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    return "admin" in platform_roles(user)


def team_scope(
    user: AbstractBaseUser | AnonymousUser, action: Action = VIEW, *, fresh: bool = False
) -> set[int] | AllTeams:
    """Ids of the teams on whose objects ``user`` may perform ``action``, or ``ALL_TEAMS``.

    Platform admins may do everything everywhere; compliance officers may view everything.
    One query for memberships (platform roles are cached on the user object).
    """
    roles = platform_roles(user, fresh=fresh)
    if "admin" in roles or (action == VIEW and "compliance_officer" in roles):
        return ALL_TEAMS
    if not user.is_authenticated:
        return set()
    return {
        team_id for team_id, role in team_roles(user, fresh=fresh).items() if action in ROLE_ACTIONS[role]
    }


def team_roles(user: AbstractBaseUser, *, fresh: bool = False) -> dict[int, str]:
    """``{team_id: role}`` for ``user``'s memberships, cached on the user object.

    One query per request instead of one per ``restrict`` call; ``fresh=True`` re-reads, so the
    re-check an action makes inside its transaction never trusts a stale role.
    """
    cached = None if fresh else getattr(user, "_steward_team_roles", None)
    if cached is None:
        cached = dict(user.memberships.values_list("team_id", "role"))
        user._steward_team_roles = cached
    return cached


def can(
    user: AbstractBaseUser | AnonymousUser, action: Action, team_id: int | None, *, fresh: bool = False
) -> bool:
    """Whether ``user`` may perform ``action`` on an object of team ``team_id``."""
    scope = team_scope(user, action, fresh=fresh)
    return scope is ALL_TEAMS or (team_id is not None and team_id in scope)


class RestrictedQuerySet(models.QuerySet):
    def restrict(self, user: AbstractBaseUser | AnonymousUser, action: Action = VIEW) -> RestrictedQuerySet:
        """Only the rows ``user`` may perform ``action`` on, via the model's ``team_scope`` lookup."""
        scope = team_scope(user, action)
        if scope is ALL_TEAMS:
            return self
        return self.filter(**{f"{self.model.team_scope}__in": scope})

"""The one place that decides who sees and changes what.

Every governed model declares ``team_scope``, the lookup from the model to its owning team, and
uses ``RestrictedQuerySet``; API, UI, exports and lineage all go through ``restrict``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from django.db import models

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

Action = Literal["view", "change", "manage", "approve", "predict"]

VIEW: Action = "view"
CHANGE: Action = "change"
MANAGE: Action = "manage"
APPROVE: Action = "approve"
# Online prediction with the team's models (issue 17): the model owners and data scientists.
PREDICT: Action = "predict"

# Team role -> actions it allows on the team's objects. "change" registers data, submits jobs,
# runs drift checks, acknowledges alerts and requests promotions; "manage" changes the team's
# members; "approve" decides promotion requests. docs/permissions.md is the matrix, tested cell by cell.
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "model_owner": frozenset({VIEW, CHANGE, MANAGE, PREDICT}),
    "data_scientist": frozenset({VIEW, CHANGE, PREDICT}),
    "approver": frozenset({VIEW, APPROVE}),
    "viewer": frozenset({VIEW}),
}


class AllTeams:
    """Marker: the user's scope is every team."""


ALL_TEAMS = AllTeams()


def platform_roles(user: User | AnonymousUser, *, fresh: bool = False) -> set[str]:
    """The platform-wide roles of ``user`` (``{"admin", "compliance_officer"}`` subsets).

    Cached on the user object; ``fresh=True`` re-reads (actions re-check inside their transaction).
    """
    if not user.is_authenticated:
        return set()
    cached = None if fresh else getattr(user, "_steward_platform_roles", None)
    if cached is None:
        cached, _teams = _load_roles(user)
    return cached


def is_platform_admin(user: User | AnonymousUser) -> bool:
    return "admin" in platform_roles(user)


def team_scope(
    user: User | AnonymousUser, action: Action = VIEW, *, fresh: bool = False
) -> set[int] | AllTeams:
    """Ids of the teams on whose objects ``user`` may perform ``action``, or ``ALL_TEAMS``.

    Platform admins may do everything everywhere except approve; compliance officers may view
    everything.
    One query for platform grants and memberships together, cached on the user object.
    """
    roles = platform_roles(user, fresh=fresh)
    # Approval is the one action no platform role implies: four eyes means an approver of the
    # team decides (issue 3), so an admin approves only through an approver membership.
    if ("admin" in roles and action != APPROVE) or (action == VIEW and "compliance_officer" in roles):
        return ALL_TEAMS
    if not user.is_authenticated:
        return set()
    # platform_roles above read the memberships with the grants (and re-read both when fresh).
    return {team_id for team_id, role in team_roles(user).items() if action in ROLE_ACTIONS[role]}


def team_roles(user: User, *, fresh: bool = False) -> dict[int, str]:
    """``{team_id: role}`` for ``user``'s memberships, cached on the user object.

    One query per request instead of one per ``restrict`` call; ``fresh=True`` re-reads, so the
    re-check an action makes inside its transaction never trusts a stale role.
    """
    cached = None if fresh else getattr(user, "_steward_team_roles", None)
    if cached is None:
        _platform, cached = _load_roles(user)
    return cached


def _load_roles(user: User) -> tuple[set[str], dict[int, str]]:
    """``user``'s platform roles and ``{team_id: role}``, read in one query (grants UNION ALL
    memberships: every authenticated request needs both) and cached on the user object, a plain
    attribute that lives as long as the request does."""
    from django.db.models import BigIntegerField, Value
    from django.db.models.functions import Cast

    from governance.models import Membership, PlatformRoleGrant

    grants = (
        PlatformRoleGrant.objects.filter(user=user)
        .annotate(no_team=Cast(Value(None), BigIntegerField()))
        .order_by()
        .values_list("no_team", "role")
    )
    memberships = Membership.objects.filter(user=user).order_by().values_list("team_id", "role")
    platform: set[str] = set()
    teams: dict[int, str] = {}
    for team_id, role in grants.union(memberships, all=True):
        if team_id is None:
            platform.add(role)
        else:
            teams[team_id] = role
    if user.is_superuser:
        platform.add("admin")
    setattr(user, "_steward_platform_roles", platform)  # noqa: B010
    setattr(user, "_steward_team_roles", teams)  # noqa: B010
    return platform, teams


def can(user: User | AnonymousUser, action: Action, team_id: int | None, *, fresh: bool = False) -> bool:
    """Whether ``user`` may perform ``action`` on an object of team ``team_id``."""
    scope = team_scope(user, action, fresh=fresh)
    return isinstance(scope, AllTeams) or (team_id is not None and team_id in scope)


class RestrictedQuerySet(models.QuerySet):
    def restrict(self, user: User | AnonymousUser, action: Action = VIEW) -> RestrictedQuerySet:
        """Only the rows ``user`` may perform ``action`` on, via the model's ``team_scope`` lookup."""
        scope = team_scope(user, action)
        if scope is ALL_TEAMS:
            return self
        return self.filter(**{f"{self.model.team_scope}__in": scope})


def visible_users(viewer: User | AnonymousUser, queryset: models.QuerySet | None = None):
    """The users ``viewer`` may see: everyone for admins and compliance officers, otherwise
    themselves and the members of the teams they may view."""
    from django.contrib.auth import get_user_model

    from governance.models import Membership

    queryset = get_user_model().objects.all() if queryset is None else queryset
    scope = team_scope(viewer, VIEW)
    if scope is ALL_TEAMS:
        return queryset
    if not viewer.is_authenticated:
        return queryset.none()
    members = Membership.objects.filter(team__in=scope).values("user_id")
    return queryset.filter(models.Q(pk=viewer.pk) | models.Q(pk__in=members))


def _restrict_users(queryset, user, action: Action):
    if action == VIEW:
        return visible_users(user, queryset)
    return queryset if is_platform_admin(user) else queryset.none()


def _restrict_platform_role_grants(queryset, user, action: Action):
    if team_scope(user, action) is ALL_TEAMS:
        return queryset
    return queryset.filter(user=user) if action == VIEW and user.is_authenticated else queryset.none()


def _restrict_api_tokens(queryset, user, action: Action):
    # Tokens are personal, even to admins: deactivating a user is how an admin stops theirs.
    # Personal and prediction tokens (listed and revoked by their user); not a code run's token,
    # which lives and dies with its run (issue 17).
    from governance.models import TokenScope  # governance.models imports this module

    if not user.is_authenticated:
        return queryset.none()
    return queryset.filter(user=user).exclude(scope=TokenScope.JOB)


# Rows that belong to no team, and so have no ``team_scope``: how each is restricted.
_TEAMLESS_RULES = {
    "governance.platformrolegrant": _restrict_platform_role_grants,
    "governance.apitoken": _restrict_api_tokens,
}


def restrict(queryset: models.QuerySet, user: User | AnonymousUser, action: Action = VIEW):
    """``queryset`` cut to the rows ``user`` may perform ``action`` on, for any governed model.

    Team-owned models go through ``RestrictedQuerySet.restrict``; users, platform role grants and
    API tokens through their rule above. Raises TypeError for a model with neither, so a new model
    cannot reach the API unrestricted.
    """
    from django.contrib.auth import get_user_model

    if hasattr(queryset, "restrict"):
        return queryset.restrict(user, action)
    if queryset.model is get_user_model():
        return _restrict_users(queryset, user, action)
    rule = _TEAMLESS_RULES.get(queryset.model._meta.label_lower)
    if rule is None:
        raise TypeError(f"{queryset.model.__name__} has no team_scope and no restriction rule")
    return rule(queryset, user, action)


# Rules the UI asks before showing a form or a button, and the actions enforce inside their
# transaction (``fresh=True``): one definition each, so the page never offers what is refused.


def grant_refusal(user: User | AnonymousUser, kind: str | None) -> str:
    """Why ``user`` may not submit a ``kind`` grant (``membership``, ``platform_role``) at all;
    "" when they may try.

    Which team or user they may grant to is the action's to decide; this only spares the
    username lookup for people who may grant nothing of the kind.
    """
    if kind == "platform_role" and not is_platform_admin(user):
        return "only a platform admin may do this"
    if kind == "membership" and not team_scope(user, MANAGE):
        return "you may not manage the members of any team"
    return ""


def may_request_promotion(user: User | AnonymousUser | None, team_id: int, *, fresh: bool = False) -> bool:
    """The team's model owners and data scientists (and platform admins) may ask for a promotion."""
    return user is not None and can(user, CHANGE, team_id, fresh=fresh)


def promotion_decision_refusal(
    user: User | AnonymousUser | None, promotion_request: Any, *, fresh: bool = False
) -> str:
    """Why ``user`` may not approve or reject ``promotion_request``; "" when they may.

    Four eyes (issue 3): an approver of the model's team, other than the requester. No platform
    role implies approval. The request's state is the action's to check.
    """
    model = promotion_request.model_version.model
    if user is None or not can(user, APPROVE, model.team_id, fresh=fresh):
        return f"only an approver of team {model.team.name} may decide promotions"
    if user.pk == promotion_request.requested_by_id:
        return "four eyes: the requester may not decide their own promotion request"
    return ""


def may_cancel_promotion(user: User | AnonymousUser | None, promotion_request: Any) -> bool:
    """Only the requester withdraws their own request."""
    return user is not None and user.pk == promotion_request.requested_by_id

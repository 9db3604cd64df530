"""Single sign-on (OpenID Connect, issue 13): the login an identity signs in as, and its roles.

The rule, one definition (docs/operations.md, "Single sign-on"):

- An identity is its issuer and subject (``iss``, ``sub``). Its first sign-on creates a Steward
  login named by its ``preferred_username`` claim (NFKC-normalised, as every username) with no
  usable password; a name already taken by another login refuses the sign-on, so an identity
  provider never takes over a local account.
- ``STEWARD_OIDC_ROLE_MAP`` maps groups (the ``STEWARD_OIDC_GROUPS_CLAIM`` claim, ``groups`` by
  default) to roles: ``{"<group>": "team:<team slug>:<role>" | "platform:<role>" | [...]}``.
- At every sign-on the identity provider is the source of truth for each team and platform role
  the map names: the user gets the highest team role their groups give (in ``TeamRole``'s order:
  model owner, data scientist, approver, viewer), loses a membership or platform role no group
  gives any more, and keeps whatever the map does not name (managed in Steward as before).
- Each grant and revocation is an audit event by the system on the user's behalf, with
  ``"source": "oidc"`` and the groups that gave it. A sign-on that would remove the last active
  platform admin is refused (and changes nothing); a deactivated login cannot sign on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from governance.actions.checks import lock_platform_admins
from governance.actions.teams import (
    delete_membership,
    delete_platform_role,
    write_membership,
    write_platform_role,
)
from governance.actions.users import valid_username
from governance.audit import record_audit_event
from governance.models import ExternalIdentity, Membership, PlatformRole, PlatformRoleGrant, Team, TeamRole

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

SOURCE = "oidc"


@dataclass(frozen=True)
class RoleMap:
    """``STEWARD_OIDC_ROLE_MAP`` parsed: which groups give which roles.

    ``teams``: ``{team slug: {role: [groups]}}``; ``platform``: ``{platform role: [groups]}``.
    """

    teams: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    platform: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> RoleMap:
        """Parse the JSON object of the setting. Raises ValueError naming the entry at fault:
        not JSON, not an object, a target that is neither ``team:<slug>:<role>`` nor
        ``platform:<role>``, or an unknown role."""
        if not text.strip():
            return cls()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"STEWARD_OIDC_ROLE_MAP is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError('STEWARD_OIDC_ROLE_MAP must be a JSON object {"<group>": "<target>"}')
        teams: dict[str, dict[str, list[str]]] = {}
        platform: dict[str, list[str]] = {}
        for group, targets in raw.items():
            listed = [targets] if isinstance(targets, str) else targets
            if not isinstance(listed, list) or not all(isinstance(target, str) for target in listed):
                raise ValueError(
                    f"STEWARD_OIDC_ROLE_MAP[{group!r}]: a target string or a list of them, not {targets!r}"
                )
            for target in listed:
                kind, _, rest = target.partition(":")
                if kind == "team" and rest.count(":") == 1:
                    slug, role = rest.split(":")
                    if not slug or role not in TeamRole.values:
                        raise ValueError(
                            f"STEWARD_OIDC_ROLE_MAP[{group!r}]: {target!r} needs a team slug and one "
                            f"of the team roles {', '.join(TeamRole.values)}"
                        )
                    teams.setdefault(slug, {}).setdefault(role, []).append(group)
                elif kind == "platform" and rest in PlatformRole.values:
                    platform.setdefault(rest, []).append(group)
                else:
                    raise ValueError(
                        f"STEWARD_OIDC_ROLE_MAP[{group!r}]: {target!r} is neither "
                        f"'team:<slug>:<role>' nor 'platform:<role>' with a role in "
                        f"{', '.join(PlatformRole.values)}"
                    )
        return cls(teams=teams, platform=platform)

    def team_role(self, slug: str, groups: set[str]) -> tuple[str | None, list[str]]:
        """The highest role ``groups`` give in team ``slug`` and the groups that give it."""
        granted = self.teams.get(slug, {})
        for role in TeamRole.values:  # declared highest first
            giving = sorted(groups.intersection(granted.get(role, [])))
            if giving:
                return role, giving
        return None, []

    def platform_groups(self, role: str, groups: set[str]) -> list[str]:
        """The groups among ``groups`` that give platform role ``role`` (empty: none)."""
        return sorted(groups.intersection(self.platform.get(role, [])))


def role_map() -> RoleMap:
    """The configured map (``settings.STEWARD_OIDC_ROLE_MAP``); ValueError when malformed."""
    return RoleMap.parse(settings.STEWARD_OIDC_ROLE_MAP)


def groups_from_claims(claims: dict[str, Any]) -> set[str]:
    """The user's groups: the ``STEWARD_OIDC_GROUPS_CLAIM`` claim, a list of strings (or one
    string); absent means none. Raises ValidationError for any other shape."""
    value = claims.get(settings.STEWARD_OIDC_GROUPS_CLAIM)
    if value is None:
        return set()
    if isinstance(value, str):
        return {value}
    if isinstance(value, list) and all(isinstance(group, str) for group in value):
        return set(value)
    raise ValidationError(
        {"groups": f"the {settings.STEWARD_OIDC_GROUPS_CLAIM!r} claim must be a list of group names"}
    )


def do_sso_login(*, issuer: str, subject: str, claims: dict[str, Any]) -> User:
    """The login of identity (``issuer``, ``subject``), created at its first sign-on, with its
    memberships and platform roles brought in line with ``claims`` by the role map.

    ``claims``: the verified UserInfo claims (``preferred_username``, ``email``, the groups
    claim). Raises ValidationError when a first sign-on has no usable or a taken username, or the
    groups claim is malformed; PermissionDenied for a deactivated login or when the sign-on would
    remove the last active platform admin. Nothing is written when it raises.
    """
    user_model = get_user_model()
    rules = role_map()
    groups = groups_from_claims(claims)
    email = claims.get("email")
    email = email if isinstance(email, str) else ""
    # The columns' own limits, refused here rather than by the database mid-transaction.
    for name, value, limit in (
        ("iss", issuer, ExternalIdentity._meta.get_field("issuer").max_length),
        ("sub", subject, ExternalIdentity._meta.get_field("subject").max_length),
        ("email", email, user_model._meta.get_field("email").max_length),
    ):
        if limit is not None and len(value) > limit:
            raise ValidationError({name: f"the {name} claim is longer than {limit} characters"})
    try:
        with transaction.atomic():
            identity = (
                ExternalIdentity.objects.select_for_update()
                .select_related("user")
                .filter(issuer=issuer, subject=subject)
                .first()
            )
            if identity is None:
                user = _first_sign_on(user_model, issuer=issuer, subject=subject, claims=claims, email=email)
            else:
                user = user_model.objects.select_for_update().get(pk=identity.user_id)
                if not user.is_active:
                    raise PermissionDenied(f"{user.get_username()} is deactivated in Steward")
                if email and email != user.email:
                    record_audit_event(
                        actor=None,
                        action="user.update",
                        obj=user,
                        object_type="user",
                        before={"email": user.email},
                        after={"email": email, "source": SOURCE},
                        on_behalf_of=user,
                    )
                    user.email = email
                    user.save(update_fields=["email"])
            _apply_role_map(user, rules, groups)
    except IntegrityError as exc:
        # Two first sign-ons of one identity at once: the second loses the unique constraint.
        raise ValidationError({"identity": "this identity is signing on elsewhere; try again"}) from exc
    return user


def _first_sign_on(user_model, *, issuer: str, subject: str, claims: dict[str, Any], email: str) -> User:
    """Create the login and its identity link (inside the caller's transaction)."""
    raw = claims.get("preferred_username")
    if not isinstance(raw, str) or not raw:
        raise ValidationError(
            {"username": "the identity provider sent no preferred_username claim to name the login"}
        )
    username = valid_username(user_model, raw)
    if user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).exists():
        raise ValidationError(
            {
                "username": f"{username!r} is already a Steward login that is not linked to this "
                "identity; a platform admin must rename or remove it first"
            }
        )
    user = user_model.objects.create_user(username=username, email=email, password=None)
    ExternalIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    record_audit_event(
        actor=None,
        action="user.create",
        obj=user,
        object_type="user",
        after={"username": username, "email": email, "source": SOURCE, "issuer": issuer},
        on_behalf_of=user,
    )
    return user


def _apply_role_map(user: User, rules: RoleMap, groups: set[str]) -> None:
    """Grant and revoke what the map names so ``user`` holds exactly what ``groups`` give."""
    for slug in sorted(rules.teams):
        team = Team.objects.filter(slug=slug).first()
        if team is None:
            # A map entry for a team not made yet: skipped, not fatal to everyone's sign-on.
            logger.warning("STEWARD_OIDC_ROLE_MAP names team %r, which does not exist", slug)
            continue
        role, giving = rules.team_role(slug, groups)
        current = Membership.objects.select_for_update().filter(user=user, team=team).first()
        source = {"source": SOURCE, "groups": giving}
        if role is not None and (current is None or current.role != role):
            write_membership(user=user, team=team, role=role, actor=None, source=source)
        elif role is None and current is not None:
            delete_membership(membership=current, actor=None, source=source)
    if rules.platform:
        lock_platform_admins()
    for platform_role in sorted(rules.platform):
        giving = rules.platform_groups(platform_role, groups)
        grant = PlatformRoleGrant.objects.select_for_update().filter(user=user, role=platform_role).first()
        if giving and grant is None:
            write_platform_role(
                user=user, role=platform_role, actor=None, source={"source": SOURCE, "groups": giving}
            )
        elif not giving and grant is not None:
            delete_platform_role(grant=grant, actor=None, source={"source": SOURCE, "groups": []})

"""Guards every governance action shares: the permission re-check and the role rules.

Called inside the action's transaction, so they read what the transaction will commit on.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Max, Q

from governance.models import PlatformRole, PlatformRoleGrant
from governance.names import InvalidName, check_name, name_key
from governance.permissions import Action, can, platform_roles

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def ensure_can(actor: User | None, action: Action, team_id: int | None, *, fresh: bool = True) -> None:
    """Raise PermissionDenied unless ``actor`` (None = system) may ``action`` on ``team_id``'s objects.

    ``fresh`` (the default, for the check that binds, inside the action's transaction) re-reads
    the roles; ``fresh=False`` uses the roles the request already read, for an early refusal
    before costly work that a fresh check inside the transaction repeats anyway.
    """
    if actor is not None and not can(actor, action, team_id, fresh=fresh):
        raise PermissionDenied(f"you may not {action} objects of this team")


def ensure_admin(actor: User | None) -> None:
    if actor is not None and "admin" not in platform_roles(actor, fresh=True):
        raise PermissionDenied("only a platform admin may do this")


def ensure_not_self(actor: User | None, user: User) -> None:
    # Nobody changes their own roles, admins included: a model owner cannot make themselves
    # anything else, an admin cannot step out of the last-admin rule by acting on themselves.
    if actor is not None and actor.pk == user.pk:
        raise PermissionDenied("you may not change your own roles; ask another admin or model owner")


def ensure_active(user: User) -> None:
    # Read inside the transaction: the caller's user object may predate a deactivation.
    if not get_user_model().objects.filter(pk=user.pk, is_active=True).exists():
        raise ValidationError({"user": f"{user.get_username()} is deactivated"})


def lock_platform_admins() -> None:
    """Lock every row that makes someone a platform admin, in one order (no deadlocks).

    Two admins revoking each other at once would each see the other left; with these rows
    locked the second waits, and its count (a fresh statement, so it sees the first's commit
    under READ COMMITTED) finds one admin. SQLite's BEGIN IMMEDIATE already serialises writers.
    """
    list(PlatformRoleGrant.objects.select_for_update().filter(role=PlatformRole.ADMIN).order_by("pk"))
    list(get_user_model().objects.select_for_update().filter(is_superuser=True).order_by("pk"))


def active_platform_admins():
    """Active users who are platform admins: an admin grant, or Django's superuser flag
    (``manage.py createsuperuser``; no action sets it)."""
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(pk__in=PlatformRoleGrant.objects.filter(role=PlatformRole.ADMIN).values("user_id"))
        )
    )


def ensure_an_admin_remains() -> None:
    # Checked after the change, inside its transaction: raising rolls back the change and its event.
    if not active_platform_admins().exists():
        raise PermissionDenied("the last platform admin cannot be removed or demoted")


def checked_name(raw: str, *, noun: str, max_length: int = 200, field: str = "name") -> str:
    """``raw`` under the name rule (``governance.names.check_name``), NFC-normalised; a
    ValidationError on ``field`` naming the broken rule otherwise."""
    try:
        return check_name(raw, noun=noun, max_length=max_length)
    except InvalidName as exc:
        raise ValidationError({field: str(exc)}) from exc


# The name rule's collision clause, said wherever a name is refused as taken.
SAME_NAME = " (names are compared ignoring case and character width: NFKC case folding)"


def next_version(model: type[models.Model], parent_field: str, parent: models.Model) -> int:
    """The next version number under ``parent``: one more than the highest ever given, deleted
    versions included (a number is never reused). Call with the parent row locked."""
    highest = model._default_manager.filter(**{parent_field: parent}).aggregate(Max("version"))[
        "version__max"
    ]
    return (highest or 0) + 1


ALIAS_RE = re.compile(r"^[\w\-]+$")
ALIAS_MAX = 255


def check_alias_name(alias: Any) -> str:
    """``alias`` under MLflow's alias rule: letters, digits, ``_`` and ``-``, at most 255
    characters, not ``latest`` and not ``v<digits>`` (those name versions). ValidationError on
    ``alias`` otherwise."""
    if not isinstance(alias, str) or not alias:
        raise ValidationError({"alias": "an alias is a non-empty string"})
    if len(alias) > ALIAS_MAX:
        raise ValidationError(
            {"alias": f"an alias has at most {ALIAS_MAX} characters, this one has {len(alias)}"}
        )
    if not ALIAS_RE.fullmatch(alias):
        raise ValidationError(
            {"alias": f"alias {alias!r} may contain only letters, digits, underscores and hyphens"}
        )
    if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        raise ValidationError(
            {"alias": f"alias {alias!r} is reserved: 'latest' and 'v<number>' name versions"}
        )
    return alias


def is_protected_alias(protected: list[str], alias: str) -> bool:
    """Whether ``alias`` is one of ``protected`` (a team's ``protected_aliases``), compared under
    NFKC case folding like names: "Production" and its fullwidth twin are "production" too, so a
    look-alike cannot slip past four eyes."""
    key = name_key(alias)
    return any(name_key(name) == key for name in protected)

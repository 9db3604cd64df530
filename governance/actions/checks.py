"""Guards every governance action shares: the permission re-check and the role rules.

Called inside the action's transaction, so they read what the transaction will commit on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q

from governance.models import PlatformRole, PlatformRoleGrant
from governance.names import InvalidName, check_name
from governance.permissions import Action, can, platform_roles

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def ensure_can(actor: User | None, action: Action, team_id: int | None) -> None:
    """Raise PermissionDenied unless ``actor`` (None = system) may ``action`` on ``team_id``'s objects."""
    if actor is not None and not can(actor, action, team_id, fresh=True):
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

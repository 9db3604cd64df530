"""Aliases: any name under MLflow's rule; the team's protected aliases move only through four eyes.

An unprotected alias moves at once for the team's model owners and data scientists (CHANGE). An
alias in ``team.protected_aliases`` (``["production"]`` by default) moves only when an approver
approves a promotion request (``actions.promotions``): asking to set it opens that request (or
finds the pending one) and answers ``AliasProtected`` naming it and who may approve it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance.actions.checks import check_alias_name, ensure_can, is_protected_alias
from governance.actions.gates import describe_failures, gate_results
from governance.actions.promotions import ensure_may_hold_alias, move_alias, open_promotion_request
from governance.actions.registered_models import lock_live_model
from governance.audit import record_audit_event, snapshot
from governance.models import ModelAlias, ModelVersion, PromotionRequest, RegisteredModel, Team, TeamRole
from governance.permissions import MANAGE

if TYPE_CHECKING:
    from django.contrib.auth.models import User

__all__ = [
    "AliasProtected",
    "check_alias_name",
    "do_delete_alias",
    "do_set_alias",
    "do_set_protected_aliases",
    "team_approvers",
]


class AliasProtected(PermissionDenied):
    """Setting a protected alias: the promotion request that will move it is ``promotion_request``."""

    def __init__(self, message: str, promotion_request: PromotionRequest, approvers: list[str]):
        super().__init__(message)
        self.promotion_request = promotion_request
        self.approvers = approvers


def team_approvers(team_id: int) -> list[str]:
    """Usernames of the team's active approvers, sorted (who may approve its promotion requests)."""
    return sorted(
        get_user_model()
        .objects.filter(is_active=True, memberships__team_id=team_id, memberships__role=TeamRole.APPROVER)
        .values_list("username", flat=True)
    )


def _version_of(model: RegisteredModel, version: ModelVersion | int) -> ModelVersion:
    number = version.version if isinstance(version, ModelVersion) else version
    if isinstance(version, ModelVersion) and version.model_id != model.pk:
        raise ValidationError({"version": f"{version} is not a version of model {model.name}"})
    found = ModelVersion.objects.select_for_update().filter(model=model, version=number).first()
    if found is None:
        raise ValidationError({"version": f"model {model.name} has no version {number}"})
    found.model = model
    return found


def do_set_alias(
    *, model: RegisteredModel, alias: str, version: ModelVersion | int, actor: User | None
) -> ModelAlias:
    """Point ``alias`` of ``model`` at ``version`` (a ModelVersion of this model, or its number).

    Unprotected alias: moved at once (audited ``model_alias.move``) for a user with CHANGE on the
    model's team. Protected alias (``model.team.protected_aliases``): a promotion request is opened
    (or the pending one for the same version and alias reused), committed, and ``AliasProtected``
    raised naming its id and the team's approvers. A version that already holds the alias is
    returned unchanged. Raises ValidationError for an invalid alias name, an unknown, archived or
    deleted version, an archived or deleted model; PermissionDenied without CHANGE.

    Call it outside any transaction of the caller's: the request must commit before the refusal
    (an outer ``atomic`` would roll it back with the exception).
    """
    alias = check_alias_name(alias)
    with transaction.atomic():
        model = lock_live_model(model, actor)
        target = _version_of(model, version)
        current = ModelAlias.objects.filter(model=model, name=alias).select_related("model_version").first()
        if current is not None and current.model_version_id == target.pk:
            return current
        ensure_may_hold_alias(model, target)
        if not is_protected_alias(model.team.protected_aliases, alias):
            return move_alias(model, alias, target, actor)
        if actor is None:
            raise PermissionDenied(
                f"alias {alias!r} is protected: only an approved promotion request moves it"
            )
        request, _ = open_promotion_request(
            model=model,
            version=target,
            alias=alias,
            reason=f"asked to set alias {alias} directly",
            actor=actor,
            door="alias",
        )
        approvers = team_approvers(model.team_id)
        failing = describe_failures(gate_results(target, alias))
    # Raised after the commit: the request stays open for the approvers.
    raise AliasProtected(
        f"alias {alias!r} of model {model.name} is protected in team {model.team.name}: it moves only "
        f"through an approved promotion request; promotion request #{request.pk} ({target} -> {alias}) "
        f"is pending; who may approve it: {', '.join(approvers) or 'no approver yet in this team'} "
        "(any approver of the team other than the requester)"
        + (
            "; its promotion gates fail, so approval is refused until they pass or two approvers "
            f"override: {failing}"
            if failing
            else ""
        ),
        request,
        approvers,
    )


def do_delete_alias(*, model: RegisteredModel, alias: str, actor: User | None) -> None:
    """Remove ``alias`` from ``model`` (audited ``model_alias.delete``); a missing alias is a no-op.

    A protected alias cannot be removed this way (PermissionDenied naming the rule): it changes
    only through an approved promotion request, or when its version is deleted.
    """
    with transaction.atomic():
        model = lock_live_model(model, actor)
        if is_protected_alias(model.team.protected_aliases, alias):
            raise PermissionDenied(
                f"alias {alias!r} is protected in team {model.team.name}: it moves only through an "
                "approved promotion request and cannot be deleted directly"
            )
        current = ModelAlias.objects.select_for_update().filter(model=model, name=alias).first()
        if current is None:
            return
        record_audit_event(
            actor=actor,
            action="model_alias.delete",
            obj=current,
            object_repr=f"{model.name}@{alias}",
            team_id=model.team_id,
            before=snapshot(current),
        )
        current.delete()
        model.updated_at = timezone.now()
        model.save(update_fields=["updated_at"])


def _ensure_unheld(team: Team, new: list[str]) -> None:
    leaving = [name for name in team.protected_aliases if not is_protected_alias(new, name)]
    if not leaving:
        return
    held = sorted(
        {
            f"{alias.model.name}@{alias.name}"
            for alias in ModelAlias.objects.filter(model__team=team, model__deleted_at__isnull=True)
            .select_related("model")
            .only("name", "model__name")
            if is_protected_alias(leaving, alias.name)
        }
    )
    if held:
        raise ValidationError(
            {
                "protected_aliases": f"{', '.join(repr(n) for n in leaving)} cannot stop being protected "
                f"while models of team {team.name} hold it: {', '.join(held)}; a protected alias "
                "leaves the list only when no live model holds it"
            }
        )


def do_set_protected_aliases(*, team: Team, aliases: list[str], actor: User | None) -> Team:
    """Set which of ``team``'s aliases move only through four eyes (each under the alias rule;
    stored sorted, without duplicates). Team management (MANAGE) only; audited
    ``team.set_protected_aliases``.

    Adding is always allowed. An alias may not leave the list while a live model of the team
    holds it (ValidationError naming the models): otherwise whoever manages the team could
    unprotect it, move it alone and protect it again, bypassing four eyes (admins included)."""
    if not isinstance(aliases, list | tuple):
        raise ValidationError({"protected_aliases": "a list of alias names"})
    checked = sorted({check_alias_name(alias) for alias in aliases})
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        ensure_can(actor, MANAGE, team.pk)
        _ensure_unheld(team, checked)
        if sorted(team.protected_aliases) != checked:
            before = snapshot(team)
            team.protected_aliases = checked
            team.save(update_fields=["protected_aliases"])
            record_audit_event(
                actor=actor,
                action="team.set_protected_aliases",
                obj=team,
                team_id=team.pk,
                before=before,
                after=snapshot(team),
            )
    return team

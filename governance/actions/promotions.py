"""Four-eyes promotion of any alias: request, approve (the alias moves in the same transaction),
reject, cancel. Which aliases need it is the team's ``protected_aliases`` (``actions.aliases``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance.actions.checks import check_alias_name
from governance.audit import record_audit_event, snapshot
from governance.models import ModelAlias, ModelVersion, PromotionRequest, RegisteredModel
from governance.permissions import may_cancel_promotion, may_request_promotion, promotion_decision_refusal

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def ensure_may_hold_alias(model: RegisteredModel, version: ModelVersion) -> None:
    """ValidationError unless ``version`` (of ``model``) may take an alias: the model is not
    archived or deleted and the version is ready (not archived, not deleted)."""
    if model.deleted_at is not None:
        raise ValidationError({"model": f"model {model.name} is deleted"})
    if model.archived_at is not None:
        raise ValidationError(
            {"model": f"model {model.name} is archived; an archived model takes no new alias"}
        )
    if version.status != ModelVersion.Status.READY:
        raise ValidationError({"model_version": f"{version} is {version.status}, not ready"})


def open_promotion_request(
    *, model: RegisteredModel, version: ModelVersion, alias: str, reason: str, actor: User
) -> tuple[PromotionRequest, bool]:
    """The pending request for ``version`` to hold ``alias`` (created, audited, if none is pending)
    and whether it was created. The caller holds the model's lock in its transaction and has
    checked the alias name and that the version may hold an alias."""
    pending = PromotionRequest.objects.filter(
        model_version=version, alias=alias, state=PromotionRequest.State.PENDING
    ).first()
    if pending is not None:
        return pending, False
    request = PromotionRequest.objects.create(
        model_version=version, alias=alias, reason=reason.strip(), requested_by=actor
    )
    record_audit_event(
        actor=actor,
        action="promotion_request.create",
        obj=request,
        team_id=model.team_id,
        after=snapshot(request),
    )
    return request, True


def do_request_promotion(
    *, model_version: ModelVersion, alias: str = "production", reason: str = "", actor: User | None
) -> PromotionRequest:
    """Ask for ``model_version`` to hold ``alias`` (any name under MLflow's alias rule,
    ``checks.check_alias_name``); the team's model owners and data scientists (and platform
    admins) may ask. An approver other than the requester must approve.

    Raises ValidationError for an invalid alias name, an archived or deleted version or model, a
    version that already holds the alias, or a pending request for the same version and alias.
    """
    alias = check_alias_name(alias)
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update().get(pk=model_version.model_id)
        if actor is None or not may_request_promotion(actor, model.team_id, fresh=True):
            raise PermissionDenied("only the team's model owners and data scientists may request a promotion")
        version = ModelVersion.objects.select_related("model").get(pk=model_version.pk)
        ensure_may_hold_alias(model, version)
        if ModelAlias.objects.filter(model=model, name=alias, model_version=version).exists():
            raise ValidationError({"alias": f"{version} already holds {alias}"})
        request, created = open_promotion_request(
            model=model, version=version, alias=alias, reason=reason, actor=actor
        )
        if not created:
            raise ValidationError(
                {"alias": f"promotion request #{request.pk} for {version} to {alias} is pending"}
            )
    return request


def _lock_pending_request(promotion_request: PromotionRequest) -> tuple[PromotionRequest, RegisteredModel]:
    """Lock the request's model (the alias's parent), then the request; refuse one not pending."""
    model_id = ModelVersion.objects.filter(pk=promotion_request.model_version_id).values_list(
        "model_id", flat=True
    )[0]
    model = RegisteredModel.objects.select_for_update().get(pk=model_id)
    request = (
        PromotionRequest.objects.select_for_update()
        .select_related("model_version__model", "requested_by")
        .get(pk=promotion_request.pk)
    )
    return request, model


def _ensure_pending(request: PromotionRequest) -> None:
    if request.state != PromotionRequest.State.PENDING:
        raise ValidationError({"state": f"promotion request #{request.pk} is {request.state}, not pending"})


def _ensure_may_decide(actor: User | None, request: PromotionRequest) -> None:
    refusal = promotion_decision_refusal(actor, request, fresh=True)
    if refusal:
        raise PermissionDenied(refusal)


_DECISION_EVENTS: dict[str, str] = {
    PromotionRequest.State.APPROVED: "promotion_request.approve",
    PromotionRequest.State.REJECTED: "promotion_request.reject",
    PromotionRequest.State.CANCELLED: "promotion_request.cancel",
}


def _decide(request: PromotionRequest, state: str, decision_reason: str, actor: User | None, model) -> None:
    before = snapshot(request)
    request.state = state
    request.decided_by = actor
    request.decided_at = timezone.now()
    request.decision_reason = decision_reason.strip()
    request.save(update_fields=["state", "decided_by", "decided_at", "decision_reason"])
    record_audit_event(
        actor=actor,
        action=_DECISION_EVENTS[state],
        obj=request,
        team_id=model.team_id,
        before=before,
        after=snapshot(request),
    )


def do_approve_promotion(
    *, promotion_request: PromotionRequest, decision_reason: str = "", actor: User | None
) -> PromotionRequest:
    """Approve a pending request and move its alias to its version, atomically.

    The approver holds the approver role in the model's team and is not the requester. The
    model row is locked, so concurrent approvals of one alias apply one after the other, and the
    unique (model, alias) constraint keeps one version per alias whatever happens.
    """
    with transaction.atomic():
        request, model = _lock_pending_request(promotion_request)
        _ensure_may_decide(actor, request)
        _ensure_pending(request)
        version = request.model_version
        ensure_may_hold_alias(model, version)
        _decide(request, PromotionRequest.State.APPROVED, decision_reason, actor, model)
        move_alias(model, request.alias, version, actor)
    return request


def move_alias(model: RegisteredModel, name: str, version: ModelVersion, actor: User | None) -> ModelAlias:
    """Point alias ``name`` of ``model`` at ``version`` (created if new), audited as
    ``model_alias.move``; bumps the model's ``updated_at``. The caller holds the model's lock and
    has decided that the move is allowed (approval, or an unprotected alias)."""
    alias = ModelAlias.objects.select_for_update().filter(model=model, name=name).first()
    before = snapshot(alias)
    if alias is None:
        alias = ModelAlias.objects.create(model=model, name=name, model_version=version)
    else:
        alias.model_version = version
        alias.updated_at = timezone.now()
        alias.save(update_fields=["model_version", "updated_at"])
    model.updated_at = timezone.now()
    model.save(update_fields=["updated_at"])
    record_audit_event(
        actor=actor,
        action="model_alias.move",
        obj=alias,
        object_repr=f"{model.name}@{name} -> v{version.version}",
        team_id=model.team_id,
        before=before,
        after=snapshot(alias),
    )
    return alias


def do_reject_promotion(
    *, promotion_request: PromotionRequest, decision_reason: str, actor: User | None
) -> PromotionRequest:
    """Reject a pending request with a reason (required); same deciders as approval."""
    if not decision_reason.strip():
        raise ValidationError({"decision_reason": "a rejection needs a reason"})
    with transaction.atomic():
        request, model = _lock_pending_request(promotion_request)
        _ensure_may_decide(actor, request)
        _ensure_pending(request)
        _decide(request, PromotionRequest.State.REJECTED, decision_reason, actor, model)
    return request


def do_cancel_promotion(*, promotion_request: PromotionRequest, actor: User | None) -> PromotionRequest:
    """Withdraw a pending request; only its requester may."""
    with transaction.atomic():
        request, model = _lock_pending_request(promotion_request)
        if not may_cancel_promotion(actor, request):
            raise PermissionDenied("only the requester may cancel a promotion request")
        _ensure_pending(request)
        _decide(request, PromotionRequest.State.CANCELLED, "", actor, model)
    return request

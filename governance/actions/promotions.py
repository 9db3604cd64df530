"""Four-eyes promotion: request, approve (the alias moves in the same transaction), reject, cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance.audit import record_audit_event, snapshot
from governance.models import ModelAlias, ModelVersion, PromotionRequest, RegisteredModel
from governance.permissions import may_cancel_promotion, may_request_promotion, promotion_decision_refusal

if TYPE_CHECKING:
    from django.contrib.auth.models import User


PROMOTION_ALIASES = ("production", "staging")


def do_request_promotion(
    *, model_version: ModelVersion, alias: str = "production", reason: str = "", actor: User | None
) -> PromotionRequest:
    """Ask for ``model_version`` to hold ``alias``; the team's model owners and data scientists
    (and platform admins) may ask. An approver other than the requester must approve.

    Raises ValidationError for an unknown alias, an archived version, a version that already
    holds the alias, or a pending request for the same version and alias.
    """
    if alias not in PROMOTION_ALIASES:
        raise ValidationError({"alias": f"unknown alias {alias!r}; one of {', '.join(PROMOTION_ALIASES)}"})
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update().get(pk=model_version.model_id)
        if actor is None or not may_request_promotion(actor, model.team_id, fresh=True):
            raise PermissionDenied("only the team's model owners and data scientists may request a promotion")
        version = ModelVersion.objects.select_related("model").get(pk=model_version.pk)
        if version.status != ModelVersion.Status.READY:
            raise ValidationError({"model_version": f"{version} is {version.status}, not ready"})
        if ModelAlias.objects.filter(model=model, name=alias, model_version=version).exists():
            raise ValidationError({"alias": f"{version} already holds {alias}"})
        pending = PromotionRequest.objects.filter(
            model_version=version, alias=alias, state=PromotionRequest.State.PENDING
        ).first()
        if pending is not None:
            raise ValidationError(
                {"alias": f"promotion request #{pending.pk} for {version} to {alias} is pending"}
            )
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
        if version.status != ModelVersion.Status.READY:
            raise ValidationError({"model_version": f"{version} is {version.status}, not ready"})
        _decide(request, PromotionRequest.State.APPROVED, decision_reason, actor, model)
        _move_alias(model, request.alias, version, actor)
    return request


def _move_alias(model: RegisteredModel, name: str, version: ModelVersion, actor: User | None) -> ModelAlias:
    alias = ModelAlias.objects.select_for_update().filter(model=model, name=name).first()
    before = snapshot(alias)
    if alias is None:
        alias = ModelAlias.objects.create(model=model, name=name, model_version=version)
    else:
        alias.model_version = version
        alias.updated_at = timezone.now()
        alias.save(update_fields=["model_version", "updated_at"])
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

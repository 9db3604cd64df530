"""Four-eyes promotion of any alias: request, approve (the alias moves in the same transaction),
reject, cancel. Which aliases need it is the team's ``protected_aliases`` (``actions.aliases``).

Promotion gates (issue 15, ``actions.gates``): where the team has a gate policy for the alias, the
request records the gates' results when it is made, and approval re-evaluates them. While a gate
fails, approval is refused unless an approver overrides with a written reason; the override is
recorded (``promotion_request.override``) and the alias moves only when a second approver, neither
the requester nor the one who overrode, approves.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from governance.actions.checks import check_alias_name
from governance.actions.gates import (
    GateResult,
    critical_alerts,
    describe_failures,
    failing_gates,
    gate_policy,
    gate_results,
    judged_evaluation,
    needs_evaluation,
)
from governance.audit import record_audit_event, snapshot
from governance.evaluation_starter import start_request_evaluation
from governance.models import ModelAlias, ModelVersion, PromotionRequest, RegisteredModel, TeamRole
from governance.permissions import may_cancel_promotion, may_request_promotion, promotion_decision_refusal

if TYPE_CHECKING:
    from django.contrib.auth.models import User

__all__ = [
    "critical_alerts",
    "do_approve_promotion",
    "do_cancel_promotion",
    "do_reject_promotion",
    "do_request_promotion",
    "ensure_may_hold_alias",
    "move_alias",
    "notify_approvers",
    "open_promotion_request",
    "request_snapshot",
]

logger = logging.getLogger(__name__)
NOTIFY_TASK = "governance.tasks.notify_approvers"


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


def _enqueue_notify_approvers() -> None:
    """Send the notification task by name (tasks sit above actions); a broker outage is logged,
    and beat's next run of the same task sends the mail."""
    from celery import current_app

    try:
        current_app.send_task(NOTIFY_TASK, retry=False)
    except Exception:
        logger.warning("could not enqueue the approvers' mail; beat's next run sends it", exc_info=True)


def open_promotion_request(
    *,
    model: RegisteredModel,
    version: ModelVersion,
    alias: str,
    reason: str,
    actor: User,
    acknowledge_alerts: bool | Collection[int] = False,
    door: str = "request",
) -> tuple[PromotionRequest, bool]:
    """The pending request for ``version`` to hold ``alias`` (created, audited, if none is pending)
    and whether it was created. The caller holds the model's lock in its transaction and has
    checked the alias name and that the version may hold an alias.

    A version with an unresolved critical alert is asked for only with ``acknowledge_alerts``
    (issue 14): True acknowledges those unresolved now; a collection of alert ids (the boxes a
    person ticked on the page they read) must hold every one of them, so an alert raised after
    the page was shown is refused, not acknowledged unseen. The alerts acknowledged are stored on
    the request and in its audit event, for the approver to read. Otherwise ValidationError naming
    the alerts; ``door="alias"`` (setting a protected alias, which cannot acknowledge) says where
    to request instead.

    Where the alias's gate policy has an ``evaluation`` setting and the version has no evaluation
    young enough (``gates.needs_evaluation``), the evaluation is started once the request commits
    (``governance.evaluation_starter``); the gates are checked again at approval.
    """
    pending = PromotionRequest.objects.filter(
        model_version=version, alias=alias, state=PromotionRequest.State.PENDING
    ).first()
    if pending is not None:
        return pending, False
    alerts = critical_alerts(version)
    if acknowledge_alerts is True:
        unread = []
    else:
        ticked = set() if acknowledge_alerts is False else set(acknowledge_alerts)
        unread = [alert for alert in alerts if alert["id"] not in ticked]
    if unread:
        listed = "; ".join(f"#{alert['id']} {alert['title']}" for alert in unread)
        how = (
            "this door cannot acknowledge them: request the promotion on the version's page or with "
            "POST /api/promotion-requests/ and acknowledge_alerts"
            if door == "alias"
            else "read them, then request again acknowledging them"
        )
        raise ValidationError(
            {"acknowledge_alerts": f"{version} has unresolved critical alerts ({listed}); {how}"}
        )
    gates = gate_results(version, alias)
    request = PromotionRequest.objects.create(
        model_version=version,
        alias=alias,
        reason=reason.strip(),
        requested_by=actor,
        acknowledged_alerts=alerts,
        gate_results=[gate.as_dict() for gate in gates],
        evaluation=judged_evaluation(version, alias) if gates else None,
    )
    # Told once committed; beat's run of the same task catches a request whose enqueue failed.
    transaction.on_commit(_enqueue_notify_approvers)
    # Runs the evaluation the gates read when none is young enough (issue 15), once committed:
    # the job is submitted by runners' registered starter, and its id or why it could not be
    # started is recorded on the request.
    if needs_evaluation(version, policy := gate_policy(model.team_id, alias)):
        assert policy is not None
        setting = dict(policy.evaluation)
        transaction.on_commit(lambda: start_request_evaluation(request.pk, setting))
    record_audit_event(
        actor=actor,
        action="promotion_request.create",
        obj=request,
        team_id=model.team_id,
        after=request_snapshot(request),
    )
    return request, True


def request_snapshot(request: PromotionRequest) -> dict[str, Any]:
    """The request's audit snapshot: its ``audit_fields``, and its gate fields when its alias has
    gates (a request without gates is recorded as it was before issue 15)."""
    out = snapshot(request) or {}
    if request.gate_results or request.override_by_id:
        out |= _gate_fields(request)
    return out


def _gate_fields(request: PromotionRequest) -> dict[str, Any]:
    return {
        "gate_results": request.gate_results,
        "evaluation_id": request.evaluation_id,
        "override_by_id": request.override_by_id,
        "override_reason": request.override_reason,
    }


def do_request_promotion(
    *,
    model_version: ModelVersion,
    alias: str = "production",
    reason: str = "",
    actor: User | None,
    acknowledge_alerts: bool | Collection[int] = False,
) -> PromotionRequest:
    """Ask for ``model_version`` to hold ``alias`` (any name under MLflow's alias rule,
    ``checks.check_alias_name``); the team's model owners and data scientists (and platform
    admins) may ask. An approver other than the requester must approve.

    Raises ValidationError for an invalid alias name, an archived or deleted version or model, a
    version that already holds the alias, a pending request for the same version and alias, or
    unresolved critical alerts on the version without ``acknowledge_alerts``.
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
            model=model,
            version=version,
            alias=alias,
            reason=reason,
            actor=actor,
            acknowledge_alerts=acknowledge_alerts,
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


def _decide(
    request: PromotionRequest,
    state: str,
    decision_reason: str,
    actor: User | None,
    model,
    gates: list[GateResult] | None = None,
) -> None:
    before = request_snapshot(request)
    request.state = state
    request.decided_by = actor
    request.decided_at = timezone.now()
    request.decision_reason = decision_reason.strip()
    fields = ["state", "decided_by", "decided_at", "decision_reason"]
    if gates:
        request.gate_results = [gate.as_dict() for gate in gates]
        fields.append("gate_results")
    request.save(update_fields=fields)
    record_audit_event(
        actor=actor,
        action=_DECISION_EVENTS[state],
        obj=request,
        team_id=model.team_id,
        before=before,
        after=request_snapshot(request),
    )


def do_approve_promotion(
    *,
    promotion_request: PromotionRequest,
    decision_reason: str = "",
    override_reason: str = "",
    actor: User | None,
) -> PromotionRequest:
    """Approve a pending request and move its alias to its version, atomically.

    The approver holds the approver role in the model's team and is not the requester. The
    model row is locked, so concurrent approvals of one alias apply one after the other, and the
    unique (model, alias) constraint keeps one version per alias whatever happens.

    Gates (``actions.gates``), re-evaluated now: while one fails, ValidationError on ``gates``
    naming each failing gate, unless

    - ``override_reason`` is given and no override covering these gates is recorded: the
      override is recorded (``override_by``, ``override_reason``, audited
      ``promotion_request.override``) and the request stays pending for a second approver;
    - an override covering the failing gates is recorded by another approver: the request is
      approved (PermissionDenied when ``actor`` recorded the override: two people must agree).

    A gate that fails since the override was recorded is not covered: a new override is needed.
    """
    with transaction.atomic():
        request, model = _lock_pending_request(promotion_request)
        _ensure_may_decide(actor, request)
        _ensure_pending(request)
        version = request.model_version
        ensure_may_hold_alias(model, version)
        gates = gate_results(version, request.alias)
        failing = failing_gates(gates)
        if failing and not _override_covers(request, gates):
            if not override_reason.strip():
                raise ValidationError(
                    {
                        "gates": f"{describe_failures(gates)}. Approval is refused while a gate fails; "
                        "an approver may override with a written reason (override_reason), which a "
                        "second approver must then approve"
                    }
                )
            _record_override(request, override_reason, actor, model, gates)
            return request
        if failing and actor is not None and actor.pk == request.override_by_id:
            raise PermissionDenied(
                "four eyes on an override: you recorded the override of the failing gates; "
                "a second approver (not the requester) must approve"
            )
        _decide(request, PromotionRequest.State.APPROVED, decision_reason, actor, model, gates)
        move_alias(model, request.alias, version, actor)
    return request


def _gate_key(position: int, kind: str, condition: dict[str, Any] | None) -> tuple[int, str, str]:
    return position, kind, json.dumps(condition, sort_keys=True)


def _override_covers(request: PromotionRequest, gates: list[GateResult]) -> bool:
    """Whether the recorded override was made while each gate failing now failed: compared by
    position in the policy, kind and the condition itself (``metric_bound`` may appear several
    times, so the kind alone would let an override of one bound cover another, and the position
    and kind alone one the policy put in its place since). Gate results recorded before they held
    their condition are compared by position and kind."""
    if request.override_by_id is None:
        return False
    overridden = set()
    for position, gate in enumerate(request.gate_results):
        if gate.get("passed") is False:
            overridden.add(_gate_key(position, gate["kind"], gate.get("condition")))
            if "condition" not in gate:  # recorded before gate results held their condition
                overridden.add((position, gate["kind"], "*"))
    failing = [(position, gate) for position, gate in enumerate(gates) if gate.passed is False]
    return all(
        _gate_key(position, gate.kind, gate.condition) in overridden
        or (position, gate.kind, "*") in overridden
        for position, gate in failing
    )


def _record_override(
    request: PromotionRequest, reason: str, actor: User | None, model, gates: list[GateResult]
) -> None:
    """The first approver's override of the failing ``gates``: recorded and audited; the request
    stays pending for a second approver."""
    before = request_snapshot(request)
    request.override_by = actor
    request.override_reason = reason.strip()
    request.override_at = timezone.now()
    request.gate_results = [gate.as_dict() for gate in gates]
    request.evaluation = judged_evaluation(request.model_version, request.alias)
    request.save(
        update_fields=["override_by", "override_reason", "override_at", "gate_results", "evaluation"]
    )
    record_audit_event(
        actor=actor,
        action="promotion_request.override",
        obj=request,
        team_id=model.team_id,
        before=before,
        after=request_snapshot(request),
    )


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


def _approver_addresses(team_id: int, requester_id: int) -> list[str]:
    """The addresses of ``team_id``'s active approvers other than the requester, sorted. An
    address that is not one (an identity provider's claim is stored as given: a newline in it
    made Django refuse the whole mail) is left out and logged, so the others are still told."""
    emails = (
        get_user_model()
        .objects.filter(is_active=True, memberships__team_id=team_id, memberships__role=TeamRole.APPROVER)
        .exclude(pk=requester_id)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    addresses = []
    for email in sorted(emails):
        try:
            validate_email(email)
        except ValidationError:
            logger.warning("approver address %r is not an email address; not mailed", email)
            continue
        addresses.append(email)
    return addresses


def notify_approvers(*, now: datetime.datetime | None = None, limit: int = 50) -> int:
    """Email the team's approvers (active, with an address, not the requester) each pending
    request they have not been told of; returns how many requests were notified.

    Beat runs it every minute and each new request enqueues it once committed, so a request made
    while the broker was down is still announced. At least once: each request is claimed with a
    row lock (``skip_locked``: two workers never both send it), the mail sent, then
    ``approvers_notified_at`` stamped and audited (``promotion_request.notify``) in the same
    transaction; a crash between the send and the commit sends it again. A mail server that
    refuses leaves the request for the next run, as does one whose mail Django cannot compose
    (logged; the others are still sent). An approver whose address is not one is not mailed
    (``_approver_addresses``). Nobody to tell (no approver with an address) is
    recorded too, so the audit trail shows that nobody was told.
    """
    now = now or timezone.now()
    base = settings.STEWARD_BASE_URL.rstrip("/")
    sent = 0
    ids = list(
        PromotionRequest.objects.filter(
            state=PromotionRequest.State.PENDING, approvers_notified_at__isnull=True
        ).values_list("pk", flat=True)[:limit]
    )
    for request_id in ids:
        with transaction.atomic():
            request = (
                PromotionRequest.objects.select_for_update(skip_locked=True)
                .filter(
                    pk=request_id, state=PromotionRequest.State.PENDING, approvers_notified_at__isnull=True
                )
                .select_related("model_version__model__team", "requested_by")
                .first()
            )
            if request is None:
                continue
            version, team = request.model_version, request.model_version.model.team
            recipients = _approver_addresses(team.pk, request.requested_by_id)
            if recipients:
                alerts = "".join(
                    f"\nUnresolved critical alert #{alert['id']} (acknowledged by the requester): "
                    f"{alert['title']}"
                    for alert in request.acknowledged_alerts
                )
                try:
                    send_mail(
                        subject=f"[Steward] Promotion to decide: {version} to {request.alias}",
                        message=(
                            f"{request.requested_by.get_username()} asks for {version} to become "
                            f"{request.alias} in team {team.name}.\n"
                            f"Reason: {request.reason or '(none given)'}{alerts}\n\n"
                            f"Decide at {base}{reverse('promotion_detail', args=[request.pk])}\n"
                            "You get this mail as an approver of the team."
                        ),
                        from_email=None,
                        recipient_list=recipients,
                    )
                except OSError:  # SMTP refused, unreachable or timed out: the next run tries again
                    continue
                except ValueError:
                    # A header Django refuses (BadHeaderError): this request is left for the next
                    # run, and the others are still sent (an exception here stopped every run).
                    logger.exception(
                        "could not compose the approvers' mail of promotion request #%s", request.pk
                    )
                    continue
            request.approvers_notified_at = now
            request.save(update_fields=["approvers_notified_at"])
            record_audit_event(
                actor=None,
                action="promotion_request.notify",
                obj=request,
                team_id=team.pk,
                after={"notified": recipients, "approvers_notified_at": now.isoformat()},
            )
            sent += 1
    return sent

"""Four-eyes promotion in the web UI: request from a model version's page, decide on the list.

The approver's question comes first: the promotions page opens on the requests awaiting their
decision. Each button calls an action in ``governance.actions.promotions``; a refusal re-renders
with the reason and its status (403, 400), never a 500. Who may see which button is asked of
``governance.permissions``, the rules the actions enforce.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from governance.actions.gates import gate_results, judged_evaluation
from governance.actions.promotions import (
    critical_alerts,
    do_approve_promotion,
    do_cancel_promotion,
    do_reject_promotion,
    do_request_promotion,
)
from governance.audit.proofs import may_audit
from governance.charts import format_number
from governance.compare import compare_model_versions
from governance.forms import PromotionDecisionForm, PromotionRequestForm
from governance.models import Evaluation, ModelAlias, ModelVersion, PromotionRequest
from governance.permissions import (
    may_cancel_promotion,
    may_request_promotion,
    promotion_decision_refusal,
)
from governance.queries import promotions_awaiting_decision
from governance.views.evaluations import comparison_rows, metric_rows
from governance.views.helpers import form_view, paginate, visible_or_404

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

RELATIONS = ("model_version__model__team", "requested_by", "decided_by", "override_by", "evaluation")


def promotion_panel(user: AbstractBaseUser | AnonymousUser, version: ModelVersion) -> dict[str, Any]:
    """Context for ``includes/promotions_panel.html`` on a model version's page."""
    alerts = critical_alerts(version)
    return {
        "aliases": ModelAlias.objects.restrict(user)
        .filter(model=version.model_id)
        .select_related("model_version"),
        "promotion_requests": PromotionRequest.objects.restrict(user)
        .filter(model_version=version)
        .select_related(*RELATIONS)[:20],
        "may_request_promotion": may_request_promotion(user, version.model.team_id),
        "promotion_form": PromotionRequestForm(critical_alerts=alerts),
        "critical_alerts": alerts,
    }


@login_required
def promotion_request_create(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask for model version ``pk`` to hold an alias; GET shows the form on its own page."""
    version = visible_or_404(request, ModelVersion.objects.select_related("model"), pk)
    alerts = critical_alerts(version)
    return form_view(
        request,
        PromotionRequestForm(request.POST or None, critical_alerts=alerts),
        lambda data: do_request_promotion(
            model_version=version,
            alias=data["alias"],
            reason=data["reason"],
            actor=request.user,
            # The boxes ticked: an alert raised after the page was shown is not among them.
            acknowledge_alerts=data.get("acknowledge_alerts", []),
        ),
        success=lambda promotion: reverse("promotion_detail", args=[promotion.pk]),
        success_message=lambda promotion: (
            f"Requested {version} to {promotion.alias}; an approver must now decide."
        ),
        template="governance/promotion_request_form.html",
        context=lambda: {
            "section": "models",
            "title": f"Promote {version}",
            "submit_label": "Request promotion",
            "cancel_url": version.get_absolute_url(),
            "critical_alerts": alerts,
        },
    )


@login_required
def promotion_list(request: HttpRequest) -> HttpResponse:
    """Requests awaiting the user's decision first, then the user's own pending ones, then all."""
    user = request.user
    visible = PromotionRequest.objects.restrict(user).select_related(*RELATIONS)
    pending = visible.filter(state=PromotionRequest.State.PENDING)
    context = {
        "section": "promotions",
        "awaiting": promotions_awaiting_decision(user).select_related(*RELATIONS),
        "mine": pending.filter(requested_by=user),
        "page_obj": paginate(request, visible),
    }
    return render(request, "governance/promotion_list.html", context)


def _detail_page(
    request: HttpRequest, promotion: PromotionRequest, form: forms.Form | None = None, status: int = 200
) -> HttpResponse:
    user = request.user
    is_pending = promotion.state == PromotionRequest.State.PENDING
    current = (
        ModelAlias.objects.filter(model=promotion.model_version.model_id, name=promotion.alias)
        .select_related("model_version__model", "model_version__training_dataset_version__dataset")
        .first()
    )
    candidate = promotion.model_version
    holder = current.model_version if current and current.model_version_id != candidate.pk else None
    # Gates (issue 15): as they stand now while pending (approval re-evaluates them), else as
    # they were at the decision.
    gates = (
        [gate.as_dict() for gate in gate_results(candidate, promotion.alias)]
        if is_pending
        else promotion.gate_results
    )
    gates_fail = any(gate["passed"] is False for gate in gates)
    evaluation = judged_evaluation(candidate, promotion.alias) if is_pending else promotion.evaluation
    job_evaluation = (
        Evaluation.objects.filter(job_id=promotion.evaluation_job_id).first()
        if promotion.evaluation_job_id
        else None
    )
    context = {
        "job_evaluation": job_evaluation,
        "gates": gates,
        "gates_fail": gates_fail,
        "snapshot_gates": promotion.gate_results if is_pending else [],
        "evaluation": evaluation,
        "evaluation_metrics": metric_rows(evaluation.results) if evaluation else [],
        "evaluation_comparison": comparison_rows(evaluation) if evaluation else [],
        "awaits_second_approver": is_pending and promotion.override_by_id is not None,
        "section": "promotions",
        "promotion": promotion,
        "current": current,
        # What an approver decides on: the candidate beside the version the alias holds now.
        "holder": holder,
        # Without a holder, the candidate's own figures (compared with itself: one column shown).
        "comparison": _shown(compare_model_versions(candidate, holder or candidate)),
        "candidate_alerts": _open_alerts(candidate, user),
        "holder_alerts": _open_alerts(holder, user) if holder else [],
        "candidate_check": _latest_check(candidate, user),
        "holder_check": _latest_check(holder, user) if holder else None,
        # Which buttons to show; the actions ask the same rules again inside their transaction.
        "may_decide": is_pending and not promotion_decision_refusal(user, promotion),
        "may_cancel": is_pending and may_cancel_promotion(user, promotion),
        "form": form or PromotionDecisionForm(show_override=gates_fail),
        # The evidence pack carries inclusion proofs: for those who may read the tree (issue 12).
        "may_download_evidence": may_audit(user),
    }
    return render(request, "governance/promotion_detail.html", context, status=status)


def _shown(comparison: dict[str, Any]) -> dict[str, Any]:
    """The comparison with its metrics as people read them: floats to four significant digits
    (``governance.charts.format_number``, as the charts write them), not the 16 digits a
    float's repr carries; whether a row differs is still decided on the values recorded."""

    def shown(value: Any) -> Any:
        return format_number(value) if isinstance(value, float) else value

    metrics = [dict(row, a=shown(row["a"]), b=shown(row["b"])) for row in comparison["metrics"]]
    return dict(comparison, metrics=metrics)


def _open_alerts(version, user) -> list:
    """The version's unresolved alerts the user may see, worst first (through the reverse
    accessor: governance does not import monitoring)."""
    alerts = version.alerts.restrict(user).unresolved().select_related("model_version__model", "owner")
    return list(alerts.order_by("severity", "-last_seen_at")[:10])


def _latest_check(version, user):
    """The version's newest finished drift check the user may see, for its verdicts (through the
    reverse accessor: governance does not import monitoring); None without one."""
    checks = version.drift_checks.restrict(user).filter(state="succeeded")
    return checks.order_by("-finished_at", "-id").first()


@login_required
def promotion_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One request: the version, the alias and who holds it now, the reasons, the decision."""
    return _detail_page(
        request, visible_or_404(request, PromotionRequest.objects.select_related(*RELATIONS), pk)
    )


PAST = {"approve": "approved", "reject": "rejected", "cancel": "cancelled"}


def _decide(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    promotion = visible_or_404(request, PromotionRequest.objects.select_related(*RELATIONS), pk)
    if request.method != "POST":
        return redirect("promotion_detail", pk=pk)

    def run(data: dict[str, Any]) -> PromotionRequest:
        reason = data.get("reason", "")
        if verb == "approve":
            return do_approve_promotion(
                promotion_request=promotion,
                decision_reason=reason,
                override_reason=data.get("override_reason", ""),
                actor=request.user,
            )
        if verb == "reject":
            return do_reject_promotion(
                promotion_request=promotion, decision_reason=reason, actor=request.user
            )
        return do_cancel_promotion(promotion_request=promotion, actor=request.user)

    def refused(form: forms.Form, status: int) -> HttpResponse:
        promotion.refresh_from_db()
        return _detail_page(request, promotion, form, status)

    moved = f"; {promotion.model_version} now holds {promotion.alias}" if verb == "approve" else ""
    return form_view(
        request,
        PromotionDecisionForm(request.POST),
        run,
        success=lambda done: redirect("promotion_detail", pk=pk),
        success_message=lambda done: (
            f"Override of the failing gates recorded on promotion request #{promotion.pk}; a second "
            "approver must now approve."
            if done.state == PromotionRequest.State.PENDING
            else f"Promotion request #{promotion.pk} {PAST[verb]}{moved}."
        ),
        render_page=refused,
    )


@login_required
def promotion_approve(request: HttpRequest, pk: int) -> HttpResponse:
    """POST approves (an approver of the team, not the requester); the alias moves at once."""
    return _decide(request, pk, "approve")


@login_required
def promotion_reject(request: HttpRequest, pk: int) -> HttpResponse:
    """POST rejects with the reason given (required)."""
    return _decide(request, pk, "reject")


@login_required
def promotion_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """POST withdraws the requester's own pending request."""
    return _decide(request, pk, "cancel")

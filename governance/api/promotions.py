"""Four-eyes promotion through the API: request, approve, reject, cancel (``governance.actions``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from governance.actions.checks import check_alias_name
from governance.actions.promotions import (
    do_approve_promotion,
    do_cancel_promotion,
    do_reject_promotion,
    do_request_promotion,
)
from governance.api.base import (
    RestrictedCreateViewSet,
    RestrictedPrimaryKeyRelatedField,
    UsernameField,
)
from governance.filtersets import RestrictedFilterSet
from governance.models import ModelVersion, PromotionRequest


def _alias_rule(value: str) -> None:
    """MLflow's alias rule (``actions.checks.check_alias_name``) as a serializer validator."""
    try:
        check_alias_name(value)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.message_dict["alias"]) from exc


@extend_schema_field(
    {"oneOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "integer", "minimum": 1}}]}
)
class AlertAcknowledgementField(serializers.Field):
    """``acknowledge_alerts``: true (every unresolved critical alert, as they are now), false, or
    the ids of the alerts the client read (``open_promotion_request``: an alert raised after the
    list was read is refused by name, not acknowledged unseen). Booleans also as DRF's
    ``BooleanField`` spells them ("true", "0"...); anything else is a 400."""

    default_error_messages = {
        "invalid": "true, false, or a list of alert ids (integers); got {value!r}",
    }

    def to_internal_value(self, data: Any) -> bool | list[int]:
        if isinstance(data, bool):
            return data
        if isinstance(data, str) and data in serializers.BooleanField.TRUE_VALUES:
            return True
        if isinstance(data, str) and data in serializers.BooleanField.FALSE_VALUES:
            return False
        # A bool is an int in Python: [true] is not alert #1.
        if isinstance(data, list) and all(
            isinstance(item, int) and not isinstance(item, bool) and item > 0 for item in data
        ):
            return list(dict.fromkeys(data))
        self.fail("invalid", value=data)
        raise AssertionError  # fail() raises; for the type checker

    def to_representation(self, value: Any) -> Any:
        return value


class PromotionRequestSerializer(serializers.ModelSerializer):
    model_version = RestrictedPrimaryKeyRelatedField(queryset=ModelVersion.objects.all())
    model = serializers.IntegerField(source="model_version.model_id", read_only=True)
    model_name = serializers.CharField(source="model_version.model.name", read_only=True)
    version = serializers.IntegerField(source="model_version.version", read_only=True)
    alias = serializers.CharField(default="production", max_length=255, validators=[_alias_rule])
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    acknowledge_alerts = AlertAcknowledgementField(
        write_only=True,
        default=False,
        help_text="Request a version with unresolved critical alerts anyway (they are recorded): true, "
        "or the ids of the alerts read, so that one raised since is refused by name.",
    )
    requested_by = UsernameField()
    decided_by = UsernameField()
    gate_results = serializers.JSONField(
        read_only=True,
        help_text='Present when the alias has promotion gates: [{"kind", "passed", "detail", "condition"}] '
        "at the last check (request, override or approval); condition: the policy's condition judged.",
    )
    override_by = UsernameField(help_text="Present when the alias has gates: who overrode failing gates.")
    override_reason = serializers.CharField(read_only=True)
    evaluation_job_id = serializers.IntegerField(
        read_only=True,
        help_text="Present when the alias has gates: the evaluation job the request started (its gate "
        "policy's evaluation setting), or null.",
    )
    evaluation_job_error = serializers.CharField(
        read_only=True, help_text="Present when the alias has gates: why the evaluation could not be started."
    )

    class Meta:
        model = PromotionRequest
        fields = [
            "id",
            "model_version",
            "model",
            "model_name",
            "version",
            "alias",
            "state",
            "reason",
            "acknowledge_alerts",
            "acknowledged_alerts",
            "requested_by",
            "created_at",
            "decided_by",
            "decided_at",
            "decision_reason",
            "gate_results",
            "evaluation",
            "override_by",
            "override_reason",
            "override_at",
            "evaluation_job_id",
            "evaluation_job_error",
        ]
        read_only_fields = [
            "state",
            "acknowledged_alerts",
            "created_at",
            "decided_at",
            "decision_reason",
            "evaluation",
            "override_at",
        ]

    GATE_FIELDS = (
        "gate_results",
        "evaluation",
        "override_by",
        "override_reason",
        "override_at",
        "evaluation_job_id",
        "evaluation_job_error",
    )

    def to_representation(self, instance: PromotionRequest) -> dict[str, Any]:
        """The gate fields only for a request whose alias has gates: a team without gates sees the
        answer it saw before issue 15."""
        data = super().to_representation(instance)
        if not instance.gate_results and instance.override_by_id is None:
            for name in self.GATE_FIELDS:
                data.pop(name, None)
        return data


class DecisionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class ApprovalSerializer(DecisionSerializer):
    override_reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Override failing promotion gates, in writing: the first approver's override is "
        "recorded and the request stays pending until a second approver approves.",
    )


class RejectionSerializer(serializers.Serializer):
    reason = serializers.CharField(help_text="Why; required.")


class PromotionRequestFilterSet(RestrictedFilterSet):
    class Meta:
        model = PromotionRequest
        fields = ["state", "alias", "model_version"]


class PromotionRequestViewSet(RestrictedCreateViewSet):
    """Requests to move an alias (any name; the team's protected ones need this) to a model version.

    The team's model owners and data scientists request; an approver of the team other than the
    requester approves (which moves the alias) or rejects with a reason; the requester cancels.
    """

    queryset = PromotionRequest.objects.select_related(
        "model_version__model", "requested_by", "decided_by", "override_by"
    )
    serializer_class = PromotionRequestSerializer
    filterset_class = PromotionRequestFilterSet

    def perform_create(self, serializer):
        data = serializer.validated_data
        request = do_request_promotion(
            model_version=data["model_version"],
            alias=data["alias"],
            reason=data["reason"],
            actor=self.request.user,
            acknowledge_alerts=data["acknowledge_alerts"],
        )
        serializer.instance = self.refetch(request)

    def _answer(self, promotion: PromotionRequest) -> Response:
        return Response(PromotionRequestSerializer(self.refetch(promotion)).data)

    def _decide(self, request, reasons: type[serializers.Serializer], decide: Callable[..., Any]) -> Response:
        """Approve or reject: the reason checked by ``reasons``, then ``decide(...)`` (an action)."""
        promotion = self.get_object()
        data = self.validated(request, reasons)
        extra = {"override_reason": data["override_reason"]} if "override_reason" in data else {}
        decide(promotion_request=promotion, decision_reason=data["reason"], actor=request.user, **extra)
        return self._answer(promotion)

    @extend_schema(request=ApprovalSerializer, responses={200: PromotionRequestSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Approve (the alias moves). While a promotion gate fails: 400 naming each failing gate,
        unless ``override_reason`` is given, which records the override (still pending) for a
        second approver to approve."""
        return self._decide(request, ApprovalSerializer, do_approve_promotion)

    @extend_schema(request=RejectionSerializer, responses={200: PromotionRequestSerializer})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._decide(request, RejectionSerializer, do_reject_promotion)

    @extend_schema(request=None, responses={200: PromotionRequestSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        promotion = self.get_object()
        do_cancel_promotion(promotion_request=promotion, actor=request.user)
        return self._answer(promotion)

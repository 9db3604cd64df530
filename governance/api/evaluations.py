"""Evaluations (read-only) and promotion gate policies through the API (issue 15).

Evaluations are written by the evaluation job and the MLflow door through
``actions.evaluations.do_record_evaluation``, never here. Gate policies are set by the team's
managers with ``PUT /api/gate-policies/set/`` (``actions.gates.do_set_gate_policy``).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from governance.actions.gates import do_set_gate_policy
from governance.api.base import RestrictedPrimaryKeyRelatedField, RestrictedReadOnlyViewSet, UsernameField
from governance.filtersets import RestrictedFilterSet
from governance.models import Evaluation, PromotionGatePolicy, Team


class EvaluationSerializer(serializers.ModelSerializer):
    model = serializers.IntegerField(source="model_version.model_id", read_only=True)
    model_name = serializers.CharField(source="model_version.model.name", read_only=True)
    version = serializers.IntegerField(source="model_version.version", read_only=True)
    created_by = UsernameField()
    spec = serializers.JSONField(read_only=True, help_text="The EvaluationSpec (runners.evaluation).")
    results = serializers.JSONField(
        read_only=True,
        help_text="EvaluationResult: metrics {name: {value, ci_low, ci_high, reason}}, curves, slices, "
        "fairness, robustness, importance.",
    )
    champion_results = serializers.JSONField(read_only=True, allow_null=True)
    comparison = serializers.JSONField(
        read_only=True,
        allow_null=True,
        help_text="Per metric: candidate, champion, difference, ci_low, ci_high, is_worse, is_better.",
    )

    class Meta:
        model = Evaluation
        fields = [
            "id",
            "team",
            "model_version",
            "model",
            "model_name",
            "version",
            "dataset_version",
            "job_id",
            "source",
            "spec",
            "results",
            "champion_version",
            "champion_results",
            "comparison",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class EvaluationFilterSet(RestrictedFilterSet):
    class Meta:
        model = Evaluation
        fields = ["model_version", "dataset_version", "source"]


class EvaluationViewSet(RestrictedReadOnlyViewSet):
    """Evaluations of model versions (issue 15), newest first; ``?model_version=<id>``. A
    ``self_reported`` one was logged with the MLflow client and never satisfies a promotion gate."""

    queryset = Evaluation.objects.select_related("model_version__model", "created_by")
    serializer_class = EvaluationSerializer
    filterset_class = EvaluationFilterSet


class GatePolicySerializer(serializers.ModelSerializer):
    team = RestrictedPrimaryKeyRelatedField(queryset=Team.objects.all())
    alias = serializers.CharField(max_length=255)
    conditions = serializers.JSONField(
        help_text='[{"kind": "metric_bound", "metric": "f1", "min": 0.5}, {"kind": '
        '"fairness_ratio_at_least", "value": 0.8}, ...]; kinds: metric_bound, not_worse_than_champion, '
        "fairness_ratio_at_least, robustness_drop_at_most, no_open_critical_alert, evaluation_max_age_days, "
        "pii_policy_satisfied."
    )
    evaluation = serializers.JSONField(
        required=False,
        default=dict,
        help_text="The evaluation a promotion request starts when the candidate has none young enough: "
        '{"dataset": <dataset id: its newest version>, "task": "classification", "target": "label", '
        '"positive_label": "1", "sensitive_attributes": [...], "slice_columns": [...]}; {}: none.',
    )
    updated_by = UsernameField()

    class Meta:
        model = PromotionGatePolicy
        fields = ["id", "team", "alias", "conditions", "evaluation", "updated_by", "updated_at"]
        read_only_fields = ["updated_at"]
        # Setting an existing (team, alias) replaces its conditions: the action decides, not a
        # uniqueness check here.
        validators: list = []


class GatePolicyFilterSet(RestrictedFilterSet):
    class Meta:
        model = PromotionGatePolicy
        fields = ["team", "alias"]


class GatePolicyViewSet(RestrictedReadOnlyViewSet):
    """Promotion gates per team and protected alias (issue 15): read by the team, set by its
    managers (model owners, platform admins)."""

    queryset = PromotionGatePolicy.objects.select_related("team", "updated_by")
    serializer_class = GatePolicySerializer
    filterset_class = GatePolicyFilterSet

    @extend_schema(request=GatePolicySerializer, responses={200: GatePolicySerializer})
    @action(detail=False, methods=["put"], url_path="set")
    def set_policy(self, request):
        """Create or replace the gates of ``alias`` in ``team`` (an empty list: four eyes only)."""
        data = self.validated(request)
        policy = do_set_gate_policy(
            team=data["team"],
            alias=data["alias"],
            conditions=data["conditions"],
            evaluation=data.get("evaluation"),
            actor=request.user,
        )
        return Response(GatePolicySerializer(self.refetch(policy)).data)

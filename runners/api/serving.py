"""Online prediction's API (issue 17): predict by alias or version, serving policies, prediction
tokens. Thin: parse, call ``runners.serving.actions``, answer."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.actions.tokens import do_create_prediction_token
from governance.api.base import RestrictedCreateViewSet, RestrictedPrimaryKeyRelatedField, UsernameField
from governance.models import ApiToken, ModelVersion, RegisteredModel
from governance.views.helpers import visible_model_or_404
from runners.models import ServingPolicy
from runners.serving import actions, service, supervisor
from runners.serving.rows import RowsError

TEAM = OpenApiParameter(
    "team", str, description="The team's slug, when several of your teams have a model of this name."
)


class PredictRequestSerializer(serializers.Serializer):
    rows = serializers.ListField(child=serializers.DictField(), required=False)
    dataframe_records = serializers.ListField(child=serializers.DictField(), required=False)


class PredictAnswerSerializer(serializers.Serializer):
    predictions = serializers.ListField(child=serializers.JSONField())
    prediction_ids = serializers.ListField(child=serializers.UUIDField())
    model_version = serializers.IntegerField()
    served_by = serializers.ChoiceField(choices=[service.IN_PROCESS, service.MODEL_SERVER])
    alias = serializers.CharField()
    is_canary = serializers.BooleanField()


class _PredictView(APIView):
    """Shared by both predict endpoints: the one door prediction tokens may use."""

    accepts_prediction_tokens = True

    def predict(self, request, name: str, **route: Any) -> Response:
        unknown = sorted(set(request.query_params) - {"team"})
        if unknown:
            return Response(
                {"detail": f"unknown query parameter(s): {', '.join(unknown)}; known: team"}, status=400
            )
        token = request.auth if isinstance(request.auth, ApiToken) else None
        try:
            answer = actions.do_predict(
                name=name,
                team_slug=request.query_params.get("team"),
                body=request.data,
                actor=request.user,
                token=token,
                **route,
            )
        except RowsError as exc:
            return Response({"rows": [str(exc)]}, status=exc.status)
        except supervisor.ServerError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(answer.as_json())


class PredictByAliasView(_PredictView):
    @extend_schema(
        operation_id="predict_by_alias",
        request=PredictRequestSerializer,
        responses={200: PredictAnswerSerializer},
        parameters=[TEAM],
    )
    def post(self, request, name: str, alias: str) -> Response:
        """Predict with the version ``alias`` points at now (its canary and shadow apply):
        ``{"rows": [{column: value}, ...]}`` (or MLflow's ``dataframe_records``)."""
        return self.predict(request, name, alias=alias)


class PredictByVersionView(_PredictView):
    @extend_schema(
        operation_id="predict_by_version",
        request=PredictRequestSerializer,
        responses={200: PredictAnswerSerializer},
        parameters=[TEAM],
    )
    def post(self, request, name: str, version: int) -> Response:
        """Predict with version ``version`` of the model."""
        return self.predict(request, name, version_number=version)


class ServingPolicySerializer(serializers.ModelSerializer):
    registered_model = RestrictedPrimaryKeyRelatedField(queryset=RegisteredModel.objects.all())
    canary_version = RestrictedPrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(), allow_null=True, required=False
    )
    shadow_version = RestrictedPrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(), allow_null=True, required=False
    )
    canary_percent = serializers.IntegerField(min_value=0, max_value=100, required=False, default=0)
    alias = serializers.CharField(max_length=255)
    updated_by = UsernameField()

    class Meta:
        model = ServingPolicy
        fields = [
            "id",
            "registered_model",
            "alias",
            "canary_version",
            "canary_percent",
            "shadow_version",
            "updated_by",
            "updated_at",
        ]
        read_only_fields = ["id", "updated_by", "updated_at"]
        validators: list[Any] = []  # one policy per alias: the action updates it in place


class ServingPolicyViewSet(RestrictedCreateViewSet):
    """Serving policies: a canary version answering a share of an alias's requests, a shadow
    version scoring them all unseen. POST sets (creates or replaces) the alias's policy."""

    queryset = ServingPolicy.objects.select_related("updated_by")
    serializer_class = ServingPolicySerializer
    filterset_fields = ["registered_model", "alias"]

    def create(self, request, *args, **kwargs):
        data = self.validated(request)
        policy = actions.do_set_serving_policy(actor=request.user, **data)
        return Response(ServingPolicySerializer(self.refetch(policy)).data, status=status.HTTP_201_CREATED)


class PredictionTokenRequestSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class PredictionTokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    registered_model = serializers.IntegerField(source="registered_model_id")
    expires_at = serializers.DateTimeField(allow_null=True)
    token = serializers.CharField(help_text="The secret, shown this once.")


class PredictionTokenView(APIView):
    @extend_schema(request=PredictionTokenRequestSerializer, responses={201: PredictionTokenSerializer})
    def post(self, request, pk: int) -> Response:
        """Create a token that may only predict with this model (its model owners only)."""
        model = visible_model_or_404(request, pk)
        body = PredictionTokenRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, secret = do_create_prediction_token(
            registered_model=model, actor=request.user, **body.validated_data
        )
        token.token = secret  # type: ignore[attr-defined]
        return Response(PredictionTokenSerializer(token).data, status=status.HTTP_201_CREATED)

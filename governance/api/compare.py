"""``GET /api/model-versions/compare/?a=<id>&b=<id>``: two versions side by side (issue 9)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.compare import compare_model_versions
from governance.keyset import MAX_BIGINT
from governance.models import ModelVersion
from governance.permissions import VIEW, restrict


class CompareQuerySerializer(serializers.Serializer):
    a = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT, help_text="A model version id.")
    b = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT, help_text="Another model version id.")


class ModelVersionCompareView(APIView):
    """Metrics, parameters (training spec), training data and signature of two model versions,
    each row with a ``differs`` flag. Either version invisible to the user is a 404."""

    @extend_schema(
        parameters=[CompareQuerySerializer],
        responses={200: OpenApiTypes.OBJECT, 404: OpenApiResponse(description="No such model version")},
    )
    def get(self, request: Request) -> Response:
        query = CompareQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        unknown = sorted(set(request.query_params) - {"a", "b"})
        if unknown:
            return Response({"detail": f"unknown query parameter(s): {', '.join(unknown)}; known: a, b"}, 400)
        versions = restrict(
            ModelVersion.objects.select_related("model", "training_dataset_version__dataset"),
            request.user,
            VIEW,
        )
        a = get_object_or_404(versions, pk=query.validated_data["a"])
        b = get_object_or_404(versions, pk=query.validated_data["b"])
        return Response(compare_model_versions(a, b))

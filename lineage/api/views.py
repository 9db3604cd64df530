from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from lineage.nodes import NodeRef
from lineage.queries import MAX_DEPTH, walk


class LineageQuerySerializer(serializers.Serializer):
    node = serializers.CharField(help_text='"<type>:<id>", e.g. "model_version:3"')
    direction = serializers.ChoiceField(choices=["upstream", "downstream", "both"], default="both")
    depth = serializers.IntegerField(min_value=1, max_value=MAX_DEPTH, default=3)

    def validate_node(self, value):
        try:
            return NodeRef.parse(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class LineageView(APIView):
    """Upstream and/or downstream of a dataset version, job or model version, to ``depth`` hops."""

    @extend_schema(
        parameters=[
            OpenApiParameter("node", str, required=True, description='"<type>:<id>"'),
            OpenApiParameter("direction", str, enum=["upstream", "downstream", "both"]),
            OpenApiParameter("depth", int),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        query = LineageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        try:
            graph = walk(request.user, params["node"], params["direction"], params["depth"])
        except LookupError as exc:
            raise NotFound(str(exc)) from exc
        return Response(graph)

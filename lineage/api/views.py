from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from lineage.impact import impact
from lineage.marquez import marquez_graph, parse_node_id
from lineage.nodes import NODE_MODELS, NodeRef
from lineage.queries import MAX_DEPTH, walk


class NodeField(serializers.CharField):
    def to_internal_value(self, data):
        try:
            return NodeRef.parse(super().to_internal_value(data))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class LineageQuerySerializer(serializers.Serializer):
    node = NodeField(help_text='"<type>:<id>", e.g. "model_version:3"')
    direction = serializers.ChoiceField(choices=["upstream", "downstream", "both"], default="both")
    depth = serializers.IntegerField(min_value=1, max_value=MAX_DEPTH, default=3)
    types = serializers.CharField(required=False, help_text="Comma-separated node types to keep")

    def validate_types(self, value: str) -> frozenset[str]:
        types = frozenset(t.strip() for t in value.split(",") if t.strip())
        unknown = sorted(types - set(NODE_MODELS))
        if unknown:
            raise serializers.ValidationError(
                f"unknown node type {unknown[0]!r}; one of {', '.join(NODE_MODELS)}"
            )
        return types


class LineageView(APIView):
    """Upstream and/or downstream of any lineage node, to ``depth`` hops, only what you may view."""

    @extend_schema(
        parameters=[
            OpenApiParameter("node", str, required=True, description='"<type>:<id>"'),
            OpenApiParameter("direction", str, enum=["upstream", "downstream", "both"]),
            OpenApiParameter("depth", int, description=f"1 to {MAX_DEPTH}"),
            OpenApiParameter("types", str, description="comma-separated node types to keep"),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        query = LineageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        try:
            graph = walk(
                request.user, params["node"], params["direction"], params["depth"], types=params.get("types")
            )
        except LookupError as exc:
            raise NotFound(str(exc)) from exc
        return Response(graph)


class ImpactQuerySerializer(serializers.Serializer):
    node = NodeField(help_text='"<type>:<id>", e.g. "dataset_version:3"')
    depth = serializers.IntegerField(min_value=1, max_value=MAX_DEPTH, default=MAX_DEPTH)


class ImpactView(APIView):
    """What depends on a node: runs, model versions, aliases, monitors, open alerts, datasets."""

    @extend_schema(
        parameters=[
            OpenApiParameter("node", str, required=True, description='"<type>:<id>"'),
            OpenApiParameter("depth", int, description=f"1 to {MAX_DEPTH} (default {MAX_DEPTH})"),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        query = ImpactQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            report = impact(request.user, query.validated_data["node"], query.validated_data["depth"])
        except LookupError as exc:
            raise NotFound(str(exc)) from exc
        return Response(report)


class MarquezQuerySerializer(serializers.Serializer):
    nodeId = serializers.CharField(help_text='"dataset:steward:dataset_version:3" or "dataset_version:3"')
    depth = serializers.IntegerField(min_value=1, max_value=MAX_DEPTH, default=MAX_DEPTH)

    def validate_nodeId(self, value: str) -> NodeRef:
        try:
            return parse_node_id(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class MarquezLineageView(APIView):
    """Marquez's ``GET /api/v1/lineage``: the graph around a node, both ways, in Marquez's shape
    (id mapping: ``lineage/marquez.py``)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("nodeId", str, required=True, description='"dataset:steward:<type>:<id>"'),
            OpenApiParameter("depth", int, description=f"1 to {MAX_DEPTH} (default {MAX_DEPTH})"),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        query = MarquezQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            return Response(
                marquez_graph(request.user, query.validated_data["nodeId"], query.validated_data["depth"])
            )
        except LookupError as exc:
            raise NotFound(str(exc)) from exc

from django.db.models import Prefetch
from django.http import FileResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from governance.actions.registry import (
    do_create_dataset,
    do_create_registered_model,
    do_register_dataset_version,
    resolve_import_path,
)
from governance.actions.teams import do_create_team
from governance.api.base import RestrictedCreateViewSet, RestrictedReadOnlyViewSet
from governance.api.serializers import (
    DatasetSerializer,
    DatasetVersionCreateSerializer,
    DatasetVersionSerializer,
    ModelVersionSerializer,
    RegisteredModelSerializer,
    TeamSerializer,
)
from governance.artifacts import staged_upload
from governance.filtersets import (
    DatasetFilterSet,
    DatasetVersionFilterSet,
    ModelVersionFilterSet,
    RegisteredModelFilterSet,
)
from governance.models import (
    Dataset,
    DatasetVersion,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
    Team,
)
from governance.queries import by_name_with_versions


class TeamViewSet(RestrictedCreateViewSet):
    queryset = Team.objects.all()
    serializer_class = TeamSerializer

    def perform_create(self, serializer):
        serializer.instance = do_create_team(
            name=serializer.validated_data["name"],
            description=serializer.validated_data.get("description", ""),
            actor=self.request.user,
        )


class DatasetViewSet(RestrictedCreateViewSet):
    queryset = by_name_with_versions(Dataset.objects.select_related("created_by"))
    serializer_class = DatasetSerializer
    filterset_class = DatasetFilterSet

    def perform_create(self, serializer):
        data = serializer.validated_data
        dataset = do_create_dataset(
            team=data["team"],
            name=data["name"],
            description=data.get("description", ""),
            actor=self.request.user,
        )
        serializer.instance = self.refetch(dataset)


class DatasetVersionViewSet(RestrictedCreateViewSet):
    queryset = DatasetVersion.objects.select_related("dataset", "created_by")
    serializer_class = DatasetVersionSerializer
    filterset_class = DatasetVersionFilterSet
    ordering = ("-created_at", "-id")  # newest first; unchanging, unique keys for cursor pages
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    action_serializers = {"create": DatasetVersionCreateSerializer}

    @extend_schema(request=DatasetVersionCreateSerializer, responses={201: DatasetVersionSerializer})
    def create(self, request, *args, **kwargs):
        data = self.validated(request)
        common = {"dataset": data["dataset"], "description": data["description"], "actor": request.user}
        if data.get("file"):
            with staged_upload(data["file"]) as path:
                version = do_register_dataset_version(
                    file_path=path, filename=data["file"].name, source=DatasetVersion.Source.UPLOAD, **common
                )
        else:
            path = resolve_import_path(data["path"])
            version = do_register_dataset_version(
                file_path=path, filename=path.name, source=DatasetVersion.Source.PATH, **common
            )
        return Response(DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(description="The file")})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        version = self.get_object()
        name = version.original_filename or f"{version.dataset.name}-v{version.version}.{version.format}"
        return FileResponse(version.path.open("rb"), as_attachment=True, filename=name)


class RegisteredModelViewSet(RestrictedCreateViewSet):
    queryset = by_name_with_versions(RegisteredModel.objects.select_related("owner"))
    serializer_class = RegisteredModelSerializer
    filterset_class = RegisteredModelFilterSet

    def filter_restricted(self, queryset):
        return queryset.prefetch_related(_visible_aliases(self.request.user, "model_version"))

    def perform_create(self, serializer):
        data = serializer.validated_data
        model = do_create_registered_model(
            team=data["team"],
            name=data["name"],
            owner=data.get("owner") or self.request.user,
            description=data.get("description", ""),
            actor=self.request.user,
        )
        serializer.instance = self.refetch(model)


class ModelVersionViewSet(RestrictedReadOnlyViewSet):
    queryset = ModelVersion.objects.select_related("model", "created_by")
    serializer_class = ModelVersionSerializer
    filterset_class = ModelVersionFilterSet
    ordering = ("-created_at", "-id")  # newest first; unchanging, unique keys for cursor pages

    def filter_restricted(self, queryset):
        return queryset.prefetch_related(_visible_aliases(self.request.user))


def _visible_aliases(user, *related: str) -> Prefetch:
    """Prefetch of the aliases ``user`` may view (one query for a whole page)."""
    return Prefetch("aliases", queryset=ModelAlias.objects.restrict(user).select_related(*related))

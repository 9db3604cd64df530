"""Code projects and code versions (issue 17): list, create, read files, compare two versions.

Every write goes through ``runners.code_versions``' actions; every read through the restricted
querysets of ``RestrictedViewSetMixin`` (another team's project or version is a 404).
"""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from governance.api.base import RestrictedCreateViewSet, RestrictedPrimaryKeyRelatedField, UsernameField
from governance.api.serializers import UNTRIMMED
from governance.keyset import MAX_BIGINT
from governance.models import Team
from governance.permissions import VIEW, restrict
from governance.queries import by_name_with_versions
from runners import code_versions
from runners.filtersets import CodeProjectFilterSet, CodeVersionFilterSet
from runners.models import CodeProject, CodeVersion


def artifact_changed(exc: code_versions.ArtifactChanged) -> Response:
    """409: the stored archive no longer matches its row (nothing shown from it)."""
    return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)


class CodeProjectSerializer(serializers.ModelSerializer):
    team = RestrictedPrimaryKeyRelatedField(queryset=Team.objects.all())
    created_by = UsernameField()
    latest_version = serializers.SerializerMethodField()
    version_count = serializers.SerializerMethodField()

    class Meta:
        model = CodeProject
        fields = [
            "id",
            "team",
            "name",
            "description",
            "created_by",
            "created_at",
            "latest_version",
            "version_count",
        ]
        read_only_fields = ["created_by", "created_at"]
        extra_kwargs = {"name": UNTRIMMED, "description": UNTRIMMED}

    def get_latest_version(self, project) -> int | None:
        return getattr(project, "latest_version", None)

    def get_version_count(self, project) -> int:
        return getattr(project, "version_count", 0)


class CodeVersionSerializer(serializers.ModelSerializer):
    """A version as lists show it: no file manifest (``file_count`` instead)."""

    project_name = serializers.CharField(source="project.name", read_only=True)
    created_by = UsernameField()
    file_count = serializers.SerializerMethodField()

    class Meta:
        model = CodeVersion
        fields = [
            "id",
            "project",
            "project_name",
            "version",
            "sha256",
            "size_bytes",
            "source",
            "source_path",
            "entry_points",
            "file_count",
            "description",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_file_count(self, version) -> int:
        return len(version.files)


class CodeFileSerializer(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class CodeVersionDetailSerializer(CodeVersionSerializer):
    """One version with its ``files`` manifest ([{path, size, sha256}] sorted by path)."""

    files = CodeFileSerializer(many=True, read_only=True)

    class Meta(CodeVersionSerializer.Meta):
        fields = [*CodeVersionSerializer.Meta.fields, "files"]
        read_only_fields = fields


class CodeVersionCreateSerializer(serializers.Serializer):
    """Multipart ``archive`` (.zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) or JSON ``directory``
    (under the server's code roots) or ``template`` (a shipped template's name); exactly one."""

    project = RestrictedPrimaryKeyRelatedField(queryset=CodeProject.objects.all())
    archive = serializers.FileField(required=False, allow_empty_file=True)
    directory = serializers.CharField(required=False, max_length=1000, trim_whitespace=False)
    template = serializers.CharField(required=False, max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)


class CodeFileContentSerializer(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    is_text = serializers.BooleanField()
    text = serializers.CharField(allow_null=True, help_text="The file as UTF-8 text; null for a binary file.")
    note = serializers.CharField(help_text="Why the text is not shown, if it is not.")


class CodeProjectViewSet(RestrictedCreateViewSet):
    """Code projects: a team's named body of code, whose versions code runs run."""

    queryset = by_name_with_versions(CodeProject.objects.select_related("created_by"))
    serializer_class = CodeProjectSerializer
    filterset_class = CodeProjectFilterSet

    def perform_create(self, serializer):
        data = serializer.validated_data
        project = code_versions.do_create_code_project(
            team=data["team"],
            name=data["name"],
            description=data.get("description", ""),
            actor=self.request.user,
        )
        serializer.instance = self.refetch(project)


class CodeVersionViewSet(RestrictedCreateViewSet):
    """Code versions: register one from an archive, a server folder or a template; read its
    manifest, entry points and files."""

    queryset = CodeVersion.objects.select_related("project", "created_by")
    serializer_class = CodeVersionSerializer
    filterset_class = CodeVersionFilterSet
    ordering = ("-created_at", "-id")
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    action_serializers = {"create": CodeVersionCreateSerializer, "retrieve": CodeVersionDetailSerializer}

    @extend_schema(request=CodeVersionCreateSerializer, responses={201: CodeVersionDetailSerializer})
    def create(self, request, *args, **kwargs):
        data = self.validated(request)
        upload = data.get("archive")
        version = code_versions.do_register_code_version(
            data["project"],
            archive=code_versions.read_upload(upload) if upload is not None else None,
            directory=data.get("directory"),
            template=data.get("template"),
            description=data["description"],
            actor=request.user,
        )
        return Response(
            CodeVersionDetailSerializer(self.refetch(version)).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("path", str, OpenApiParameter.PATH, description="The file's path in the code.")
        ],
        responses={
            200: CodeFileContentSerializer,
            404: OpenApiResponse(description="No such version or file"),
        },
    )
    def file(self, request, pk=None, path=""):
        """One file of the version: its text, or a note for a binary file."""
        version = self.get_object()
        try:
            return Response(code_versions.file_content(version, path))
        except ObjectDoesNotExist as exc:
            raise NotFound(str(exc)) from exc
        except code_versions.ArtifactChanged as exc:
            return artifact_changed(exc)


class CompareQuerySerializer(serializers.Serializer):
    a = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT, help_text="A code version id.")
    b = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT, help_text="Another code version id.")


class CodeVersionCompareView(APIView):
    """Two code versions file by file: ``added``, ``removed``, ``changed`` or ``same``, with a
    unified diff for each changed text file. Either version invisible to the user is a 404."""

    @extend_schema(
        parameters=[CompareQuerySerializer],
        responses={200: OpenApiTypes.OBJECT, 404: OpenApiResponse(description="No such code version")},
    )
    def get(self, request: Request) -> Response:
        unknown = sorted(set(request.query_params) - {"a", "b"})
        if unknown:
            raise ParseError(f"unknown query parameter(s): {', '.join(unknown)}; known: a, b")
        query = CompareQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        versions = restrict(CodeVersion.objects.select_related("project"), request.user, VIEW)
        a = get_object_or_404(versions, pk=query.validated_data["a"])
        b = get_object_or_404(versions, pk=query.validated_data["b"])
        try:
            return Response(code_versions.compared(a, b))
        except code_versions.ArtifactChanged as exc:
            return artifact_changed(exc)


class CodeTemplateSerializer(serializers.Serializer):
    name = serializers.CharField()
    entry_points = serializers.DictField()
    error = serializers.CharField(help_text="Why the template's folder is not valid code, if it is not.")


class CodeTemplateListView(APIView):
    """The templates Steward ships (folders under ``runners/workloads/``) with their entry points;
    register one as a code version with ``{"project", "template"}``."""

    @extend_schema(responses={200: CodeTemplateSerializer(many=True)})
    def get(self, request: Request) -> Response:
        if request.query_params:
            raise ParseError(
                f"unknown query parameter(s): {', '.join(sorted(request.query_params))}; known: none"
            )
        return Response(code_versions.templates())

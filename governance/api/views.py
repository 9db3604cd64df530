from django.http import FileResponse
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from governance.actions.aliases import AliasProtected, do_delete_alias, do_set_alias, do_set_protected_aliases
from governance.actions.datasets import (
    do_create_dataset,
    do_erase_dataset_version,
    do_register_dataset_version,
    do_update_dataset,
    resolve_import_path,
)
from governance.actions.model_versions import (
    do_archive_model_version,
    do_delete_model_version,
    do_delete_model_version_tag,
    do_register_model_version_from_artifact,
    do_register_model_version_from_source,
    do_set_model_version_tag,
    do_unarchive_model_version,
    do_update_model_version,
)
from governance.actions.pii import do_request_pii_scan, do_set_pii_policy
from governance.actions.registered_models import (
    do_archive_registered_model,
    do_create_registered_model,
    do_delete_registered_model,
    do_delete_registered_model_tag,
    do_rename_registered_model,
    do_set_registered_model_tag,
    do_unarchive_registered_model,
    do_update_registered_model,
)
from governance.actions.retention import do_clear_legal_hold, do_set_legal_hold, do_set_retention_policy
from governance.actions.teams import do_create_team
from governance.api.base import RestrictedCreateViewSet
from governance.api.serializers import (
    AliasProtectedSerializer,
    AliasTargetSerializer,
    DatasetSerializer,
    DatasetUpdateSerializer,
    DatasetVersionCreateSerializer,
    DatasetVersionEraseSerializer,
    DatasetVersionSerializer,
    LegalHoldSerializer,
    ModelVersionCreateSerializer,
    ModelVersionSerializer,
    ModelVersionUpdateSerializer,
    PiiPolicySerializer,
    PiiScanSerializer,
    ProtectedAliasesSerializer,
    RegisteredModelSerializer,
    RegisteredModelUpdateSerializer,
    RetentionPolicySerializer,
    TagValueSerializer,
    TeamSerializer,
)
from governance.artifacts import staged_model_upload, staged_upload
from governance.filtersets import (
    DatasetFilterSet,
    DatasetVersionFilterSet,
    ModelVersionFilterSet,
    RegisteredModelFilterSet,
)
from governance.models import (
    Dataset,
    DatasetVersion,
    ModelVersion,
    PiiPolicy,
    PiiScan,
    RegisteredModel,
    RetentionPolicy,
    Team,
)
from governance.processing_records import processing_record
from governance.queries import by_name_with_versions

TAG_KEY = OpenApiParameter("key", str, OpenApiParameter.PATH, description="The tag's key.")
ALIAS = OpenApiParameter("alias", str, OpenApiParameter.PATH, description="The alias name.")
WITH_VERSIONS = OpenApiParameter(
    "with_versions",
    bool,
    OpenApiParameter.QUERY,
    description="Delete the model's live versions too (soft); without it a model with versions is refused.",
)


class TeamViewSet(RestrictedCreateViewSet):
    queryset = Team.objects.all()
    serializer_class = TeamSerializer

    def perform_create(self, serializer):
        serializer.instance = do_create_team(
            name=serializer.validated_data["name"],
            description=serializer.validated_data.get("description", ""),
            actor=self.request.user,
        )

    @extend_schema(request=ProtectedAliasesSerializer, responses={200: TeamSerializer})
    @action(detail=True, methods=["put"], url_path="protected-aliases")
    def protected_aliases(self, request, pk=None):
        """Set the aliases that move only through an approved promotion request (team managers)."""
        team = self.get_object()
        data = self.validated(request, ProtectedAliasesSerializer)
        do_set_protected_aliases(team=team, aliases=data["protected_aliases"], actor=request.user)
        return Response(TeamSerializer(self.refetch(team)).data)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"], url_path="records-of-processing")
    def records_of_processing(self, request, pk=None):
        """The team's GDPR Art. 30 record of processing (issue 12): per dataset, its purposes,
        the personal data its PII scans found, recipients, retention and security measures
        (``governance.processing_records``). Whoever may view the team; a JSON attachment."""
        team = self.get_object()
        response = Response(processing_record(team))
        response["Content-Disposition"] = f'attachment; filename="art30-{slugify(team.name) or team.pk}.json"'
        return response

    @extend_schema(request=PiiPolicySerializer, responses={200: PiiPolicySerializer})
    @action(detail=True, methods=["get", "put"], url_path="pii-policy")
    def pii_policy(self, request, pk=None):
        """The team's PII policy (issue 12): GET reads it ({} allows everything); PUT sets it
        (team managers), e.g. {"rules": {"us_ssn": "block", "race_ethnicity": "block"}}."""
        team = self.get_object()
        if request.method == "PUT":
            data = self.validated(request, PiiPolicySerializer)
            do_set_pii_policy(team=team, rules=data["rules"], actor=request.user)
        policy = PiiPolicy.objects.filter(team=team).first()
        return Response({"rules": policy.rules if policy is not None else {}})

    @extend_schema(request=RetentionPolicySerializer, responses={200: RetentionPolicySerializer})
    @action(detail=True, methods=["get", "put"], url_path="retention-policy")
    def retention_policy(self, request, pk=None):
        """The team's retention policy (issue 12): GET reads it (no rules: everything stays hot
        for ever); PUT replaces it (team managers), e.g. {"audit_events_days": 365, "rules":
        {"datasets": {"cold_after_days": 30, "delete_after_days": 365}}}. Applied daily."""
        team = self.get_object()
        if request.method == "PUT":
            data = self.validated(request, RetentionPolicySerializer)
            do_set_retention_policy(
                team=team,
                rules=data["rules"],
                audit_events_days=data["audit_events_days"],
                actor=request.user,
            )
        policy = RetentionPolicy.objects.filter(team=team).prefetch_related("rules").first()
        if policy is None:
            return Response({"audit_events_days": None, "rules": {}})
        return Response({"audit_events_days": policy.audit_events_days, "rules": policy.rules_by_kind()})


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

    @extend_schema(request=DatasetUpdateSerializer, responses={200: DatasetSerializer})
    def partial_update(self, request, *args, **kwargs):
        """Change the description and/or the schema lock."""
        dataset = self.get_object()
        data = self.validated(request, DatasetUpdateSerializer)
        do_update_dataset(
            dataset=dataset,
            description=data.get("description"),
            is_schema_locked=data.get("is_schema_locked"),
            actor=request.user,
        )
        return Response(DatasetSerializer(self.refetch(dataset)).data)


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

    @extend_schema(request=DatasetVersionEraseSerializer, responses={200: DatasetVersionSerializer})
    @action(detail=True, methods=["post"])
    def erase(self, request, pk=None):
        """Erase the version (GDPR Art. 17; team managers): its bytes destroyed, the row and its
        audit trail kept; ``{"reason": "..."}``. Its download answers 410 from then on."""
        data = self.validated(request, DatasetVersionEraseSerializer)
        version = do_erase_dataset_version(
            dataset_version=self.get_object(), reason=data["reason"], actor=request.user
        )
        return Response(DatasetVersionSerializer(version).data)

    @extend_schema(request=LegalHoldSerializer, responses={200: DatasetVersionSerializer})
    @action(detail=True, methods=["post", "delete"], url_path="legal-hold")
    def legal_hold(self, request, pk=None):
        """Legal hold (issue 12; team managers): POST {"reason": "..."} holds the version (no
        retention policy deletes it), DELETE lifts the hold. Both audited."""
        version = self.get_object()
        if request.method == "POST":
            data = self.validated(request, LegalHoldSerializer)
            version = do_set_legal_hold(dataset_version=version, reason=data["reason"], actor=request.user)
        else:
            version = do_clear_legal_hold(dataset_version=version, actor=request.user)
        return Response(DatasetVersionSerializer(self.refetch(version)).data)

    @extend_schema(request=None, responses={200: PiiScanSerializer, 202: PiiScanSerializer})
    @action(detail=True, methods=["get", "post"])
    def pii(self, request, pk=None):
        """The version's PII scan (issue 12): GET its status and report (404 when it has none:
        registered before scans existed); POST scans it again (202; 400 while one is running)."""
        version = self.get_object()
        if request.method == "POST":
            scan = do_request_pii_scan(dataset_version=version, actor=request.user)
            return Response(PiiScanSerializer(scan).data, status=status.HTTP_202_ACCEPTED)
        scan = PiiScan.objects.filter(dataset_version=version).first()
        if scan is None:
            return Response(
                {"detail": f"{version} has no PII scan; POST here to scan it"},
                status=status.HTTP_404_NOT_FOUND,
            )
        return Response(PiiScanSerializer(scan).data)


def _alias_protected(exc: AliasProtected) -> Response:
    """403 naming the promotion request that will move the protected alias and its approvers."""
    body = {"detail": str(exc), "promotion_request": exc.promotion_request.pk, "approvers": exc.approvers}
    return Response(body, status=status.HTTP_403_FORBIDDEN)


class RegisteredModelViewSet(RestrictedCreateViewSet):
    """Registered models: create, read, PATCH (name, description), DELETE (soft;
    ``?with_versions=true`` for a model with versions), archive/unarchive, tags and aliases."""

    # Deleted models are gone from the API (the rows stay for the audit trail and lineage).
    queryset = by_name_with_versions(
        RegisteredModel.objects.filter(deleted_at__isnull=True).select_related("owner")
    )
    serializer_class = RegisteredModelSerializer  # it reads a page's aliases in one query
    filterset_class = RegisteredModelFilterSet

    def perform_create(self, serializer):
        data = serializer.validated_data
        model = do_create_registered_model(
            team=data["team"],
            name=data["name"],
            owner=data.get("owner") or self.request.user,
            description=data.get("description", ""),
            tags=data.get("tags") or {},
            actor=self.request.user,
        )
        serializer.instance = self.refetch(model)

    def _answer(self, model) -> Response:
        return Response(
            RegisteredModelSerializer(self.refetch(model), context=self.get_serializer_context()).data
        )

    @extend_schema(request=RegisteredModelUpdateSerializer, responses={200: RegisteredModelSerializer})
    def partial_update(self, request, *args, **kwargs):
        """Rename (``name``) and/or set the ``description``."""
        model = self.get_object()
        data = self.validated(request, RegisteredModelUpdateSerializer)
        if "name" in data and data["name"] != model.name:
            model = do_rename_registered_model(model=model, new_name=data["name"], actor=request.user)
        if "description" in data:
            model = do_update_registered_model(
                model=model, description=data["description"], actor=request.user
            )
        return self._answer(model)

    @extend_schema(parameters=[WITH_VERSIONS], responses={204: None})
    def destroy(self, request, *args, **kwargs):
        """Soft-delete the model (and with ``?with_versions=true`` its versions)."""
        model = self.get_object()
        flag = request.query_params.get("with_versions", "false").lower()
        if flag not in ("true", "false", "1", "0"):
            return Response({"with_versions": ["true or false"]}, status=status.HTTP_400_BAD_REQUEST)
        do_delete_registered_model(model=model, with_versions=flag in ("true", "1"), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: RegisteredModelSerializer})
    @action(detail=True, methods=["post"])
    def archive(self, request, pk=None):
        return self._answer(do_archive_registered_model(model=self.get_object(), actor=request.user))

    @extend_schema(request=None, responses={200: RegisteredModelSerializer})
    @action(detail=True, methods=["post"])
    def unarchive(self, request, pk=None):
        return self._answer(do_unarchive_registered_model(model=self.get_object(), actor=request.user))

    @extend_schema(
        methods=["PUT"],
        parameters=[TAG_KEY],
        request=TagValueSerializer,
        responses={200: RegisteredModelSerializer},
    )
    @extend_schema(methods=["DELETE"], parameters=[TAG_KEY], request=None, responses={204: None})
    @action(detail=True, methods=["put", "delete"], url_path=r"tags/(?P<key>[^/]+)")
    def tag(self, request, pk=None, key=""):
        """Set (PUT ``{"value": ...}``) or delete a tag."""
        model = self.get_object()
        if request.method == "DELETE":
            do_delete_registered_model_tag(model=model, key=key, actor=request.user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        data = self.validated(request, TagValueSerializer)
        return self._answer(
            do_set_registered_model_tag(model=model, key=key, value=data["value"], actor=request.user)
        )

    @extend_schema(
        methods=["PUT"],
        parameters=[ALIAS],
        request=AliasTargetSerializer,
        responses={200: RegisteredModelSerializer, 403: AliasProtectedSerializer},
    )
    @extend_schema(methods=["DELETE"], parameters=[ALIAS], request=None, responses={204: None})
    @action(detail=True, methods=["put", "delete"], url_path=r"aliases/(?P<alias>[^/]+)")
    def alias(self, request, pk=None, alias=""):
        """Point an alias at a version (PUT ``{"version": n}``) or remove it. A protected alias
        answers 403 with the promotion request it opened and who may approve it."""
        model = self.get_object()
        if request.method == "DELETE":
            do_delete_alias(model=model, alias=alias, actor=request.user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        data = self.validated(request, AliasTargetSerializer)
        try:
            do_set_alias(model=model, alias=alias, version=data["version"], actor=request.user)
        except AliasProtected as exc:
            return _alias_protected(exc)
        return self._answer(model)


class ModelVersionViewSet(RestrictedCreateViewSet):
    """Model versions: register (upload or source), read, PATCH (description, model card), DELETE
    (soft: the number is never reused, its aliases go), archive/unarchive and tags."""

    queryset = (
        ModelVersion.objects.exclude(status=ModelVersion.Status.DELETED)
        .filter(model__deleted_at__isnull=True)
        .select_related("model", "created_by")
    )
    serializer_class = ModelVersionSerializer
    filterset_class = ModelVersionFilterSet
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    action_serializers = {"create": ModelVersionCreateSerializer}
    ordering = ("-created_at", "-id")  # newest first; unchanging, unique keys for cursor pages

    def _answer(self, version, code: int = status.HTTP_200_OK) -> Response:
        return Response(ModelVersionSerializer(self.refetch(version)).data, status=code)

    @extend_schema(request=ModelVersionCreateSerializer, responses={201: ModelVersionSerializer})
    def create(self, request, *args, **kwargs):
        """Register the next version from an uploaded ``artifact`` or a ``source``."""
        data = self.validated(request)
        common = {
            "model": data["model"],
            "description": data["description"],
            "tags": data["tags"],
            "actor": request.user,
        }
        if data.get("artifact"):
            upload = data["artifact"]
            with staged_model_upload(upload) as staged:
                version = do_register_model_version_from_artifact(
                    artifact_path=staged.path, source=f"upload:{upload.name}"[:1000], **common
                )
        else:
            version = do_register_model_version_from_source(source=data["source"], **common)
        return self._answer(version, status.HTTP_201_CREATED)

    @extend_schema(request=ModelVersionUpdateSerializer, responses={200: ModelVersionSerializer})
    def partial_update(self, request, *args, **kwargs):
        """Set the ``description``, ``intended_purpose`` or ``known_limitations``."""
        version = self.get_object()
        data = self.validated(request, ModelVersionUpdateSerializer)
        return self._answer(do_update_model_version(version=version, **data, actor=request.user))

    @extend_schema(responses={204: None})
    def destroy(self, request, *args, **kwargs):
        """Soft-delete the version; its aliases are removed with it."""
        do_delete_model_version(version=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: ModelVersionSerializer})
    @action(detail=True, methods=["post"])
    def archive(self, request, pk=None):
        return self._answer(do_archive_model_version(version=self.get_object(), actor=request.user))

    @extend_schema(request=None, responses={200: ModelVersionSerializer})
    @action(detail=True, methods=["post"])
    def unarchive(self, request, pk=None):
        return self._answer(do_unarchive_model_version(version=self.get_object(), actor=request.user))

    @extend_schema(
        methods=["PUT"],
        parameters=[TAG_KEY],
        request=TagValueSerializer,
        responses={200: ModelVersionSerializer},
    )
    @extend_schema(methods=["DELETE"], parameters=[TAG_KEY], request=None, responses={204: None})
    @action(detail=True, methods=["put", "delete"], url_path=r"tags/(?P<key>[^/]+)")
    def tag(self, request, pk=None, key=""):
        """Set (PUT ``{"value": ...}``) or delete a tag."""
        version = self.get_object()
        if request.method == "DELETE":
            do_delete_model_version_tag(version=version, key=key, actor=request.user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        data = self.validated(request, TagValueSerializer)
        return self._answer(
            do_set_model_version_tag(version=version, key=key, value=data["value"], actor=request.user)
        )
